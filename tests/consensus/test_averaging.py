"""Embedding-averaging consensus and robust aggregators."""
from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, assume, given, settings, strategies as st

from consensus.averaging import (
    AveragingError, AveragingNode, Finished, InvalidVector, NeighbourVector,
    RoundTimeout, VectorMsg, average_graph, check_vectors, consensus_limit,
    coordinate_median, filtered_mean, geometric_median, medoid, nearest_candidate, normalise,
    trimmed_mean,
)
from consensus.effects import MEMBERS, Broadcast, CancelTimer, SetTimer

SET = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow])


def connected_graph(n, p, seed):
    g = nx.gnp_random_graph(n, p, seed=seed)
    # join components so the graph is connected (still random)
    comps = [sorted(c) for c in nx.connected_components(g)]
    for a, b in zip(comps, comps[1:]):
        g.add_edge(a[0], b[0])
    return g


def unit(rng, n, d):
    return normalise(rng.normal(size=(n, d)))


@settings(max_examples=40, **SET)
@given(st.integers(2, 40), st.floats(0.05, 0.6), st.integers(0, 10**6),
       st.sampled_from(["neighbour_mean", "metropolis"]), st.floats(0.2, 0.9),
       st.booleans())
def test_averaging_converges_to_the_predicted_weighted_mean_on_connected_graphs(
        n, p, seed, mixing, alpha, weighted):
    g = connected_graph(n, p, seed)
    a = nx.to_scipy_sparse_array(g, nodelist=range(n))
    rng = np.random.default_rng(seed)
    x = unit(rng, n, 8)
    w = rng.uniform(0.2, 3.0, n) if weighted else None
    res = average_graph(a, x, alpha=alpha, eps=1e-10, rounds_max=200_000, weights=w,
                        mixing=mixing)
    assert res.converged
    target = consensus_limit(a, x, w, mixing)
    assert np.abs(res.vectors - target).max() < 1e-6
    if mixing == "metropolis":
        ww = np.ones(n) if w is None else w
        assert np.allclose(target, (ww[:, None] * x).sum(0) / ww.sum())


def test_regular_graph_with_equal_trust_agrees_on_the_plain_mean_and_counts_rounds():
    g = nx.random_regular_graph(4, 100, seed=3)
    a = nx.to_scipy_sparse_array(g, nodelist=range(100))
    x = unit(np.random.default_rng(1), 100, 16)
    res = average_graph(a, x, eps=1e-3)
    assert res.converged and 1 < res.rounds < 1000
    assert np.abs(res.vectors - x.mean(0)).max() < 0.05
    tight = average_graph(a, x, eps=1e-6)
    assert tight.rounds > res.rounds
    assert np.abs(tight.vectors - x.mean(0)).max() < 1e-4


def test_float32_sparse_path_matches_float64():
    g = nx.random_regular_graph(4, 500, seed=0)
    a = sp.csr_array(nx.to_scipy_sparse_array(g, nodelist=range(500)))
    x = unit(np.random.default_rng(0), 500, 64)
    r64 = average_graph(a, x, eps=1e-4)
    r32 = average_graph(a, x, eps=1e-4, dtype=np.float32)
    assert r32.vectors.dtype == np.float32
    assert abs(r32.rounds - r64.rounds) <= 2
    assert np.abs(r32.vectors - r64.vectors).max() < 1e-3


def test_every_node_picks_the_same_candidate_text():
    rng = np.random.default_rng(5)
    candidates = unit(rng, 5, 16)
    # ten nodes propose noisy versions of candidate 2 or 3, mostly 2
    props = np.array([candidates[2 if i < 7 else 3] + 0.1 * rng.normal(size=16) for i in range(10)])
    props = normalise(props)
    g = nx.cycle_graph(10)
    res = average_graph(nx.to_scipy_sparse_array(g), props, eps=1e-9, rounds_max=100_000)
    picks = {nearest_candidate(v, candidates) for v in res.vectors}
    assert picks == {2}


def test_isolated_and_fixed_nodes_keep_their_vectors():
    a = sp.csr_array(np.array([[0, 1, 0], [1, 0, 0], [0, 0, 0]]))
    x = unit(np.random.default_rng(2), 3, 4)
    res = average_graph(a, x, eps=1e-9, rounds_max=10_000, fixed=[True, False, False])
    assert np.allclose(res.vectors[0], x[0]) and np.allclose(res.vectors[2], x[2])
    assert np.allclose(res.vectors[1], x[0], atol=1e-6)  # pulled to the stubborn neighbour


@pytest.mark.parametrize("bad, why", [
    (np.array([[np.nan, 0.0]]), "NaN"),
    (np.array([[np.inf, 0.0]]), "NaN or Inf"),
    (np.array([[3.0, 4.0]]), "norm"),
    (np.zeros((1, 0)), "shape"),
])
def test_invalid_vectors_are_rejected_with_a_typed_error(bad, why):
    with pytest.raises(InvalidVector, match=why):
        check_vectors(bad)


def test_wrong_dimension_is_rejected():
    with pytest.raises(InvalidVector, match="dimension"):
        check_vectors(np.array([[1.0, 0.0]]), dim=3)
    with pytest.raises(AveragingError):
        average_graph(np.ones((3, 3)), unit(np.random.default_rng(0), 2, 4))


# ------------------------------------------------------------------ robust aggregators

@st.composite
def poisoned(draw, max_fraction):
    n_honest = draw(st.integers(3, 20))
    d = draw(st.integers(1, 8))
    seed = draw(st.integers(0, 10**6))
    rng = np.random.default_rng(seed)
    centre = rng.normal(size=d)
    radius = draw(st.floats(0.01, 1.0))
    honest = centre + radius * normalise(rng.normal(size=(n_honest, d))) * rng.uniform(0, 1, (n_honest, 1))
    frac = draw(st.floats(0.0, max_fraction))
    n_bad = int(np.floor(frac * n_honest / (1 - frac)))  # bad / (bad + honest) <= frac
    assume(n_bad / (n_bad + n_honest) <= max_fraction)
    scale = draw(st.sampled_from([1.0, 1e3, 1e6]))
    bad = rng.normal(size=(n_bad, d)) * scale + draw(st.floats(-1e6, 1e6))
    x = np.vstack([honest, bad])
    perm = rng.permutation(len(x))
    return x[perm], honest, centre, radius


@settings(max_examples=60, **SET)
@given(poisoned(0.2))
def test_trimmed_mean_stays_inside_the_honest_box_up_to_its_trim_fraction(case):
    x, honest, _, _ = case
    out = trimmed_mean(x, trim_fraction=0.2)
    assert (out >= honest.min(0) - 1e-9).all() and (out <= honest.max(0) + 1e-9).all()


@settings(max_examples=60, **SET)
@given(poisoned(0.49))
def test_coordinate_median_stays_inside_the_honest_box_below_one_half(case):
    x, honest, _, _ = case
    out = coordinate_median(x)
    assert (out >= honest.min(0) - 1e-9).all() and (out <= honest.max(0) + 1e-9).all()


@settings(max_examples=60, **SET)
@given(poisoned(0.45))
def test_geometric_median_is_within_2hr_over_2h_minus_1_of_the_honest_centre(case):
    x, honest, centre, radius = case
    h = len(honest) / len(x)
    out = geometric_median(x)
    bound = 2 * h * radius / (2 * h - 1)
    assert np.linalg.norm(out - centre) <= bound * (1 + 1e-6) + 1e-6


@settings(max_examples=40, **SET)
@given(poisoned(0.45))
def test_filtered_mean_and_medoid_stay_near_the_honest_centre(case):
    x, honest, centre, radius = case
    h = len(honest) / len(x)
    gm_bound = 2 * h * radius / (2 * h - 1)
    out = filtered_mean(x, threshold=radius)
    assert np.linalg.norm(out - centre) <= gm_bound + radius + 1e-6
    m = medoid(x)
    assert any(np.allclose(m, row) for row in x)


def test_plain_mean_is_dragged_away_by_one_poisoned_vector():
    honest = np.zeros((9, 3))
    x = np.vstack([honest, [[1e6, 0, 0]]])
    assert np.linalg.norm(x.mean(0)) > 1e4  # why the robust variants exist
    assert np.linalg.norm(geometric_median(x)) < 1e-3


def test_robust_graph_averaging_ignores_a_byzantine_neighbour():
    g = nx.random_regular_graph(4, 30, seed=4)
    a = nx.to_scipy_sparse_array(g, nodelist=range(30))
    rng = np.random.default_rng(4)
    base = normalise(rng.normal(size=(1, 8)))[0]
    x = normalise(base + 0.05 * rng.normal(size=(30, 8)))
    evil = normalise(-base[None, :])[0]
    x[0] = evil
    fixed = np.zeros(30, bool)
    fixed[0] = True
    plain = average_graph(a, x, eps=1e-6, rounds_max=3000, fixed=fixed)
    robust = average_graph(a, x, eps=1e-6, rounds_max=3000, fixed=fixed, aggregator="median")
    honest = np.arange(1, 30)
    # the stubborn liar drags plain averaging all the way; the median holds
    assert np.linalg.norm(plain.vectors[honest] - evil, axis=1).max() < 0.05
    assert np.linalg.norm(robust.vectors[honest] - base, axis=1).max() < 0.3


# ------------------------------------------------------------------ per-node machine

def drive_lockstep(g, x, rounds, **kw):
    nodes = {i: AveragingNode(i, x[i], {j: 1.0 for j in g.neighbors(i)}, rounds_max=rounds,
                              eps=0.0, **kw) for i in g.nodes}
    q = []
    done = {}

    def emit(i, effects):
        for e in effects:
            if isinstance(e, Broadcast):
                q.extend((j, e.msg) for j in g.neighbors(i))
            elif isinstance(e, Finished):
                done[i] = e

    for i, n in nodes.items():
        emit(i, n.start())
    while q:
        j, msg = q.pop(0)
        emit(j, nodes[j].handle(NeighbourVector(msg)))
    return nodes, done


def test_node_machines_in_lockstep_compute_exactly_the_whole_graph_function():
    g = connected_graph(12, 0.3, 7)
    x = unit(np.random.default_rng(7), 12, 6)
    nodes, done = drive_lockstep(g, x, rounds=15)
    whole = average_graph(nx.to_scipy_sparse_array(g, nodelist=range(12)), x, eps=0.0,
                          rounds_max=15)
    assert len(done) == 12 and all(f.round == 15 for f in done.values())
    got = np.array([done[i].vector for i in range(12)])
    assert np.allclose(got, whole.vectors, atol=1e-12)


def test_node_stops_early_when_it_and_its_neighbours_settle():
    g = nx.complete_graph(4)
    x = unit(np.random.default_rng(1), 4, 3)
    nodes = {i: AveragingNode(i, x[i], {j: 1.0 for j in g.neighbors(i)}, eps=1e-3,
                              rounds_max=1000) for i in g.nodes}
    q, done = [], {}

    def emit(i, effects):
        for e in effects:
            if isinstance(e, Broadcast):
                q.extend((j, e.msg) for j in g.neighbors(i))
            elif isinstance(e, Finished):
                done[i] = e
    for i, n in nodes.items():
        emit(i, n.start())
    while q:
        j, msg = q.pop(0)
        emit(j, nodes[j].handle(NeighbourVector(msg)))
    assert len(done) == 4 and all(f.converged and f.round < 100 for f in done.values())
    vs = np.array([f.vector for f in done.values()])
    assert np.abs(vs - x.mean(0)).max() < 1e-2


def test_node_goes_on_without_a_silent_neighbour_after_timeout():
    n = AveragingNode("a", [1.0, 0.0], {"b": 1.0, "c": 1.0}, alpha=0.5, rounds_max=5,
                      round_timeout_s=0.25)
    send, timer = n.start()
    assert send == Broadcast(MEMBERS, VectorMsg("a", 0, (1.0, 0.0)))
    assert timer == SetTimer(RoundTimeout(0), 0.25)
    n.handle(NeighbourVector(VectorMsg("b", 0, (0.0, 1.0))))
    out = n.handle(timer.name)  # the timer's name is the event to deliver when it fires
    assert n.round == 1
    assert out[0] == CancelTimer(RoundTimeout(0))
    assert type(out[1]) is Broadcast and out[1].topic == MEMBERS
    assert np.allclose(out[1].msg.vector, [0.5, 0.5])
    assert out[2] == SetTimer(RoundTimeout(1), 0.25)
    assert n.statistics().missing_neighbours == 1
    assert n.handle(RoundTimeout(0)) == []  # a late timer of a past round changes nothing


def test_node_speaks_only_the_one_effect_vocabulary_and_cancels_its_last_timer():
    g = nx.complete_graph(3)
    x = unit(np.random.default_rng(3), 3, 4)
    nodes = {i: AveragingNode(i, x[i], {j: 1.0 for j in g.neighbors(i)}, rounds_max=4,
                              eps=0.0) for i in g.nodes}
    seen, q, timers = [], [], {i: set() for i in g.nodes}

    def emit(i, effects):
        for e in effects:
            seen.append(type(e))
            if isinstance(e, Broadcast):
                q.extend((j, e.msg) for j in g.neighbors(i))
            elif isinstance(e, SetTimer):
                timers[i].add(e.name)
            elif isinstance(e, CancelTimer):
                timers[i].discard(e.name)
    for i, n in nodes.items():
        emit(i, n.start())
    while q:
        j, msg = q.pop(0)
        emit(j, nodes[j].handle(NeighbourVector(msg)))
    assert set(seen) == {Broadcast, SetTimer, CancelTimer, Finished}
    assert all(n.finished for n in nodes.values())
    assert all(not t for t in timers.values())  # no timer left running after Finished


def test_node_refuses_an_impossible_round_timeout():
    for bad in (0, -1.0, float("inf"), float("nan"), True, "2"):
        with pytest.raises(AveragingError):
            AveragingNode("a", [1.0, 0.0], {"b": 1.0}, round_timeout_s=bad)


def test_node_rejects_bad_vectors_from_neighbours():
    n = AveragingNode("a", [1.0, 0.0], {"b": 1.0})
    n.start()
    for bad in [(float("nan"), 0.0), (5.0, 0.0), (1.0, 0.0, 0.0)]:
        assert n.handle(NeighbourVector(VectorMsg("b", 0, bad))) == []
    assert n.handle(NeighbourVector(VectorMsg("stranger", 0, (1.0, 0.0)))) == []
    assert n.statistics().rejected == 4 and n.round == 0
