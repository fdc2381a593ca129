"""The production peer protocol on the simulated mesh: answers arrive, liars are outvoted, and a
seed reproduces the run exactly."""
from __future__ import annotations

import pytest

from simulations.faults import FaultSpec
from simulations.mesh import MeshSpec, run_mesh
from simulations.network import LinkModel, TopologySpec, build_topology


def small(seed, **kw):
    g = build_topology(TopologySpec(kind="regular", n=30, degree=4), seed)
    spec = MeshSpec(queries=3, proposers=5, alpha_s=0.2, horizon_s=40.0, query_interval_s=1.0, **kw)
    return run_mesh(g, spec, seed)


@pytest.mark.parametrize("method", ["averaging", "pbft", "vote"])
def test_every_query_is_answered_correctly_by_an_honest_mesh(method):
    seed = 11
    r = small(seed, method=method, eps_node=0.0)
    assert [x["delivered"] for x in r.rows] == [True] * 3, f"seed={seed}"
    assert [x["correct"] for x in r.rows] == [True] * 3, f"seed={seed}"


def test_a_colluding_minority_does_not_change_the_answer():
    for seed in (21, 22):
        r = small(seed, method="pbft", eps_node=0.0, byzantine=FaultSpec("colluding_wrong", 0.15))
        assert r.byzantine and all(x["correct"] for x in r.rows), f"seed={seed}: {r.rows}"


def test_gossip_survives_loss():
    seed = 31
    r = small(seed, method="vote", eps_node=0.0, link=LinkModel(loss_p=0.1))
    assert r.stats.hops_lost > 0
    assert all(x["delivered"] for x in r.rows), f"seed={seed}"


def test_same_seed_same_run():
    a, b = small(41, method="averaging"), small(41, method="averaging")
    assert a.rows == b.rows and a.stats == b.stats
    assert small(42, method="averaging").stats != a.stats


def test_crash_recover_and_equivocating_nodes_do_not_stop_answers():
    for beh in ("crash_recover", "equivocate"):
        seed = 51
        r = small(seed, method="pbft", eps_node=0.0, byzantine=FaultSpec(beh, 0.2, crash_after_s=2.0, recover_after_s=3.0))
        assert r.byzantine and all(x["delivered"] for x in r.rows), f"seed={seed} {beh}: {r.rows}"


def test_a_sybil_cluster_is_many_wrong_voters():
    seed = 61
    few = small(seed, method="vote", eps_node=0.0, byzantine=FaultSpec("sybil", 0.04, sybil_count=2))
    many = small(seed, method="vote", eps_node=0.0, byzantine=FaultSpec("sybil", 0.04, sybil_count=40))
    assert len(few.byzantine) == 1 + 2 and len(many.byzantine) == 1 + 40
    assert all(x["correct"] for x in few.rows), f"seed={seed}: {few.rows}"
    assert sum(x["correct"] for x in many.rows) < 3, f"seed={seed}: 40 sybils among 70 nodes should win votes"
