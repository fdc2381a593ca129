"""Embedding-averaging consensus and robust aggregators.

Each node ``i`` holds a proposal vector ``r_i`` (the L2-normalised embedding of its answer).
Every round it moves toward its neighbours::

    r_i <- (1 - alpha) * r_i + alpha * rbar_i

where ``rbar_i`` is the (trust-weighted) mean of the neighbours' current vectors, or a robust
aggregate of them. Rounds stop when ``max_i ||r_i(t+1) - r_i(t)|| < eps`` or at a round limit.
The agreed text is the candidate whose embedding is nearest (cosine) the agreed vector, so
every honest node ends on the same text.

Where the plain rule converges (connected graph, ``0 < alpha < 1``): the iteration is
``R <- ((1 - alpha) I + alpha P) R`` with ``P`` row-stochastic, so every node converges to
``sum_i pi_i r_i`` where ``pi`` is the stationary distribution of ``P``:

* ``mixing="neighbour_mean"`` (the rule above, ``P_ij ~ A_ij w_j``): ``pi_i ~ w_i d_i`` with
  ``d_i = sum_j A_ij w_j``, i.e. a degree-and-trust weighted mean (on a regular graph with
  equal trust, the plain mean);
* ``mixing="metropolis"`` (Metropolis-Hastings weights toward ``pi ~ w``,
  ``P_ij = min(1/deg_i, w_j / (w_i deg_j))``): exactly the trust-weighted mean
  ``sum_i w_i r_i / sum_i w_i`` on any connected graph, at the price of knowing neighbours'
  degrees. :func:`consensus_limit` computes the limit for either.

Robust aggregators and their breakdown points (the largest fraction of arbitrary vectors
they tolerate before the output can be dragged arbitrarily far):

* coordinate-wise trimmed mean with trim fraction ``beta``: ``beta`` (< 1/2);
* coordinate-wise median: 1/2;
* geometric median (Weiszfeld): 1/2;
* medoid (the input vector with the least total distance to the others): 1/2;
* ``filtered``: drop vectors farther than ``threshold`` from the geometric median, then
  average: 1/2 (inherits the centre's).

Everything is deterministic numpy; no randomness is used.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Hashable, Mapping, Optional, Sequence, Union

import numpy as np

from .effects import MEMBERS, Broadcast, CancelTimer, SetTimer

logger = logging.getLogger(__name__)

AGGREGATORS = ("mean", "trimmed_mean", "median", "geometric_median", "medoid", "filtered")
MIXINGS = ("neighbour_mean", "metropolis")
NORM_TOLERANCE = 1e-3
"""How far from 1 the norm of a proposal may be (proposals are L2-normalised)."""
DIM_MAX = 65_536


class AveragingError(ValueError):
    """Base class of :mod:`consensus.averaging` errors."""


class InvalidVector(AveragingError):
    """A vector is NaN/Inf, has the wrong dimension, or its norm is an outlier."""


# ------------------------------------------------------------------ validation


def check_vectors(vectors, *, dim: Optional[int] = None, unit: bool = True,
                  norm_tolerance: float = NORM_TOLERANCE) -> np.ndarray:
    """Validate a batch of proposal vectors and return them as a float64 ``(n, dim)`` array.

    Args:
        vectors: array-like of shape ``(n, dim)`` (or one vector of shape ``(dim,)``).
        dim: required dimension (None: any, up to 65536).
        unit: require L2 norm within ``norm_tolerance`` of 1 (proposals); when False only
            require norm <= 1 + tolerance (intermediate averages of unit vectors).
        norm_tolerance: allowed deviation of the norm (default 1e-3).

    Raises:
        InvalidVector: naming the first offending row and why.
    """
    try:
        x = np.asarray(vectors, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidVector(f"not a numeric array: {exc}") from exc
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[1] == 0 or x.shape[1] > DIM_MAX:
        raise InvalidVector(f"expected shape (n, dim) with 0 < dim <= {DIM_MAX}, got {x.shape}")
    if dim is not None and x.shape[1] != dim:
        raise InvalidVector(f"expected dimension {dim}, got {x.shape[1]}")
    finite = np.isfinite(x).all(axis=1)
    if not finite.all():
        raise InvalidVector(f"row {int(np.argmin(finite))} contains NaN or Inf")
    norms = np.linalg.norm(x, axis=1)
    if unit:
        bad = np.abs(norms - 1.0) > norm_tolerance
    else:
        bad = norms > 1.0 + norm_tolerance
    if bad.any():
        i = int(np.argmax(bad))
        raise InvalidVector(f"row {i} has norm {norms[i]:.6g}, outside the allowed range")
    return x


def normalise(vectors) -> np.ndarray:
    """L2-normalise rows (float64). Raises :class:`InvalidVector` on zero or non-finite rows."""
    x = np.asarray(vectors, dtype=np.float64)
    if x.ndim == 1:
        x = x[None, :]
    if not np.isfinite(x).all():
        raise InvalidVector("vectors contain NaN or Inf")
    n = np.linalg.norm(x, axis=1, keepdims=True)
    if (n == 0).any():
        raise InvalidVector("cannot normalise a zero vector")
    return x / n


def _weights(w, n: int) -> np.ndarray:
    if w is None:
        return np.ones(n)
    w = np.asarray(w, dtype=np.float64).reshape(-1)
    if w.shape[0] != n or not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise AveragingError(f"weights must be {n} finite non-negative numbers with a positive sum")
    return w


def _rows(x, weights) -> tuple[np.ndarray, np.ndarray]:
    """Validate the input of a raw aggregator: a float64 ``(n, dim)`` array and its weights,
    with every row containing NaN or +-Inf dropped. Such a row is nobody's embedding (a
    Byzantine or broken sender); dropping it is what makes one of them unable to turn the
    result into NaN even where a robust rule would have trimmed it.

    Raises:
        InvalidVector: not a numeric 2-D array, or no finite row with positive weight left.
        AveragingError: bad weights.
    """
    try:
        x = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidVector(f"not a numeric array: {exc}") from exc
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0 or x.shape[1] > DIM_MAX:
        raise InvalidVector(f"expected shape (n, dim) with n >= 1, 0 < dim <= {DIM_MAX}, "
                            f"got {x.shape}")
    w = _weights(weights, x.shape[0])
    finite = np.isfinite(x).all(axis=1)
    if not finite.all():
        x, w = x[finite], w[finite]
        if x.shape[0] == 0 or w.sum() <= 0:
            raise InvalidVector("every row with positive weight contains NaN or Inf")
    return x, w


# ------------------------------------------------------------------ robust aggregators


def weighted_mean(x, weights=None) -> np.ndarray:
    """Weighted mean of rows. Breakdown point 0: one vector can move it anywhere.
    Like every aggregator here it ignores rows containing NaN/Inf (see :func:`_rows`)."""
    x, w = _rows(x, weights)
    return (w[:, None] * x).sum(axis=0) / w.sum()


def trimmed_mean(x, trim_fraction: float = 0.2, weights=None) -> np.ndarray:
    """Coordinate-wise trimmed mean: per coordinate, drop the lowest and highest
    ``trim_fraction`` of the (weight) mass and average the rest.

    Breakdown point ``trim_fraction``: if the poisoned vectors carry at most that fraction
    of the weight, every coordinate of the result lies between the smallest and largest
    honest value of that coordinate.

    The boundary is exact: masses within ``1e-9`` of the total of a cut are treated as
    at the cut, so poisoned vectors whose share equals ``trim_fraction`` up to rounding keep
    no sliver of weight.

    Args:
        trim_fraction: in [0, 0.5), default 0.2.
    """
    if (isinstance(trim_fraction, bool) or not isinstance(trim_fraction, (int, float))
            or not (0.0 <= trim_fraction < 0.5)):
        raise AveragingError("trim_fraction must be in [0, 0.5)")
    x, w = _rows(x, weights)
    order = np.argsort(x, axis=0, kind="stable")
    xs = np.take_along_axis(x, order, axis=0)
    ws = w[order]
    total = w.sum()
    hi_edge = np.cumsum(ws, axis=0)
    lo_edge = hi_edge - ws
    lo, hi = trim_fraction * total, (1.0 - trim_fraction) * total
    # mass of each sorted entry that lies inside [lo, hi]
    kept = np.clip(np.minimum(hi_edge, hi) - np.maximum(lo_edge, lo), 0.0, None)
    kept[kept <= 1e-9 * total] = 0.0  # rounding slivers at the cuts are not mass
    mass = kept.sum(axis=0)
    return (kept * xs).sum(axis=0) / np.where(mass > 0, mass, 1.0)


def coordinate_median(x, weights=None) -> np.ndarray:
    """Coordinate-wise (weighted) median. Breakdown point 1/2: with less than half the
    weight poisoned, every coordinate lies between the honest minimum and maximum."""
    x, w = _rows(x, weights)
    order = np.argsort(x, axis=0, kind="stable")
    xs = np.take_along_axis(x, order, axis=0)
    cw = np.cumsum(w[order], axis=0)
    half = w.sum() / 2.0
    lo = np.argmax(cw >= half, axis=0)  # first index reaching half the mass
    hi = np.argmax(cw > half, axis=0)  # first index exceeding it
    cols = np.arange(x.shape[1])
    return 0.5 * (xs[lo, cols] + xs[hi, cols])


def geometric_median(x, weights=None, *, eps: float = 1e-9, iterations_max: int = 500) -> np.ndarray:
    """The point minimising the weighted sum of Euclidean distances (Weiszfeld iterations,
    with the Vardi-Zhang correction when the iterate lands on an input point).

    Breakdown point 1/2. Bound used in the tests: if honest vectors of total weight share
    ``h > 1/2`` all lie within distance ``r`` of a point ``z``, the geometric median lies
    within ``2 h r / (2 h - 1)`` of ``z``, wherever the others are.

    Args:
        eps: stop when an iteration moves less than this (default 1e-9).
        iterations_max: bound on iterations (default 500).
    """
    x, w = _rows(x, weights)
    keep = w > 0
    x, w = x[keep], w[keep]
    y = coordinate_median(x, w)
    with np.errstate(over="ignore"):  # an astronomically far row gets distance inf: ignored
        return _weiszfeld(x, w, y, eps, iterations_max)


def _weiszfeld(x: np.ndarray, w: np.ndarray, y: np.ndarray, eps: float,
               iterations_max: int) -> np.ndarray:
    for _ in range(iterations_max):
        d = np.linalg.norm(x - y, axis=1)
        at = d < 1e-12
        if at.any():
            # y coincides with an input point: Vardi-Zhang step
            nz = ~at
            if not nz.any():
                return y
            inv = w[nz] / d[nz]
            t = (inv[:, None] * x[nz]).sum(axis=0) / inv.sum()
            r = np.linalg.norm((inv[:, None] * (x[nz] - y)).sum(axis=0))
            eta = w[at].sum()
            if r <= eta:
                return y
            gamma = min(1.0, eta / r)
            y_new = (1 - gamma) * t + gamma * y
        else:
            inv = w / d
            y_new = (inv[:, None] * x).sum(axis=0) / inv.sum()
        if np.linalg.norm(y_new - y) < eps:
            return y_new
        y = y_new
    return y


def medoid(x, weights=None) -> np.ndarray:
    """The input vector with the least weighted total distance to all inputs (ties: lowest
    index). Breakdown point 1/2; the result is always one of the inputs.

    Distances are computed without overflow for any finite input (rows are scaled by the
    largest magnitude, and each difference by its own largest coordinate), so a vector of
    norm 1e300 is just far away, not a NaN that wins the argmin."""
    x, w = _rows(x, weights)
    scale = float(np.abs(x).max())
    xs = x / scale if scale > 1.0 else x
    cost = np.zeros(x.shape[0])
    for i in range(x.shape[0]):
        diff = xs - xs[i]
        big = np.abs(diff).max(axis=1)
        safe = np.where(big > 0, big, 1.0)
        dist = big * np.linalg.norm(diff / safe[:, None], axis=1)
        cost[i] = dist @ w
    return x[int(np.argmin(cost))].copy()


def filtered_mean(x, weights=None, *, threshold: float = 0.5) -> np.ndarray:
    """Drop vectors farther than ``threshold`` (L2) from the geometric median, then take the
    weighted mean of the rest. Breakdown point 1/2 (that of the centre); the result is
    within ``threshold`` of the centre."""
    x, w = _rows(x, weights)
    c = geometric_median(x, w)
    keep = np.linalg.norm(x - c, axis=1) <= threshold
    if not keep.any() or w[keep].sum() <= 0:
        return c
    return weighted_mean(x[keep], w[keep])


def aggregate(x, weights=None, method: str = "mean", **options) -> np.ndarray:
    """Aggregate rows of ``x`` with one of :data:`AGGREGATORS` (options go to the method)."""
    match method:
        case "mean":
            return weighted_mean(x, weights)
        case "trimmed_mean":
            return trimmed_mean(x, weights=weights, **options)
        case "median":
            return coordinate_median(x, weights)
        case "geometric_median":
            return geometric_median(x, weights, **options)
        case "medoid":
            return medoid(x, weights)
        case "filtered":
            return filtered_mean(x, weights, **options)
    raise AveragingError(f"unknown aggregator {method!r}; choose from {AGGREGATORS}")


def nearest_candidate(agreed, candidates) -> int:
    """Index of the candidate embedding with the highest cosine similarity to ``agreed``
    (ties: lowest index). Every node holding the same agreed vector picks the same text."""
    c = np.asarray(candidates, dtype=np.float64)
    a = np.asarray(agreed, dtype=np.float64).reshape(-1)
    if c.ndim != 2 or c.shape[0] == 0 or c.shape[1] != a.shape[0]:
        raise AveragingError("candidates must be (k, dim) with k >= 1 matching the agreed vector")
    cn = np.linalg.norm(c, axis=1)
    an = np.linalg.norm(a)
    sims = (c @ a) / np.where(cn > 0, cn, 1.0) / (an if an > 0 else 1.0)
    return int(np.argmax(sims))


# ------------------------------------------------------------------ whole-graph averaging


def _adjacency(adjacency):
    import scipy.sparse as sp

    a = sp.csr_array(adjacency) if not sp.issparse(adjacency) else sp.csr_array(adjacency)
    if a.shape[0] != a.shape[1]:
        raise AveragingError(f"adjacency must be square, got {a.shape}")
    a = a.astype(np.float64)
    a.setdiag(0)
    a.eliminate_zeros()
    a.data[:] = 1.0  # the pattern only; trust enters through node weights
    return a


def mixing_matrix(adjacency, weights=None, mixing: str = "neighbour_mean"):
    """The row-stochastic matrix ``P`` with ``rbar = P @ R`` (scipy.sparse CSR).

    Rows of isolated nodes (or whose neighbours all weigh 0) are the identity row, so such a
    node keeps its vector.
    """
    import scipy.sparse as sp

    a = _adjacency(adjacency)
    n = a.shape[0]
    w = _weights(weights, n)
    if mixing == "neighbour_mean":
        aw = a @ sp.diags_array(w)
        d = np.asarray(aw.sum(axis=1)).reshape(-1)
        inv = np.where(d > 0, 1.0 / np.where(d > 0, d, 1.0), 0.0)
        p = sp.diags_array(inv) @ aw
    elif mixing == "metropolis":
        deg = np.asarray(a.sum(axis=1)).reshape(-1)
        coo = a.tocoo()
        i, j = coo.row, coo.col
        with np.errstate(divide="ignore", invalid="ignore"):
            vals = np.minimum(1.0 / deg[i], np.where(w[i] > 0, w[j] / (w[i] * deg[j]), 0.0))
        p = sp.csr_array((vals, (i, j)), shape=(n, n))
        d = np.asarray(p.sum(axis=1)).reshape(-1)
        p = p + sp.diags_array(np.where(d > 0, 1.0 - d, 0.0))
        return sp.csr_array(p), (d > 0)
    else:
        raise AveragingError(f"unknown mixing {mixing!r}; choose from {MIXINGS}")
    return sp.csr_array(p), (d > 0)


def consensus_limit(adjacency, vectors, weights=None, mixing: str = "neighbour_mean") -> np.ndarray:
    """The vector plain averaging converges to on a connected graph (see module docstring)."""
    a = _adjacency(adjacency)
    x = np.asarray(vectors, dtype=np.float64)
    w = _weights(weights, a.shape[0])
    if mixing == "neighbour_mean":
        pi = w * np.asarray((a @ w)).reshape(-1)
    elif mixing == "metropolis":
        pi = w.copy()
    else:
        raise AveragingError(f"unknown mixing {mixing!r}")
    return (pi[:, None] * x).sum(axis=0) / pi.sum()


@dataclass(frozen=True)
class AveragingResult:
    vectors: np.ndarray
    """Final vectors, one row per node."""
    rounds: int
    """Rounds used."""
    converged: bool
    """The last round moved every node by less than ``eps``."""
    max_delta: float
    """``max_i ||r_i(t+1) - r_i(t)||`` of the last round."""


def average_graph(
    adjacency,
    vectors,
    *,
    alpha: float = 0.5,
    eps: float = 1e-3,
    rounds_max: int = 1000,
    weights=None,
    mixing: str = "neighbour_mean",
    aggregator: str = "mean",
    fixed=None,
    dtype=np.float64,
    validate: bool = True,
    **aggregator_options,
) -> AveragingResult:
    """Run synchronous averaging on a whole graph.

    The plain aggregator ("mean") is one sparse matrix product per round, so it scales to
    millions of nodes (1e6 nodes x 64 dims in float32 needs about 0.5 GB: the vectors and
    one scratch array). Robust aggregators loop over nodes in Python (fine for thousands).

    Args:
        adjacency: ``(n, n)`` scipy.sparse matrix or dense array; its nonzero pattern
            (diagonal ignored) defines neighbours; make it symmetric for an undirected graph.
        vectors: ``(n, dim)`` initial proposals (L2-normalised unless ``validate=False``).
        alpha: step toward the neighbours' aggregate, in (0, 1] (default 0.5).
        eps: stop when no node moved more than this in a round (L2, default 1e-3).
        rounds_max: bound on rounds (default 1000).
        weights: per-node trust weights (default equal).
        mixing: "neighbour_mean" or "metropolis" (plain mean only; see module docstring).
        aggregator: one of :data:`AGGREGATORS` applied to each node's neighbours' vectors.
        fixed: boolean mask of nodes that never update (stubborn or Byzantine nodes that keep
            sending their initial vector).
        dtype: float64 (default) or float32 (half the memory for huge graphs).
        validate: check the initial vectors (NaN/Inf, unit norm).
    """
    if not (0.0 < alpha <= 1.0):
        raise AveragingError("alpha must be in (0, 1]")
    if not (eps >= 0.0) or rounds_max < 0:
        raise AveragingError("need eps >= 0 and rounds_max >= 0")
    if validate:
        x0 = check_vectors(vectors)
    else:
        x0 = np.asarray(vectors, dtype=np.float64)
    r = np.array(x0, dtype=dtype, copy=True)
    n = r.shape[0]
    fixed_mask = None if fixed is None else np.asarray(fixed, dtype=bool).reshape(-1)
    if fixed_mask is not None and fixed_mask.shape[0] != n:
        raise AveragingError("fixed must have one entry per node")
    if aggregator == "mean":
        p, has_nb = mixing_matrix(adjacency, weights, mixing)
        if p.shape[0] != n:
            raise AveragingError(f"adjacency has {p.shape[0]} nodes, vectors {n}")
        import scipy.sparse as sp

        frozen = ~has_nb if fixed_mask is None else (~has_nb | fixed_mask)
        step = np.where(frozen, 0.0, alpha)
        # one matrix per round: M = (1 - a) I + a P, rows of frozen nodes are the identity
        m = sp.csr_array(sp.diags_array(1.0 - step) + sp.diags_array(step) @ p).astype(dtype)
        rounds, delta_max = 0, math.inf
        while rounds < rounds_max:
            new = m @ r
            r -= new  # r now holds -(r(t+1) - r(t)); only its norms matter
            rounds += 1
            delta_max = float(np.sqrt(np.einsum("ij,ij->i", r, r).max())) if n else 0.0
            r = new
            if delta_max < eps:
                break
        return AveragingResult(r, rounds, delta_max < eps, delta_max)
    if aggregator not in AGGREGATORS:
        raise AveragingError(f"unknown aggregator {aggregator!r}; choose from {AGGREGATORS}")
    a = _adjacency(adjacency)
    if a.shape[0] != n:
        raise AveragingError(f"adjacency has {a.shape[0]} nodes, vectors {n}")
    w = _weights(weights, n)
    indptr, indices = a.indptr, a.indices
    rounds, delta_max = 0, math.inf
    while rounds < rounds_max:
        new = r.copy()
        for i in range(n):
            if fixed_mask is not None and fixed_mask[i]:
                continue
            nb = indices[indptr[i]:indptr[i + 1]]
            if nb.size == 0 or w[nb].sum() <= 0:
                continue
            rbar = aggregate(r[nb], w[nb], aggregator, **aggregator_options)
            new[i] = (1 - alpha) * r[i] + alpha * rbar
        d = np.linalg.norm(new - r, axis=1)
        delta_max = float(d.max()) if n else 0.0
        r = new
        rounds += 1
        if delta_max < eps:
            break
    return AveragingResult(r, rounds, delta_max < eps, delta_max)


# ------------------------------------------------------------------ per-node state machine

NodeId = Hashable


@dataclass(frozen=True)
class VectorMsg:
    """A node's vector for one round. ``settled``: the sender moved less than eps last round.
    ``final``: the sender stopped; treat this vector as its value for all later rounds."""

    sender: NodeId
    round: int
    vector: tuple[float, ...]
    settled: bool = False
    final: bool = False


@dataclass(frozen=True)
class NeighbourVector:
    """Event: a neighbour's :class:`VectorMsg` arrived."""

    msg: VectorMsg


@dataclass(frozen=True)
class RoundTimeout:
    """Event: the caller's deadline for ``round`` passed; go on with the vectors received.

    It is also the *name* of the round's timer: the node emits
    ``SetTimer(RoundTimeout(t), round_timeout_s)`` and the driver hands the name back to
    :meth:`AveragingNode.handle` when the timer fires."""

    round: int


@dataclass(frozen=True)
class Finished:
    """Domain output: the node stopped at ``round`` with ``vector`` (``converged``: by eps).

    The node's transport effects are the project's one vocabulary (:mod:`consensus.effects`):
    ``Broadcast(MEMBERS, VectorMsg)`` to every neighbour, ``SetTimer``/``CancelTimer`` named
    by :class:`RoundTimeout`."""

    round: int
    vector: np.ndarray
    converged: bool


@dataclass(frozen=True)
class AveragingStatistics:
    round: int
    finished: bool
    rejected: int
    missing_neighbours: int
    last_delta: float


class AveragingNode:
    """One node of synchronous-round averaging, as a sans-I/O state machine.

    Round ``t``: the node sends ``r(t)``, collects its neighbours' ``r_j(t)`` (or gives up
    on the missing ones at ``RoundTimeout(t)``, averaging over those it has, like hivemind's
    dropout-tolerant average), then sets ``r(t+1) = (1-alpha) r(t) + alpha * agg(r_j(t))``.
    It stops when it and every live neighbour moved less than ``eps`` in the same round
    (a local test), or at ``rounds_max``. Driven in lockstep with no timeouts, it computes
    exactly what :func:`average_graph` computes.

    Args:
        me: this node's id.
        vector: its initial proposal (L2-normalised).
        neighbours: neighbour id -> trust weight (>= 0).
        alpha, eps, rounds_max, aggregator: as in :func:`average_graph`.
        round_timeout_s: how long to wait for the neighbours' vectors of one round before
            going on with those received (the delay of its ``SetTimer``; default 2.0).
        norm_tolerance: received vectors with norm above ``1 + norm_tolerance``, NaN/Inf or
            the wrong dimension are rejected and counted.
    """

    def __init__(self, me: NodeId, vector, neighbours: Mapping[NodeId, float], *,
                 alpha: float = 0.5, eps: float = 1e-3, rounds_max: int = 100,
                 aggregator: str = "mean", norm_tolerance: float = NORM_TOLERANCE,
                 round_timeout_s: float = 2.0, **aggregator_options) -> None:
        if not (0.0 < alpha <= 1.0):
            raise AveragingError("alpha must be in (0, 1]")
        if aggregator not in AGGREGATORS:
            raise AveragingError(f"unknown aggregator {aggregator!r}")
        if rounds_max < 1:
            raise AveragingError("rounds_max must be >= 1")
        if (isinstance(round_timeout_s, bool) or not isinstance(round_timeout_s, (int, float))
                or not 0 < round_timeout_s < math.inf):
            raise AveragingError(f"round_timeout_s must be a positive finite number, got "
                                 f"{round_timeout_s!r:.40}")
        self.me = me
        self.r = check_vectors(vector, norm_tolerance=norm_tolerance)[0]
        self.dim = self.r.shape[0]
        self.neighbours = dict(neighbours)
        _weights(list(self.neighbours.values()) or [1.0], max(1, len(self.neighbours)))
        self.alpha, self.eps, self.rounds_max = alpha, eps, rounds_max
        self.aggregator, self.options = aggregator, aggregator_options
        self.norm_tolerance = norm_tolerance
        self.round_timeout_s = float(round_timeout_s)
        self.round = 0
        self.finished = False
        self._settled = False
        self._inbox: dict[int, dict[NodeId, VectorMsg]] = {}
        self._final: dict[NodeId, VectorMsg] = {}
        self._rejected = 0
        self._missing = 0
        self._delta = math.inf

    def start(self) -> list:
        """Effects of round 0: send the initial vector and await the neighbours'."""
        if not self.neighbours:
            self.finished = True
            return [Finished(0, self.r.copy(), True)]
        return [Broadcast(MEMBERS, self._msg()), SetTimer(RoundTimeout(0), self.round_timeout_s)]

    def _msg(self, final: bool = False) -> VectorMsg:
        return VectorMsg(self.me, self.round, tuple(float(v) for v in self.r),
                         self._settled, final)

    def handle(self, event) -> list:
        """Apply one event (:class:`NeighbourVector` or :class:`RoundTimeout`)."""
        if self.finished:
            return []
        match event:
            case NeighbourVector(msg=msg):
                if not self._accept(msg):
                    return []
                if msg.final:
                    self._final[msg.sender] = msg
                else:
                    per = self._inbox.setdefault(msg.round, {})
                    per.setdefault(msg.sender, msg)
                if self._complete():
                    return self._advance()
                return []
            case RoundTimeout(round=rnd):
                if rnd != self.round:
                    return []
                got = self._have()
                self._missing += len(self.neighbours) - len(got)
                return self._advance()
        raise AveragingError(f"unknown event {type(event).__name__}")

    def _accept(self, msg: VectorMsg) -> bool:
        if msg.sender not in self.neighbours or not isinstance(msg.round, int):
            self._rejected += 1
            return False
        if msg.round < self.round and not msg.final or msg.round > self.round + 2:
            return False  # stale, or too far ahead to buffer
        try:
            check_vectors(msg.vector, dim=self.dim, unit=False,
                          norm_tolerance=self.norm_tolerance)
        except InvalidVector:
            self._rejected += 1
            return False
        return True

    def _have(self) -> dict[NodeId, VectorMsg]:
        got = dict(self._inbox.get(self.round, {}))
        for s, m in self._final.items():
            got.setdefault(s, m)
        return got

    def _complete(self) -> bool:
        return len(self._have()) >= len(self.neighbours)

    def _advance(self) -> list:
        got = self._have()
        ids = [s for s in self.neighbours if s in got and self.neighbours[s] > 0]
        old = self.r
        if ids:
            x = np.array([got[s].vector for s in ids], dtype=np.float64)
            w = np.array([self.neighbours[s] for s in ids], dtype=np.float64)
            rbar = aggregate(x, w, self.aggregator, **self.options)
            self.r = (1 - self.alpha) * old + self.alpha * rbar
        self._delta = float(np.linalg.norm(self.r - old))
        neighbours_settled = all(s in got and (got[s].settled or got[s].final)
                                 for s in self.neighbours) if self.round > 0 else False
        self._inbox.pop(self.round, None)
        done_timer = CancelTimer(RoundTimeout(self.round))
        self.round += 1
        self._settled = self._delta < self.eps
        if (self._settled and neighbours_settled) or self.round >= self.rounds_max:
            self.finished = True
            logger.info("averaging node %s finished at round %d (delta %.3g)",
                        self.me, self.round, self._delta)
            return [done_timer, Broadcast(MEMBERS, self._msg(final=True)),
                    Finished(self.round, self.r.copy(), self._settled)]
        out = [done_timer, Broadcast(MEMBERS, self._msg()),
               SetTimer(RoundTimeout(self.round), self.round_timeout_s)]
        if self._complete():
            out += self._advance()
        return out

    def statistics(self) -> AveragingStatistics:
        return AveragingStatistics(self.round, self.finished, self._rejected, self._missing,
                                   self._delta)
