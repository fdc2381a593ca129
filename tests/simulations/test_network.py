"""Topologies and their metrics: the numbers reported with every run must be right."""
from __future__ import annotations

import itertools
import math
import random

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from simulations.errors import LinkModelError, TopologyError
from simulations.network import (LinkModel, TopologySpec, build_topology, r_robustness,
                                 random_regular_sparse, spectral_gap, topology_report)


def naive_r_robustness(g: nx.Graph) -> int:
    """The definition of LeBlanc et al., enumerated literally (tiny graphs only)."""
    nodes = list(g.nodes)
    n = len(nodes)

    def reach(s):
        return max(sum(1 for u in g.neighbors(v) if u not in s) for v in s)

    best = math.inf
    for labels in itertools.product((0, 1, 2), repeat=n):
        s1 = {v for v, l in zip(nodes, labels) if l == 1}
        s2 = {v for v, l in zip(nodes, labels) if l == 2}
        if s1 and s2:
            best = min(best, max(reach(s1), reach(s2)))
    return int(best)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(2, 7), p=st.floats(0.2, 1.0), seed=st.integers(0, 10_000))
def test_exact_r_robustness_matches_the_definition(n, p, seed):
    g = nx.gnp_random_graph(n, p, seed=seed)
    lo, hi, exact = r_robustness(g)
    assert exact and lo == hi == naive_r_robustness(g), f"seed={seed}"


def test_r_robustness_of_known_graphs():
    for n in range(2, 12):
        assert r_robustness(nx.complete_graph(n))[0] == math.ceil(n / 2)
        assert r_robustness(nx.path_graph(n))[0] == 1
    assert r_robustness(nx.empty_graph(5))[0] == 0


def test_large_graph_reports_consistent_bounds():
    g = build_topology(TopologySpec(kind="regular", n=300, degree=6), 3)
    lo, hi, exact = r_robustness(g)
    assert 1 <= lo <= hi <= 6
    assert not exact or lo == hi


def test_spectral_gap_matches_closed_forms():
    assert spectral_gap(nx.complete_graph(10)) == pytest.approx(10 / 9)
    assert spectral_gap(nx.cycle_graph(12)) == pytest.approx(1 - math.cos(2 * math.pi / 12))
    assert spectral_gap(nx.disjoint_union(nx.path_graph(3), nx.path_graph(3))) == 0.0


def test_report_has_every_metric_and_diameter():
    rep = topology_report(nx.path_graph(9))
    assert rep.diameter == 8 and rep.diameter_exact and rep.connected and rep.edges == 8


@pytest.mark.parametrize("kind", ["regular", "erdos_renyi", "watts_strogatz", "barabasi_albert", "geometric", "complete"])
def test_every_kind_builds_a_connected_graph_deterministically(kind):
    spec = TopologySpec(kind=kind, n=40, degree=4, p=0.15, radius=0.35)
    a, b = build_topology(spec, 7), build_topology(spec, 7)
    assert sorted(a.nodes) == list(range(40)) and nx.is_connected(a)
    assert sorted(a.edges) == sorted(b.edges)


def test_fast_regular_graph_is_simple_and_regular():
    m = random_regular_sparse(20_000, 4, 5)
    assert m.shape == (20_000, 20_000)
    assert set(np.asarray(m.sum(axis=1)).ravel()) == {4.0}
    assert m.max() == 1.0 and m.diagonal().sum() == 0
    assert (m != m.T).nnz == 0
    assert (random_regular_sparse(20_000, 4, 5) != m).nnz == 0


def test_graph_files_and_bad_input(tmp_path):
    f = tmp_path / "g.txt"
    f.write_text("# ring\na b\nb c\nc a\n")
    g = build_topology(TopologySpec(kind="file", path=str(f)), 0)
    assert g.number_of_nodes() == 3 and g.number_of_edges() == 3
    gml = tmp_path / "g.graphml"
    nx.write_graphml(nx.cycle_graph(5), gml)
    assert build_topology(TopologySpec(kind="file", path=str(gml)), 0).number_of_edges() == 5
    bad = tmp_path / "bad.graphml"
    bad.write_text("<graphml><oops")
    with pytest.raises(TopologyError, match="cannot parse"):
        build_topology(TopologySpec(kind="file", path=str(bad)), 0)
    with pytest.raises(TopologyError, match="not found"):
        build_topology(TopologySpec(kind="file", path=str(tmp_path / "missing")), 0)
    with pytest.raises(TopologyError, match="unknown topology"):
        build_topology(TopologySpec(kind="torus"), 0)
    with pytest.raises(TopologyError):
        build_topology(TopologySpec(kind="regular", n=5, degree=3), 0)  # n*k odd


def test_link_model_rejects_bad_parameters_and_samples_in_range():
    with pytest.raises(LinkModelError):
        LinkModel(loss_p=1.5)
    with pytest.raises(LinkModelError):
        LinkModel(latency_s=-1)
    with pytest.raises(LinkModelError):
        LinkModel(latency="pareto")
    rng = random.Random(1)
    lm = LinkModel(latency="uniform", latency_s=0.01, jitter_s=0.02)
    xs = [lm.sample_latency(rng) for _ in range(1000)]
    assert min(xs) >= 0.01 and max(xs) <= 0.03
