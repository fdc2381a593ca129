"""Averaging consensus: the vectorised mode equals consensus.averaging, converges on connected
graphs, and the trimmed mean keeps honest nodes inside the honest range under poisoning."""
from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

from consensus.averaging import average_graph, consensus_limit
from simulations.errors import SimulationError
from simulations.faults import place_mask
from simulations.network import random_regular_sparse
from simulations.vector import (neighbour_table, poison_vectors, run_averaging, run_averaging_graph)


def unit_rows(gen, n, d):
    x = gen.standard_normal((n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@settings(max_examples=12, deadline=None)
@given(n=st.integers(8, 40), k=st.sampled_from([3, 4, 6]), trim=st.integers(0, 2), seed=st.integers(0, 9999))
def test_vectorised_mode_equals_consensus_averaging(n, k, trim, seed):
    assume((n * k) % 2 == 0 and 2 * trim < k)
    g = nx.random_regular_graph(k, n, seed=seed)
    adj = nx.to_scipy_sparse_array(g, format="csr")
    gen = np.random.default_rng(seed)
    x0 = unit_rows(gen, n, 8)
    byz = np.zeros(n, bool)
    byz[: n // 10] = True
    poison = poison_vectors("far", x0[~byz], gen)
    x0b = x0.copy()
    x0b[byz] = poison
    opts = {"aggregator": "trimmed_mean", "trim_fraction": trim / k} if trim else {}
    ref = average_graph(adj, x0b, alpha=0.5, eps=0.0, rounds_max=30, fixed=byz, **opts)
    mine, _ = run_averaging(neighbour_table(adj), x0, a=0.5, eps=0.0, rounds_max=30, byzantine=byz,
                            poison=poison, trim=trim)
    general, _ = run_averaging_graph(adj, x0, a=0.5, eps=0.0, rounds_max=30, byzantine=byz, poison=poison, trim=trim)
    assert np.abs(ref.vectors - mine).max() < 1e-5, f"seed={seed}"
    assert np.abs(ref.vectors - general).max() < 1e-9, f"seed={seed}"


@settings(max_examples=15, deadline=None)
@given(n=st.integers(5, 60), p=st.floats(0.1, 0.6), seed=st.integers(0, 9999))
def test_converges_to_the_predicted_limit_on_connected_graphs(n, p, seed):
    g = nx.gnp_random_graph(n, p, seed=seed)
    assume(nx.is_connected(g))
    adj = nx.to_scipy_sparse_array(g, format="csr")
    x0 = unit_rows(np.random.default_rng(seed), n, 6)
    x, res = run_averaging_graph(adj, x0, a=0.5, eps=1e-9, rounds_max=20_000)
    assert res.converged, f"seed={seed}: did not converge in {res.rounds} rounds"
    limit = consensus_limit(adj, x0)
    assert np.abs(x - limit).max() < 1e-6, f"seed={seed}"


def test_trimmed_mean_keeps_honest_nodes_in_the_honest_range():
    # W-MSR fact: if no honest node has more than F Byzantine neighbours, every honest value
    # stays within the honest initial min/max of each coordinate (here with far poisoning).
    checked = 0
    for seed in range(8):
        n, k, F = 400, 8, 3
        adj = random_regular_sparse(n, k, seed)
        nb = neighbour_table(adj)
        gen = np.random.default_rng(seed)
        byz = place_mask(n, 0.05, "random", gen)
        counts = byz[nb].sum(axis=1)
        if counts[~byz].max() > F:
            continue
        x0 = unit_rows(gen, n, 4)
        poison = poison_vectors("far", x0[~byz], gen, scale=1.0)
        x, res = run_averaging(nb, x0, a=0.5, eps=1e-4, rounds_max=500, byzantine=byz, poison=poison, trim=F)
        lo, hi = x0[~byz].min(axis=0), x0[~byz].max(axis=0)
        assert (x[~byz] >= lo - 1e-6).all() and (x[~byz] <= hi + 1e-6).all(), f"seed={seed}"
        plain, _ = run_averaging(nb, x0, a=0.5, eps=1e-4, rounds_max=500, byzantine=byz, poison=poison, trim=0)
        assert np.linalg.norm(plain[~byz].mean(0) - poison) < np.linalg.norm(x[~byz].mean(0) - poison), \
            f"seed={seed}: plain averaging should be pulled towards the poison more than the trimmed mean"
        checked += 1
    assert checked >= 3, f"only {checked} placements had at most F Byzantine neighbours per node"


def test_million_node_path_pieces_on_a_small_graph_and_errors():
    adj = random_regular_sparse(1000, 4, 1)
    nb = neighbour_table(adj)
    x0 = unit_rows(np.random.default_rng(0), 1000, 16).astype(np.float32)
    x, res = run_averaging(nb, x0, eps=1e-3)
    assert res.converged and res.spread < 0.01
    assert res.honest_mean_distance < 1e-4  # plain averaging on a regular graph keeps the mean
    with pytest.raises(SimulationError):
        run_averaging(nb, x0, trim=2)  # 2F must be < k
    with pytest.raises(SimulationError):
        run_averaging(nb, x0[:10])
    with pytest.raises(SimulationError):
        neighbour_table(nx.to_scipy_sparse_array(nx.path_graph(4)))
