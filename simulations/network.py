"""Topologies, topology metrics and the link model of the simulated network.

A simulated mesh is a NetworkX graph whose nodes are the integers ``0 .. n-1`` (so that every
experiment can index numpy arrays by node) plus a :class:`LinkModel` describing what happens to
a message on one hop: latency drawn from a distribution, loss, duplication, reordering and a
per-link bandwidth. :class:`Partition` and :class:`Crash` describe scheduled faults of the
network itself (Byzantine *behaviours* live in ``simulations.faults``).

Topology metrics are reported with every run because the published results the experiments
reproduce depend on them:

* **spectral gap** -- ``lambda_2`` of the normalised Laplacian ``I - D^-1/2 A D^-1/2``. The
  number of rounds averaging consensus needs to reach a tolerance scales like ``1/gap``.
* **diameter** -- hop count of the longest shortest path; a lower bound on gossip rounds.
* **r-robustness** -- the W-MSR resilient-averaging condition of LeBlanc et al. (2013): with at
  most ``F`` Byzantine neighbours per node, W-MSR converges on a ``(2F+1)``-robust graph.
  Computed exactly for graphs of at most :data:`ROBUSTNESS_EXACT_N_MAX` nodes; for larger graphs
  a lower and an upper bound are reported (see :func:`r_robustness`).
"""
from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass, field
from pathlib import Path

import networkx as nx
import numpy as np

from simulations.errors import LinkModelError, TopologyError

log = logging.getLogger(__name__)

TOPOLOGY_KINDS = ("regular", "erdos_renyi", "watts_strogatz", "barabasi_albert", "geometric",
                  "complete", "file")
"""Names accepted by :func:`build_topology` (``--topology`` on the command line)."""

NODES_MAX = 2_000_000
"""Largest graph the builders accept; the vectorised mode is measured at 1,000,000 nodes."""

ROBUSTNESS_EXACT_N_MAX = 18
"""Exact r-robustness enumerates all 2**n subsets (vectorised); above this, bounds only."""

DIAMETER_EXACT_N_MAX = 3_000
"""All-pairs BFS above this size is too slow; a double-sweep lower bound is reported instead."""

SPECTRAL_DENSE_N_MAX = 1_500
"""Dense eigendecomposition below this size; sparse Lanczos (``eigsh``) above."""


@dataclass(frozen=True)
class TopologySpec:
    """What graph to build. One frozen object, built once at the edge (CLI or experiment).

    Args:
        kind: one of :data:`TOPOLOGY_KINDS`.
        n: number of nodes (ignored for ``file``).
        degree: ``k`` of random k-regular, neighbours of Watts-Strogatz (even), ``m`` edges per
            new node of Barabasi-Albert. Default 4.
        p: edge probability of Erdos-Renyi, rewiring probability of Watts-Strogatz. Default 0.1.
        radius: connection radius of the random geometric graph in the unit square. Default 0.2.
        path: GraphML (``.graphml``) or edge-list file for ``file``.
        connected: retry (up to :data:`CONNECT_TRIES_MAX` seeds) until the graph is connected.
    """

    kind: str = "regular"
    n: int = 16
    degree: int = 4
    p: float = 0.1
    radius: float = 0.2
    path: str | None = None
    connected: bool = True


CONNECT_TRIES_MAX = 50
"""How many reseeded attempts :func:`build_topology` makes to obtain a connected graph."""


def build_topology(spec: TopologySpec, seed: int) -> nx.Graph:
    """Build the graph ``spec`` asks for, relabelled to integers ``0 .. n-1``.

    Deterministic: the same ``spec`` and ``seed`` give the same graph (NetworkX generators are
    seeded with integers drawn from one ``random.Random(seed)``).

    Args:
        spec: the topology.
        seed: the run's seed.

    Raises:
        TopologyError: unknown kind, parameters out of range, unreadable file, or no connected
            graph after :data:`CONNECT_TRIES_MAX` attempts when ``spec.connected``.
    """
    if spec.kind not in TOPOLOGY_KINDS:
        raise TopologyError(f"unknown topology {spec.kind!r}; choose one of {', '.join(TOPOLOGY_KINDS)}")
    if spec.kind == "file":
        g = load_graph_file(spec.path)
        if spec.connected and not nx.is_connected(g):
            raise TopologyError(f"graph file {spec.path} is not connected")
        return g
    n = spec.n
    if not (1 <= n <= NODES_MAX):
        raise TopologyError(f"n must be in [1, {NODES_MAX}], got {n}")
    if not (0.0 <= spec.p <= 1.0):
        raise TopologyError(f"p must be in [0, 1], got {spec.p}")
    rng = random.Random(seed)
    for _attempt in range(CONNECT_TRIES_MAX):
        s = rng.randrange(2**31)
        g = _generate(spec, s)
        if not spec.connected or n == 1 or nx.is_connected(g):
            g = nx.convert_node_labels_to_integers(g, ordering="sorted")
            g.graph["kind"] = spec.kind
            return g
    raise TopologyError(f"no connected {spec.kind} graph with n={n} after {CONNECT_TRIES_MAX} "
                        f"attempts; raise degree/p/radius")


def _generate(spec: TopologySpec, s: int) -> nx.Graph:
    n, k = spec.n, spec.degree
    match spec.kind:
        case "regular":
            if not (0 <= k < n) or (n * k) % 2:
                raise TopologyError(f"random {k}-regular graph needs 0 <= k < n and n*k even (n={n})")
            if n > 20_000:
                return nx.from_scipy_sparse_array(random_regular_sparse(n, k, s))
            return nx.random_regular_graph(k, n, seed=s)
        case "erdos_renyi":
            return nx.fast_gnp_random_graph(n, spec.p, seed=s)
        case "watts_strogatz":
            if k < 2 or k % 2 or k >= n:
                raise TopologyError(f"Watts-Strogatz needs an even degree 2 <= k < n, got k={k}")
            return nx.watts_strogatz_graph(n, k, spec.p, seed=s)
        case "barabasi_albert":
            if not (1 <= k < n):
                raise TopologyError(f"Barabasi-Albert needs 1 <= m < n, got m={k}")
            return nx.barabasi_albert_graph(n, k, seed=s)
        case "geometric":
            if spec.radius <= 0:
                raise TopologyError(f"radius must be > 0, got {spec.radius}")
            return nx.random_geometric_graph(n, spec.radius, seed=s)
        case "complete":
            return nx.complete_graph(n)
    raise TopologyError(f"unknown topology {spec.kind!r}")  # pragma: no cover - guarded above


def _check_edge_list(p: Path) -> None:
    """An edge list is lines of exactly two node labels (``#`` comments allowed): a text file
    would otherwise parse as a graph of its words (a prose file became a 2-node graph)."""
    for i, line in enumerate(p.read_text(errors="replace").splitlines(), 1):
        tokens = line.split("#", 1)[0].split()
        if tokens and len(tokens) != 2:
            raise TopologyError(f"graph file {p} line {i} is not an edge 'NODE NODE'; "
                                "use an edge list (two node labels per line) or a .graphml file")


def load_graph_file(path: str | None) -> nx.Graph:
    """Read a GraphML file (``.graphml``/``.xml``) or a whitespace edge list (anything else).

    Node labels are replaced by integers in sorted label order; the original label is kept in
    the node attribute ``label``. Self-loops are removed and the graph made undirected.

    Raises:
        TopologyError: missing path, unreadable or unparsable file, or an empty graph.
    """
    if not path:
        raise TopologyError("topology 'file' needs a path (--graph-file PATH)")
    p = Path(path)
    if not p.is_file():
        raise TopologyError(f"graph file not found: {p}")
    try:
        if p.suffix.lower() in (".graphml", ".xml"):
            g = nx.read_graphml(p)
        else:
            _check_edge_list(p)
            g = nx.read_edgelist(p, comments="#", data=False)
    except TopologyError:
        raise
    except Exception as exc:  # NetworkX raises many types (ParseError, TypeError, IndexError)
        raise TopologyError(f"cannot parse graph file {p}: {exc}") from exc
    g = nx.Graph(g)
    g.remove_edges_from(list(nx.selfloop_edges(g)))
    if g.number_of_nodes() == 0:
        raise TopologyError(f"graph file {p} has no nodes")
    if g.number_of_nodes() > NODES_MAX:
        raise TopologyError(f"graph file {p} has more than {NODES_MAX} nodes")
    g = nx.convert_node_labels_to_integers(g, ordering="sorted", label_attribute="label")
    g.graph["kind"] = "file"
    return g


def random_regular_sparse(n: int, k: int, seed: int):
    """A random simple ``k``-regular graph on ``n`` nodes as a scipy CSR matrix, fast.

    Construction (documented because NetworkX's generator is too slow for 10**6 nodes): the
    union of ``k // 2`` random Hamiltonian cycles (each a random permutation, giving every node
    two neighbours) plus one random perfect matching when ``k`` is odd (``n`` even). The few
    self-loops and repeated edges this produces (about ``k**2/4`` in expectation, independent of
    ``n``) are removed by degree-preserving double-edge swaps ``(a,b),(c,d) -> (a,d),(c,b)``
    with random partner edges, so the result is simple and exactly k-regular. This is the
    permutation model of random regular graphs, contiguous to the uniform model (Janson 1995),
    with the same Friedman spectral-gap limit ``1 - 2*sqrt(k-1)/k``.

    Args:
        n: nodes, more than ``k``.
        k: degree.
        seed: numpy seed.

    Raises:
        TopologyError: impossible parameters, or a repair that did not converge (tiny ``n``).
    """
    import scipy.sparse as sp

    if k < 0 or k >= n or (n * k) % 2:
        raise TopologyError(f"random {k}-regular graph needs 0 <= k < n and n*k even (n={n})")
    gen = np.random.default_rng(seed)
    us: list[np.ndarray] = []
    vs: list[np.ndarray] = []
    for _ in range(k // 2):
        perm = gen.permutation(n)
        us.append(perm)
        vs.append(np.roll(perm, -1))
    if k % 2:
        perm = gen.permutation(n)
        us.append(perm[0::2])
        vs.append(perm[1::2])
    if not us:
        return sp.csr_matrix((n, n), dtype=np.float64)
    a = np.concatenate(us).astype(np.int64)
    b = np.concatenate(vs).astype(np.int64)
    m = a.size
    for _round in range(200):
        lo, hi = np.minimum(a, b), np.maximum(a, b)
        code = lo * n + hi
        order = np.argsort(code, kind="stable")
        sc = code[order]
        dup = np.zeros(m, dtype=bool)
        dup[order[1:][sc[1:] == sc[:-1]]] = True
        bad = np.flatnonzero(dup | (a == b))
        if bad.size == 0:
            break
        for i in bad.tolist():
            for _try in range(50):
                j = int(gen.integers(m))
                if j == i:
                    continue
                na, nb, nc, nd = int(a[i]), int(b[j]), int(a[j]), int(b[i])
                if na == nb or nc == nd:
                    continue
                c1 = min(na, nb) * n + max(na, nb)
                c2 = min(nc, nd) * n + max(nc, nd)
                if c1 == c2:
                    continue
                p1, p2 = np.searchsorted(sc, [c1, c2])
                if (p1 < m and sc[p1] == c1) or (p2 < m and sc[p2] == c2):
                    continue
                b[i], b[j] = nb, nd
                break
    else:
        raise TopologyError(f"could not draw a simple {k}-regular graph on {n} nodes")
    # Relabel so that the first cycle runs 0, 1, ..., n-1: an isomorphic graph (still uniformly
    # random up to labels) in which two of every node's neighbours are adjacent in memory,
    # which halves the random memory accesses of the vectorised averaging.
    label = np.empty(n, dtype=np.int64)
    label[us[0]] = np.arange(n)
    a, b = label[a], label[b]
    data = np.ones(2 * m, dtype=np.float64)
    mat = sp.csr_matrix((data, (np.concatenate([a, b]), np.concatenate([b, a]))), shape=(n, n))
    return mat


# --------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TopologyReport:
    """Metrics of one graph, written next to every experiment's results.

    ``diameter`` is exact when ``diameter_exact``; otherwise a double-sweep lower bound.
    ``r_robust_lower``/``r_robust_upper`` coincide when ``r_robust_exact``.
    ``spectral_gap`` is ``lambda_2`` of the normalised Laplacian (0 when disconnected).
    """

    kind: str
    n: int
    edges: int
    degree_min: int
    degree_max: int
    degree_mean: float
    connected: bool
    spectral_gap: float
    diameter: int | None
    diameter_exact: bool
    r_robust_lower: int
    r_robust_upper: int
    r_robust_exact: bool

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def spectral_gap(g: nx.Graph) -> float:
    """``lambda_2`` of the normalised Laplacian; 0.0 for a disconnected or 1-node graph."""
    n = g.number_of_nodes()
    if n < 2 or not nx.is_connected(g):
        return 0.0
    lap = nx.normalized_laplacian_matrix(g, nodelist=range(n)).astype(np.float64)
    if n <= SPECTRAL_DENSE_N_MAX:
        vals = np.linalg.eigvalsh(lap.toarray())
        return float(max(0.0, np.sort(vals)[1]))
    import scipy.sparse.linalg as sla

    # lambda_2(L) = 1 - mu_2 where mu are the eigenvalues of the symmetric normalised adjacency
    # S = I - L; shifting by +I makes the spectrum of 2I - L non-negative so 'LA' finds the top.
    shifted = 2.0 * _identity(n) - lap
    vals = sla.eigsh(shifted, k=2, which="LA", return_eigenvectors=False, tol=1e-6,
                     v0=np.ones(n) + np.arange(n) / n)
    top2 = float(np.sort(vals)[0])
    return float(max(0.0, 2.0 - top2))


def _identity(n: int):
    import scipy.sparse as sp

    return sp.identity(n, format="csr", dtype=np.float64)


def diameter(g: nx.Graph) -> tuple[int | None, bool]:
    """``(diameter, exact)``: exact below :data:`DIAMETER_EXACT_N_MAX` nodes, else a lower bound
    from four double sweeps (BFS from a node, then from the farthest node found). ``None`` when
    the graph is disconnected (infinite diameter)."""
    n = g.number_of_nodes()
    if n == 0 or not nx.is_connected(g):
        return None, True
    if n <= DIAMETER_EXACT_N_MAX:
        return int(nx.diameter(g)), True
    best = 0
    start = 0
    for _ in range(4):
        dist = nx.single_source_shortest_path_length(g, start)
        far, d = max(dist.items(), key=lambda kv: (kv[1], kv[0]))
        best = max(best, d)
        start = far
    return best, False


def r_robustness(g: nx.Graph) -> tuple[int, int, bool]:
    """r-robustness of ``g`` as ``(lower, upper, exact)``.

    Definitions (LeBlanc, Zhang, Koutsoukos, Sundaram 2013): a node set ``S`` is *r-reachable*
    if some node of ``S`` has at least ``r`` neighbours outside ``S``; the graph is *r-robust*
    if, of every two disjoint non-empty node sets, at least one is r-reachable. The robustness
    is the largest such ``r``.

    Exact (``n <= ROBUSTNESS_EXACT_N_MAX``): with ``reach(S) = max_{v in S} |N(v) \\ S|`` and
    ``m(T) = min over non-empty S within T of reach(S)`` (a subset-minimum DP), the robustness
    is ``min over S1 of max(reach(S1), m(V \\ S1))``; all 2**n subsets are evaluated as numpy
    bit masks.

    Bounds (larger graphs): lower bound 1 if connected (0 otherwise), raised to
    ``delta_min - floor(n/2) + 1`` when that is larger (dense-graph sufficient condition);
    upper bound ``min(delta_min, ceil(n/2))`` tightened by evaluating the pair (S, V \\ S) for
    the spectral (Fiedler) bisection, whose cut is usually the graph's weakest. The true value
    lies between them.
    """
    n = g.number_of_nodes()
    if n <= 1:
        return 0, 0, True
    if n <= ROBUSTNESS_EXACT_N_MAX:
        r = _r_robustness_exact(g)
        return r, r, True
    degs = [d for _, d in g.degree()]
    dmin = min(degs)
    connected = nx.is_connected(g)
    lower = 1 if connected else 0
    lower = max(lower, dmin - n // 2 + 1) if connected else 0
    upper = min(dmin, math.ceil(n / 2))
    if not connected:
        return 0, 0, True
    if n <= SPECTRAL_DENSE_N_MAX * 4:
        try:
            vec = nx.fiedler_vector(g, seed=1, method="tracemin_lu")
            order = np.argsort(vec)
            half = set(int(i) for i in order[: n // 2])
            upper = min(upper, max(_reach(g, half), _reach(g, set(range(n)) - half)))
        except Exception as exc:  # eigen-solver failure: keep the degree bound
            log.info("Fiedler bisection failed (%s); using the degree bound only", exc)
    return lower, max(lower, upper), lower == upper


def _reach(g: nx.Graph, s: set[int]) -> int:
    return max((sum(1 for u in g.neighbors(v) if u not in s) for v in s), default=0)


def _r_robustness_exact(g: nx.Graph) -> int:
    n = g.number_of_nodes()
    adj = np.zeros(n, dtype=np.int64)
    for u, v in g.edges():
        adj[u] |= 1 << v
        adj[v] |= 1 << u
    full = (1 << n) - 1
    subsets = np.arange(1 << n, dtype=np.int64)
    reach = np.zeros(1 << n, dtype=np.int64)
    for v in range(n):
        inside = (subsets >> v) & 1
        outside = np.bitwise_count(adj[v] & ~subsets & full).astype(np.int64)
        reach = np.maximum(reach, inside * outside)
    big = np.iinfo(np.int64).max // 2
    m = reach.copy()
    m[0] = big
    for v in range(n):
        bit = 1 << v
        idx = subsets[(subsets & bit) != 0]
        m[idx] = np.minimum(m[idx], m[idx ^ bit])
    s1 = subsets[1:full]  # non-empty, complement non-empty
    return int(np.min(np.maximum(reach[s1], m[full ^ s1])))


def topology_report(g: nx.Graph) -> TopologyReport:
    """Compute every metric of :class:`TopologyReport` for ``g``."""
    n = g.number_of_nodes()
    degs = [d for _, d in g.degree()] or [0]
    connected = n > 0 and nx.is_connected(g)
    diam, diam_exact = diameter(g)
    lo, hi, exact = r_robustness(g)
    return TopologyReport(
        kind=str(g.graph.get("kind", "graph")), n=n, edges=g.number_of_edges(),
        degree_min=min(degs), degree_max=max(degs), degree_mean=float(np.mean(degs)),
        connected=connected, spectral_gap=round(spectral_gap(g), 12), diameter=diam,
        diameter_exact=diam_exact, r_robust_lower=lo, r_robust_upper=hi, r_robust_exact=exact)


# --------------------------------------------------------------------------------------------
# Link model and scheduled network faults
# --------------------------------------------------------------------------------------------

LATENCY_KINDS = ("const", "uniform", "exponential", "lognormal")


@dataclass(frozen=True)
class LinkModel:
    """What one hop does to a message. All times in seconds, probabilities in [0, 1].

    Args:
        latency: ``const`` (``latency_s``), ``uniform`` on ``[latency_s, latency_s + jitter_s]``,
            ``exponential`` (``latency_s`` + Exp(mean ``jitter_s``)) or ``lognormal`` (median
            ``latency_s``, shape ``jitter_s``). Default ``uniform`` 20-40 ms, a LAN/metro link.
        latency_s: base latency. Default 0.02.
        jitter_s: spread (see ``latency``). Default 0.02.
        loss_p: probability a hop is lost. Default 0.
        dup_p: probability a hop is delivered twice (the copy ``latency`` later). Default 0.
        reorder_p: probability a hop is held back an extra ``reorder_delay_s`` so that later
            messages overtake it. Default 0.
        reorder_delay_s: the hold-back. Default 0.1.
        bandwidth_bytes_per_s: per directed link; a message occupies the link ``size/bandwidth``
            seconds and queues behind earlier ones (FIFO). ``0`` means unlimited. Default 0.
    """

    latency: str = "uniform"
    latency_s: float = 0.02
    jitter_s: float = 0.02
    loss_p: float = 0.0
    dup_p: float = 0.0
    reorder_p: float = 0.0
    reorder_delay_s: float = 0.1
    bandwidth_bytes_per_s: float = 0.0

    def __post_init__(self) -> None:
        if self.latency not in LATENCY_KINDS:
            raise LinkModelError(f"latency must be one of {LATENCY_KINDS}, got {self.latency!r}")
        for name in ("latency_s", "jitter_s", "reorder_delay_s", "bandwidth_bytes_per_s"):
            v = getattr(self, name)
            if not (v >= 0.0 and math.isfinite(v)):
                raise LinkModelError(f"{name} must be a finite number >= 0, got {v}")
        for name in ("loss_p", "dup_p", "reorder_p"):
            v = getattr(self, name)
            if not (0.0 <= v <= 1.0):
                raise LinkModelError(f"{name} must be in [0, 1], got {v}")

    def sample_latency(self, rng: random.Random) -> float:
        """One hop's propagation delay in seconds (never negative)."""
        match self.latency:
            case "const":
                return self.latency_s
            case "uniform":
                return self.latency_s + self.jitter_s * rng.random()
            case "exponential":
                return self.latency_s + (rng.expovariate(1.0 / self.jitter_s) if self.jitter_s else 0.0)
            case _:  # lognormal
                return self.latency_s * math.exp(self.jitter_s * rng.gauss(0.0, 1.0))


@dataclass(frozen=True)
class Partition:
    """Between ``start_s`` and ``heal_s`` (virtual seconds) only nodes of the same group talk.

    Nodes not listed in any group form one extra group together. ``heal_s=None`` never heals.
    """

    start_s: float
    heal_s: float | None
    groups: tuple[frozenset[int], ...]

    def active(self, now: float) -> bool:
        return now >= self.start_s and (self.heal_s is None or now < self.heal_s)

    def group_of(self, node: int) -> int:
        for i, grp in enumerate(self.groups):
            if node in grp:
                return i
        return -1

    @staticmethod
    def halves(g: nx.Graph, start_s: float, heal_s: float | None) -> "Partition":
        """Split ``g`` into two connected-ish regions: BFS order from node 0, first half vs rest."""
        order = list(nx.bfs_tree(g, 0)) if g.number_of_nodes() else []
        half = frozenset(order[: len(order) // 2])
        return Partition(start_s, heal_s, (half,))


@dataclass(frozen=True)
class Crash:
    """Node ``node`` stops at ``at_s`` (drops messages, timers and LLM jobs) and, unless
    ``recover_s`` is ``None``, comes back at ``recover_s`` with its state intact (a process
    pause or network outage; a restart-from-disk is the node's own concern)."""

    node: int
    at_s: float
    recover_s: float | None = None


@dataclass(frozen=True)
class NetworkConditions:
    """Everything about the network of one run: the link model and the scheduled faults."""

    link: LinkModel = field(default_factory=LinkModel)
    partitions: tuple[Partition, ...] = ()
    crashes: tuple[Crash, ...] = ()

    def blocked(self, src: int, dst: int, now: float) -> bool:
        """True when an active partition separates ``src`` from ``dst`` at time ``now``."""
        for p in self.partitions:
            if p.active(now) and p.group_of(src) != p.group_of(dst):
                return True
        return False


def neighbours_table(g: nx.Graph) -> list[tuple[int, ...]]:
    """Sorted neighbour tuples per node (deterministic iteration for the engine)."""
    return [tuple(sorted(g.neighbors(v))) for v in range(g.number_of_nodes())]


def highest_degree(g: nx.Graph, count: int) -> list[int]:
    """The ``count`` highest-degree nodes, ties broken by node id (deterministic)."""
    return [v for v, _ in sorted(g.degree(), key=lambda vd: (-vd[1], vd[0]))[:count]]


def region(g: nx.Graph, count: int, rng: random.Random) -> list[int]:
    """``count`` nodes forming one region: BFS from a random start node (ties by node id)."""
    n = g.number_of_nodes()
    if count <= 0 or n == 0:
        return []
    start = rng.randrange(n)
    out: list[int] = []
    seen = {start}
    frontier = [start]
    while frontier and len(out) < count:
        nxt = []
        for v in frontier:
            out.append(v)
            if len(out) == count:
                break
            for u in sorted(g.neighbors(v)):
                if u not in seen:
                    seen.add(u)
                    nxt.append(u)
        frontier = nxt
    if len(out) < count:  # disconnected graph: fill from the rest in id order
        rest = [v for v in range(n) if v not in set(out)]
        out.extend(rest[: count - len(out)])
    return out

