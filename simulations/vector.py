"""Vectorised averaging consensus for very large graphs (numpy, one process).

The message-level engine runs the production per-node machines; at 10**6 nodes that is out of
reach in Python, so this module runs the *same update rule* as ``consensus.averaging`` on the
whole graph at once, cycle-driven like PeerSim's cycle mode:

    r_i(t+1) = (1 - a) * r_i(t) + a * mean_{j in N(i)} r_j(t)        (plain)
    r_i(t+1) = (1 - a) * r_i(t) + a * trim_F({r_j : j in N(i)})       (robust)

where ``trim_F`` is the coordinate-wise mean of the neighbours' values after dropping the ``F``
largest and ``F`` smallest (``consensus.averaging.trimmed_mean`` with ``trim_fraction = F/k``;
for ``F = 1`` computed as ``(sum - max - min)/(k-2)``, no sort). The run stops when ``max_i ||r_i(t+1) - r_i(t)|| < eps`` over honest nodes, or after
``rounds_max`` rounds. Tests check it against ``consensus.averaging`` on small graphs.

Byzantine nodes are *stubborn*: every round they re-send their poisoned vector (they never
update), which is the worst case for plain averaging: the honest nodes are pulled to it.

Memory/speed: regular graphs are stored as an ``(n, k)`` neighbour table and every round is
``k`` ``np.take`` gathers into preallocated float32 buffers (no per-round allocation: first-touch
page faults would otherwise dominate). 10**6 nodes x 64 dims is 256 MB per buffer.
"""
from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from simulations.errors import SimulationError

log = logging.getLogger(__name__)

DIM_MAX = 4096
ROUNDS_MAX_DEFAULT = 1000


@dataclass(frozen=True)
class VectorResult:
    """Outcome of one vectorised run.

    ``rounds``: rounds executed; ``converged``: the eps criterion was met;
    ``honest_mean_distance``: ``||mean of honest final vectors - honest initial mean||``;
    ``spread``: largest distance of an honest node's final vector from the honest final mean;
    ``last_change``: the criterion's value in the last round.
    """

    rounds: int
    converged: bool
    honest_mean_distance: float
    spread: float
    last_change: float


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def neighbour_table(adj) -> np.ndarray:
    """``(n, k)`` neighbour indices of a regular graph given as a scipy sparse adjacency.

    Raises:
        SimulationError: the graph is not regular (use :func:`run_averaging` with ``adj``).
    """
    csr = adj.tocsr()
    deg = np.diff(csr.indptr)
    if deg.size == 0 or deg.min() != deg.max() or deg[0] == 0:
        raise SimulationError("a neighbour table needs a regular graph of degree >= 1")
    return csr.indices.reshape(-1, int(deg[0])).astype(np.intp)


def run_averaging(nbrs: np.ndarray, x0: np.ndarray, *, a: float = 1.0, eps: float = 1e-3,
                  rounds_max: int = ROUNDS_MAX_DEFAULT, byzantine: np.ndarray | None = None,
                  poison: np.ndarray | None = None, trim: int = 0,
                  check_every: int = 1, threads: int | None = None) -> tuple[np.ndarray, VectorResult]:
    """Run averaging consensus on a regular graph (see module doc).

    Args:
        nbrs: ``(n, k)`` neighbour table (:func:`neighbour_table`).
        x0: ``(n, d)`` initial vectors (copied to float32).
        a: step ``a`` in (0, 1]; 1.0 = replace by the neighbour mean (fastest on non-bipartite
            graphs; use < 1 on bipartite ones). Default 1.0.
        eps: stop when the largest honest per-round change is below this (L2). Default 1e-3.
        rounds_max: round limit. Default 1000.
        byzantine: boolean mask ``(n,)`` of stubborn Byzantine nodes, or ``None``.
        poison: ``(d,)`` or ``(n_byz, d)`` vectors the Byzantine nodes send every round.
        trim: ``F`` of the trimmed-mean filter (0 = plain averaging). ``2F`` must be < k.
        check_every: evaluate the stopping criterion every this many rounds (1 = every round).
        threads: threads that process disjoint row blocks (default: all local cores). The
            result does not depend on it (every row is computed the same way).

    Returns:
        ``(x, result)``: final vectors and a :class:`VectorResult`.

    Raises:
        SimulationError: shapes or parameters out of range.
    """
    n, k = nbrs.shape
    if x0.ndim != 2 or x0.shape[0] != n or not (1 <= x0.shape[1] <= DIM_MAX):
        raise SimulationError(f"x0 must be (n={n}, d<={DIM_MAX}), got {x0.shape}")
    if not (0.0 < a <= 1.0):
        raise SimulationError(f"step a must be in (0, 1], got {a}")
    if trim < 0 or 2 * trim >= k:
        raise SimulationError(f"trim F={trim} needs 2F < k = {k}")
    d = x0.shape[1]
    x = np.array(x0, dtype=np.float32, copy=True)
    honest = np.ones(n, dtype=bool) if byzantine is None else ~np.asarray(byzantine, dtype=bool)
    byz_idx = np.flatnonzero(~honest)
    if byz_idx.size:
        if poison is None:
            raise SimulationError("Byzantine nodes need a poison vector")
        x[byz_idx] = np.broadcast_to(np.asarray(poison, dtype=np.float32), (byz_idx.size, d))
    init_mean = x0[honest].astype(np.float64).mean(axis=0)
    new = np.empty_like(x)
    nbrs_t = np.ascontiguousarray(nbrs.T)
    threads = max(1, min(threads or _cores(), n // CHUNK_ROWS or 1))
    bounds = [(i * n // threads, (i + 1) * n // threads) for i in range(threads)]
    wss = [[np.empty((min(n, CHUNK_ROWS), d), dtype=np.float32) for _ in range(k + 2)] for _ in bounds]
    pool = ThreadPoolExecutor(max_workers=threads) if threads > 1 else None
    rounds = 0
    change = float("inf")
    converged = False
    for rounds in range(1, rounds_max + 1):
        check = rounds % check_every == 0 or rounds == rounds_max
        hon = honest if byz_idx.size else None
        if pool is None:
            change = _round(x, new, nbrs_t, trim, np.float32(a), hon, check, wss[0])
        else:  # numpy releases the GIL in take and the ufuncs: blocks of rows run in parallel
            futs = [pool.submit(_round, x, new, nbrs_t, trim, np.float32(a), hon, check, ws, lo, hi)
                    for ws, (lo, hi) in zip(wss, bounds)]
            change = max(f.result() for f in futs)
        x, new = new, x
        if check and change < eps:
            converged = True
            break
    if pool is not None:
        pool.shutdown()
    final_mean = x[honest].astype(np.float64).mean(axis=0)
    diff = x[honest].astype(np.float64) - final_mean
    spread = float(np.sqrt(np.einsum("ij,ij->i", diff, diff).max())) if diff.size else 0.0
    log.info("vectorised averaging: n=%d d=%d rounds=%d converged=%s", n, d, rounds, converged)
    return x, VectorResult(rounds=rounds, converged=converged,
                           honest_mean_distance=float(np.linalg.norm(final_mean - init_mean)),
                           spread=spread, last_change=change)


CHUNK_ROWS = 4096
"""Rows per block in :func:`_round`: a block of gathered neighbour rows stays in the CPU cache
(4096 x 64 float32 = 1 MiB per neighbour), so only the gathers touch main memory."""


def _round(x: np.ndarray, out: np.ndarray, nbrs_t: np.ndarray, trim: int, a: np.float32,
           honest: np.ndarray | None, check: bool, ws: list, lo: int = 0, hi_row: int | None = None) -> float:
    """One synchronous round ``out = (1-a) x + a * agg(neighbours)``, block by block; returns
    the largest honest change (L2) when ``check`` else ``inf``. Byzantine rows are copied.

    ``nbrs_t`` is the transposed neighbour table ``(k, n)`` (contiguous columns); ``ws`` is a
    list of preallocated ``(CHUNK_ROWS, d)`` float32 buffers (at least ``k + 2``). For ``k = 4``
    and ``F = 1`` the middle two of four values are ``max(min(a,b), min(c,d))`` and
    ``min(max(a,b), max(c,d))`` (a sorting network: six elementwise passes, no sort)."""
    k, n = nbrs_t.shape
    end = n if hi_row is None else hi_row
    worst = 0.0
    inv_k = np.float32(1.0 / k)
    for s in range(lo, end, CHUNK_ROWS):
        e = min(end, s + CHUNK_ROWS)
        c = e - s
        g = [w[:c] for w in ws]
        blk = out[s:e]
        if trim == 0:
            np.take(x, nbrs_t[0, s:e], axis=0, out=blk)
            for j in range(1, k):
                np.take(x, nbrs_t[j, s:e], axis=0, out=g[0])
                blk += g[0]
            blk *= inv_k
        else:
            for j in range(k):
                np.take(x, nbrs_t[j, s:e], axis=0, out=g[j])
            if trim == 1 and k == 4:
                p, q, r, t, hi = g[0], g[1], g[2], g[3], g[4]
                np.maximum(p, q, out=hi)
                np.minimum(p, q, out=p)
                np.maximum(r, t, out=q)
                np.minimum(r, t, out=r)
                np.maximum(p, r, out=blk)
                np.minimum(hi, q, out=hi)
                blk += hi
                blk *= np.float32(0.5)
            else:
                stack = np.stack(g[:k], axis=1)
                stack.sort(axis=1)
                np.mean(stack[:, trim:k - trim, :], axis=1, out=blk)
        if a != 1.0:
            blk *= a
            np.multiply(x[s:e], np.float32(1.0) - a, out=g[k])
            blk += g[k]
        if honest is not None:
            h = honest[s:e]
            if not h.all():
                blk[~h] = x[s:e][~h]
        if check:
            diff = g[k + 1]
            np.subtract(blk, x[s:e], out=diff)
            sq = np.einsum("ij,ij->i", diff, diff)
            if honest is not None:
                sq = sq[honest[s:e]]
            if sq.size:
                worst = max(worst, float(sq.max()))
    return float(np.sqrt(worst)) if check else float("inf")


def poison_vectors(mode: str, honest: np.ndarray, gen: np.random.Generator, *, scale: float = 1.0,
                   z: float = 1.0) -> np.ndarray:
    """One poison vector for all Byzantine nodes.

    Args:
        mode: ``far`` -- ``-scale`` times the honest mean direction (far from the honest centre,
            easy to spot by distance); ``near`` -- "a little is enough" (Baruch et al. 2019):
            the honest coordinate-wise mean shifted by ``z`` standard deviations in every
            coordinate, towards the origin, then renormalised: inside any distance filter
            tuned to the honest spread; ``random`` -- a random unit vector. ``far`` has norm
            ``scale`` (default 1: an attacker must pass the daemon's unit-norm check); the
            others have norm 1.
        honest: ``(m, d)`` honest vectors (a sample is enough).
        gen: numpy generator.

    Raises:
        SimulationError: unknown mode.
    """
    mu = honest.astype(np.float64).mean(axis=0)
    match mode:
        case "far":
            nrm = np.linalg.norm(mu)
            direction = mu / nrm if nrm > 0 else np.eye(honest.shape[1])[0]
            return (-scale * direction).astype(np.float32)
        case "near":
            sd = honest.astype(np.float64).std(axis=0)
            v = mu - z * sd * np.sign(mu + 1e-12)
            return (v / np.linalg.norm(v)).astype(np.float32)
        case "random":
            v = gen.standard_normal(honest.shape[1])
            return (v / np.linalg.norm(v)).astype(np.float32)
    raise SimulationError(f"unknown poison mode {mode!r} (far, near, random)")


def degree_groups(adj) -> list[tuple[np.ndarray, np.ndarray]]:
    """Nodes grouped by degree: ``[(nodes (m,), neighbour table (m, deg)), ...]`` for any graph
    given as a scipy sparse adjacency (isolated nodes form a group with an empty table)."""
    csr = adj.tocsr()
    csr.sort_indices()
    deg = np.diff(csr.indptr)
    groups = []
    for d in np.unique(deg):
        nodes = np.flatnonzero(deg == d)
        if d == 0:
            groups.append((nodes, np.zeros((nodes.size, 0), dtype=np.intp)))
            continue
        starts = csr.indptr[nodes]
        table = csr.indices[starts[:, None] + np.arange(d)[None, :]]
        groups.append((nodes, table.astype(np.intp)))
    return groups


def run_averaging_graph(adj, x0: np.ndarray, *, a: float = 0.5, eps: float = 1e-3,
                        rounds_max: int = ROUNDS_MAX_DEFAULT, byzantine: np.ndarray | None = None,
                        poison: np.ndarray | None = None, trim: int = 0) -> tuple[np.ndarray, VectorResult]:
    """:func:`run_averaging` for any graph (irregular degrees), for graphs up to ~10**5 nodes.

    A node of degree ``deg`` trims ``min(trim, (deg - 1) // 2)`` of its neighbours' values at
    each end (it must keep at least one); isolated nodes keep their vector. Same stopping rule.
    """
    n = adj.shape[0]
    if x0.ndim != 2 or x0.shape[0] != n:
        raise SimulationError(f"x0 must have {n} rows, got {x0.shape}")
    if not (0.0 < a <= 1.0):
        raise SimulationError(f"step a must be in (0, 1], got {a}")
    if trim < 0:
        raise SimulationError("trim must be >= 0")
    groups = degree_groups(adj)
    d = x0.shape[1]
    x = np.array(x0, dtype=np.float64, copy=True)
    honest = np.ones(n, dtype=bool) if byzantine is None else ~np.asarray(byzantine, dtype=bool)
    byz_idx = np.flatnonzero(~honest)
    if byz_idx.size:
        if poison is None:
            raise SimulationError("Byzantine nodes need a poison vector")
        x[byz_idx] = np.broadcast_to(np.asarray(poison, dtype=np.float64), (byz_idx.size, d))
    init_mean = np.asarray(x0, dtype=np.float64)[honest].mean(axis=0)
    rounds = 0
    change = float("inf")
    converged = False
    new = np.empty_like(x)
    for rounds in range(1, rounds_max + 1):
        for nodes, table in groups:
            deg = table.shape[1]
            if deg == 0:
                new[nodes] = x[nodes]
                continue
            if trim == 0:
                agg = x[table].mean(axis=1)
            else:
                f = min(trim, (deg - 1) // 2)
                vals = x[table]
                vals.sort(axis=1)
                agg = vals[:, f:deg - f, :].mean(axis=1)
            new[nodes] = (1.0 - a) * x[nodes] + a * agg
        if byz_idx.size:
            new[byz_idx] = x[byz_idx]
        diff = new - x
        sq = np.einsum("ij,ij->i", diff, diff)
        if byz_idx.size:
            sq[byz_idx] = 0.0
        change = float(np.sqrt(sq.max()))
        x, new = new, x
        if change < eps:
            converged = True
            break
    final_mean = x[honest].mean(axis=0)
    dev = x[honest] - final_mean
    spread = float(np.sqrt(np.einsum("ij,ij->i", dev, dev).max())) if dev.size else 0.0
    return x, VectorResult(rounds=rounds, converged=converged,
                           honest_mean_distance=float(np.linalg.norm(final_mean - init_mean)),
                           spread=spread, last_change=change)
