"""Rounds start when the invited live peers have answered, not at the deadline (issue 9)."""
from __future__ import annotations

import pytest

from p2pmoa.llm import StandInGenerator
from p2pmoa.protocol import PeerDown
from p2pmoa.round_start import Attendance, proposers_for
from p2pmoa.testing import make_mesh

Q = "What is the capital of France?"


def gen(name: str, seconds: float) -> StandInGenerator:
    # the stand-in's llm_s = seconds_per_token x tokens; ~10 tokens for this prompt
    return StandInGenerator(name, variants=1, seconds_per_token=seconds / 10)


def test_proposers_max_defaults_to_live_peers_capped():
    assert proposers_for(0, 8) == 1
    assert proposers_for(1, 8) == 2
    assert proposers_for(20, 8) == 8


def test_two_node_mesh_answers_in_about_one_generation_time():
    g0, g1 = gen("m0", 5.0), gen("m1", 5.0)
    mesh, ids = make_mesh(2, method="pbft", proposers_max=8, collect_timeout_s=60.0,
                          generators={0: g0, 1: g1})
    mesh.run(until_s=0.1)  # peers come up
    mesh.ask(ids[0], "q1", Q)
    mesh.run(until_s=200)
    out = mesh.delivered[(ids[0], "q1")]
    one_gen = max(p["llm_s"] for p in out.trace["proposals"])
    assert 1.0 < one_gen < 30.0
    t = out.trace
    assert t["n_expected"] == 2 and t["n_proposals"] == 2
    assert t["attendance"]["invited"] == [ids[1]] and t["attendance"]["answered"] == [ids[1]]
    assert t["attendance"]["round_started_by"] == "all_invited_answered"
    assert t["attendance"]["late"] == [] and t["attendance"]["gone"] == []
    # the deadline (60 s) did not matter: about one generation time
    assert t["timings"]["total_s"] <= 1.5 * one_gen, (t["timings"], one_gen)


def test_single_node_answers_itself_without_waiting():
    mesh, ids = make_mesh(1, method="pbft", proposers_max=8, collect_timeout_s=60.0,
                          generators={0: gen("m0", 3.0)})
    mesh.ask(ids[0], "q1", Q)
    mesh.run(until_s=200)
    t = mesh.delivered[(ids[0], "q1")].trace
    own = t["proposals"][0]["llm_s"]
    assert t["timings"]["collect_s"] < own + 1.0 < 60.0 and t["attendance"]["invited"] == []


def test_silent_peer_is_reported_late_and_the_deadline_starts_the_round():
    mesh, ids = make_mesh(4, method="pbft", faults={3: "silent"}, proposers_max=8,
                          collect_timeout_s=20.0)
    mesh.run(until_s=0.1)
    mesh.ask(ids[0], "q1", Q)
    mesh.run(until_s=400)
    t = mesh.delivered[(ids[0], "q1")].trace
    assert t["attendance"]["round_started_by"] == "deadline"
    assert t["attendance"]["late"] == [ids[3]]
    assert sorted(t["attendance"]["answered"]) == sorted(ids[1:3])
    assert t["timings"]["collect_s"] == pytest.approx(20.0, abs=0.1)


def test_peer_that_leaves_is_not_waited_for():
    mesh, ids = make_mesh(3, method="vote", faults={2: "silent"}, proposers_max=8,
                          collect_timeout_s=60.0)
    mesh.run(until_s=0.1)
    mesh.ask(ids[0], "q1", Q)
    mesh.run(until_s=2.0)
    assert (ids[0], "q1") not in mesh.delivered  # still waiting for the silent peer
    mesh.crash(ids[2])
    mesh._push(mesh.now, ids[0], None, lambda: PeerDown(ids[2], now=mesh.now))
    mesh.run(until_s=400)
    t = mesh.delivered[(ids[0], "q1")].trace
    assert t["attendance"]["round_started_by"] == "all_invited_answered"
    assert t["attendance"]["gone"] == [ids[2]]
    assert t["timings"]["collect_s"] < 3.0


def test_a_refusal_counts_as_an_answer():
    att = Attendance("me")
    att.invite(["a", "b", "me"])
    att.answered.update({"me", "a"})
    assert att.should_start(2, 8, {"a", "b"}) is None
    att.refused["b"] = "unstable"
    assert att.should_start(2, 8, {"a", "b"}) == "all_invited_answered"
    # and the own answer is always awaited
    att2 = Attendance("me")
    att2.invite(["a"])
    att2.answered.add("a")
    assert att2.should_start(1, 8, {"a"}) is None
