"""Byzantine behaviours, with a chosen fraction and placement in the graph.

A :class:`FaultSpec` says *what* the Byzantine nodes do and *where* they are:

========================  =====================================================================
behaviour                 what the node does
========================  =====================================================================
``silent``                receives everything, sends nothing (omission); :class:`SilentMachine`
``crash_recover``         honest code, but crashes at a random time and recovers later
                          (:func:`crash_schedule` -> ``network.Crash`` entries for the engine)
``random_answer``         its model answers a uniformly random candidate (:class:`FaultyAgent`)
``colluding_wrong``       all Byzantine nodes answer the same wrong candidate (:class:`FaultyAgent`)
``equivocating_primary``  PBFT split-brain: different values to two halves
                          (:class:`~simulations.machines.SplitBrainPbft`)
``poison_far``            its embedding is placed far from the honest centre
``poison_near``           its embedding is placed "a little" off the honest centre, inside
                          distance filters (Baruch et al. 2019); both via :class:`FaultyAgent`
                          or ``simulations.vector.poison_vectors``
``sybil``                 one operator, many identities: ``sybil_count`` extra nodes attached
                          to the operator's region, all colluding (:func:`add_sybils`)
``garbage``               the peer protocol's own fault mode: garbage proposals, random votes,
                          a PBFT primary proposing a value outside the bundle (message level)
``equivocate``            the peer protocol's fault mode: two different signed proposals and a
                          conflicting twin of every PBFT message (message level)
========================  =====================================================================

Placements: ``random`` (uniform without replacement), ``highest_degree`` (hubs first, the
attacker who bought the best-connected machines) and ``region`` (one connected region of the
graph, grown by BFS from a random node: a compromised site or subnet).

The honest nodes always run the production code; only Byzantine nodes are replaced or have
their model's output changed.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Sequence

import networkx as nx
import numpy as np

from p2pmoa.effects import Embed, Generate
from simulations.errors import FaultSpecError
from simulations.network import Crash, highest_degree, region

BEHAVIOURS = ("silent", "crash_recover", "random_answer", "colluding_wrong", "equivocating_primary",
              "poison_far", "poison_near", "sybil", "garbage", "equivocate")
PLACEMENTS = ("random", "highest_degree", "region")
SYBILS_MAX = 100_000


@dataclass(frozen=True)
class FaultSpec:
    """Which Byzantine behaviour, how many nodes, where.

    Args:
        behaviour: one of :data:`BEHAVIOURS`.
        fraction: share of the nodes that are Byzantine, in [0, 1).
        placement: one of :data:`PLACEMENTS`. Default ``random``.
        crash_after_s / recover_after_s: window for ``crash_recover`` (uniform crash time in
            ``[0, crash_after_s]``, down for ``recover_after_s``). Defaults 5 s / 5 s.
        sybil_count: identities the sybil operator adds. Default 10.
    """

    behaviour: str = "silent"
    fraction: float = 0.0
    placement: str = "random"
    crash_after_s: float = 5.0
    recover_after_s: float = 5.0
    sybil_count: int = 10

    def __post_init__(self) -> None:
        if self.behaviour not in BEHAVIOURS:
            raise FaultSpecError(f"unknown behaviour {self.behaviour!r}; choose one of {', '.join(BEHAVIOURS)}")
        if self.placement not in PLACEMENTS:
            raise FaultSpecError(f"unknown placement {self.placement!r}; choose one of {', '.join(PLACEMENTS)}")
        if not (0.0 <= self.fraction < 1.0):
            raise FaultSpecError(f"Byzantine fraction must be in [0, 1), got {self.fraction}")
        if self.crash_after_s < 0 or self.recover_after_s < 0:
            raise FaultSpecError("crash/recover times must be >= 0")
        if not (0 <= self.sybil_count <= SYBILS_MAX):
            raise FaultSpecError(f"sybil_count must be in [0, {SYBILS_MAX}]")


def place(g: nx.Graph, fraction: float, placement: str, rng: random.Random) -> list[int]:
    """The Byzantine nodes: ``round(fraction * n)`` of them, chosen by ``placement``; sorted.

    Raises:
        FaultSpecError: fraction outside [0, 1) or unknown placement.
    """
    if not (0.0 <= fraction < 1.0):
        raise FaultSpecError(f"Byzantine fraction must be in [0, 1), got {fraction}")
    n = g.number_of_nodes()
    count = int(round(fraction * n))
    match placement:
        case "random":
            chosen = rng.sample(range(n), count)
        case "highest_degree":
            chosen = highest_degree(g, count)
        case "region":
            chosen = region(g, count, rng)
        case _:
            raise FaultSpecError(f"unknown placement {placement!r}; choose one of {', '.join(PLACEMENTS)}")
    return sorted(chosen)


def place_mask(g_or_n, fraction: float, placement: str, gen: np.random.Generator,
               degrees: np.ndarray | None = None, nbrs: np.ndarray | None = None) -> np.ndarray:
    """Vectorised placement for huge graphs (boolean mask of length n).

    ``random`` uses numpy; ``highest_degree`` needs ``degrees`` (ties by node id); ``region``
    needs the ``(n, k)`` neighbour table ``nbrs`` and grows a BFS ball from a random node.
    """
    n = g_or_n if isinstance(g_or_n, int) else g_or_n.number_of_nodes()
    count = int(round(fraction * n))
    mask = np.zeros(n, dtype=bool)
    if count == 0:
        return mask
    match placement:
        case "random":
            mask[gen.choice(n, size=count, replace=False)] = True
        case "highest_degree":
            if degrees is None:
                raise FaultSpecError("highest_degree placement needs degrees")
            order = np.lexsort((np.arange(n), -np.asarray(degrees)))
            mask[order[:count]] = True
        case "region":
            if nbrs is None:
                raise FaultSpecError("region placement needs the neighbour table")
            frontier = np.array([int(gen.integers(n))])
            mask[frontier] = True
            got = 1
            while got < count and frontier.size:
                cand = np.unique(nbrs[frontier].ravel())
                cand = cand[~mask[cand]]
                if cand.size > count - got:
                    cand = cand[: count - got]
                mask[cand] = True
                got += cand.size
                frontier = cand
        case _:
            raise FaultSpecError(f"unknown placement {placement!r}")
    return mask


def crash_schedule(nodes: Sequence[int], spec: FaultSpec, rng: random.Random) -> tuple[Crash, ...]:
    """``Crash`` entries for ``crash_recover`` nodes (crash uniform in [0, crash_after_s])."""
    out = []
    for v in nodes:
        at = rng.uniform(0.0, spec.crash_after_s)
        out.append(Crash(v, at, at + spec.recover_after_s))
    return tuple(out)


def add_sybils(g: nx.Graph, operator: int, count: int, rng: random.Random, *, links: int = 2) -> list[int]:
    """Add ``count`` sybil identities run by ``operator``; returns their node ids (n .. n+count-1).

    Each sybil links to the operator and to ``links - 1`` random nodes of the operator's
    neighbourhood (they sit in one region: one operator, one place in the network). The graph
    is modified in place; ids stay contiguous.

    Raises:
        FaultSpecError: count outside [0, SYBILS_MAX] or an unknown operator node.
    """
    if not (0 <= count <= SYBILS_MAX):
        raise FaultSpecError(f"sybil count must be in [0, {SYBILS_MAX}]")
    if operator not in g:
        raise FaultSpecError(f"sybil operator {operator} is not a node")
    n = g.number_of_nodes()
    hood = sorted(g.neighbors(operator)) or [operator]
    ids = list(range(n, n + count))
    for s in ids:
        g.add_edge(s, operator)
        for u in rng.sample(hood, min(len(hood), max(0, links - 1))):
            g.add_edge(s, u)
    return ids


class FaultyAgent:
    """Wraps an honest agent; Byzantine nodes' model/embedder outputs are replaced.

    ``random_answer``: a uniformly random candidate of the synthetic question;
    ``colluding_wrong``: candidate 1 for every Byzantine node (the same wrong answer);
    ``poison_far``/``poison_near``: the node answers honestly but its embedding is replaced by
    a vector far from (``-`` the candidate-0 direction, times ``scale``) or near the correct
    answer's embedding (correct vector nudged by ``nudge`` towards candidate 1, renormalised).

    Args:
        inner: the honest agent (:class:`~simulations.agents.SyntheticAgent`).
        byzantine: Byzantine node ids.
        behaviour: one of the four answer/embedding behaviours above.
    """

    def __init__(self, inner: Any, byzantine: Sequence[int], behaviour: str, *, scale: float = 1.0,
                 nudge: float = 0.5) -> None:
        if behaviour not in ("random_answer", "colluding_wrong", "poison_far", "poison_near"):
            raise FaultSpecError(f"FaultyAgent cannot play {behaviour!r}")
        self.inner = inner
        self.byz = frozenset(byzantine)
        self.behaviour = behaviour
        self.scale = scale
        self.nudge = nudge
        self.model_id = getattr(inner, "model_id", "stand-in")
        self.space_id = getattr(inner, "space_id", "stand-in")
        self.dim = getattr(inner, "dim", 0)

    def generate(self, node: int, job: Generate, rng: random.Random):
        if node not in self.byz or self.behaviour.startswith("poison"):
            return self.inner.generate(node, job, rng)
        from simulations.agents import _generation, question_of

        q = question_of(job.messages)
        idx = 1 if self.behaviour == "colluding_wrong" else random.Random(f"byz|{node}|{q}").randrange(self.inner.candidates)
        text = self.inner.candidate_text(q, idx)
        return _generation(text=text, prompt_tokens=0, completion_tokens=len(text.split()), llm_s=0.0,
                           model_id=self.inner.model_id)

    def embed(self, node: int, job: Embed, rng: random.Random):
        vecs = self.inner.embed(node, job, rng)
        if node not in self.byz or not self.behaviour.startswith("poison"):
            return vecs
        out = np.array(vecs, dtype=np.float64)
        for i, t in enumerate(job.texts):
            tag = t.split()[-1] if self.inner.parse_index(t) is not None else "text:" + t
            good = self.inner.candidate_vector(tag, 0)
            if self.behaviour == "poison_far":
                out[i] = -self.scale * good
            else:
                v = good + self.nudge * (self.inner.candidate_vector(tag, 1) - good)
                out[i] = v / np.linalg.norm(v)
        return out.astype(np.float32)
