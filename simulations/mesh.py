"""A message-level mesh: N production peer protocols on the engine, asked Q questions.

This is the scenario the ``mesh`` and ``cost`` experiments, the benchmark and the tests share:
build a topology, give every node a ``p2pmoa.protocol.PeerProtocol`` (simulator identities:
``InsecureSimSigner``, fast and NOT secure), let :class:`~simulations.agents.SyntheticAgent`
answer for every model and embed for the mesh's one embedding space, optionally make some nodes
Byzantine, inject user queries at chosen nodes and times, and run the engine.

Byzantine behaviours available at message level (see :mod:`simulations.faults`): the
protocol's own fault modes ``silent``, ``garbage``, ``equivocate`` (the node runs the production
code with the fault switch on), the agent-level ``random_answer``, ``colluding_wrong``,
``poison_far``, ``poison_near`` (the node's model lies, its protocol is honest),
``crash_recover`` (engine crashes) and ``sybil`` (the first placed node is an operator that adds
``sybil_count`` identities around itself; all of them answer the same wrong candidate; the
graph returned in the result has the extra nodes).
"""
from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from simulations.agents import SyntheticAgent
from simulations.engine import Engine, EngineStatistics, ServiceModel
from simulations.errors import SimulationError
from simulations.faults import FaultSpec, FaultyAgent, add_sybils, crash_schedule, place
from simulations.machines import PeerMachine
from simulations.network import LinkModel, NetworkConditions, Partition

log = logging.getLogger(__name__)

PROTOCOL_FAULTS = {"silent": "silent", "garbage": "garbage", "equivocating_primary": "equivocate",
                   "equivocate": "equivocate"}
AGENT_FAULTS = ("random_answer", "colluding_wrong", "poison_far", "poison_near")


@dataclass(frozen=True)
class MeshSpec:
    """One message-level run.

    Args:
        queries: user queries, asked at ``origins`` (round robin over random nodes if empty)
            every ``query_interval_s`` virtual seconds.
        method: aggregation method of the queries (pbft, averaging, vote, aggregate).
        proposers: proposals collected per query (``proposers_max``); nodes are sampled by
            the protocol's ``select_ppm`` so that about ``proposers * oversample`` answer.
        eps_node / correlation: the synthetic agents' error model.
        byzantine: behaviour name, fraction and placement (a :class:`FaultSpec`).
        link: link model; partition_heal_s > 0 splits the graph in two halves from 0 until then.
        alpha_s: mean LLM service time per Generate (seconds; exponential), embed_s per Embed.
        horizon_s: virtual seconds after the last query.
    """

    queries: int = 10
    query_interval_s: float = 1.0
    method: str = "averaging"
    proposers: int = 8
    oversample: float = 2.0
    eps_node: float = 0.2
    correlation: float = 0.0
    byzantine: FaultSpec = field(default_factory=FaultSpec)
    link: LinkModel = field(default_factory=LinkModel)
    partition_heal_s: float = 0.0
    alpha_s: float = 0.5
    embed_s: float = 0.01
    horizon_s: float = 120.0
    collect_timeout_s: float = 10.0
    round_timeout_s: float = 10.0
    dim: int = 32
    replay: str | None = None
    """JSONL file of recorded real answers (``p2pmoa sim record``): the nodes answer with
    :class:`~simulations.agents.ReplayAgent` and the queries cycle through its questions;
    there is no ground truth then, so ``correct`` is ``None``."""


@dataclass(frozen=True)
class MeshResult:
    """Per-run outcome: per-query rows and the engine's counters."""

    rows: list
    stats: EngineStatistics
    byzantine: list
    refused: int
    failed: int


def run_mesh(g: nx.Graph, spec: MeshSpec, seed: int) -> MeshResult:
    """Run the production peer protocol on ``g`` (see module doc); deterministic in ``seed``.

    Raises:
        SimulationError: unknown Byzantine behaviour for the message level.
    """
    from p2pmoa.identity import InsecureSimRegistry, InsecureSimSigner, InsecureSimVerifier
    from p2pmoa.protocol import PeerProtocol
    from p2pmoa.settings import ProtocolSettings, protocol_config

    n = g.number_of_nodes()
    rng = random.Random(seed)
    beh = spec.byzantine.behaviour
    byz = place(g, spec.byzantine.fraction, spec.byzantine.placement, rng) if spec.byzantine.fraction else []
    if beh == "sybil" and byz:
        # one operator (the first placed node) runs sybil_count extra identities next to it;
        # all of them answer the same wrong candidate
        g = g.copy()
        sybils = add_sybils(g, byz[0], spec.byzantine.sybil_count, rng)
        byz = sorted([byz[0], *sybils])
        n = g.number_of_nodes()
    if byz and beh not in PROTOCOL_FAULTS and beh not in AGENT_FAULTS and beh not in ("crash_recover", "sybil"):
        raise SimulationError(f"behaviour {beh!r} is not available at message level")
    registry = InsecureSimRegistry()
    signers = [InsecureSimSigner.create(random.Random(f"{seed}|id|{i}"), registry) for i in range(n)]
    ids = [s.peer_id for s in signers]
    if spec.replay:
        from simulations.agents import ReplayAgent

        if spec.method == "aggregate":
            raise SimulationError("a replay agent cannot synthesise new text: use averaging, pbft or vote")
        agent: Any = ReplayAgent.from_file(spec.replay)
    else:
        agent = SyntheticAgent(spec.eps_node, correlation=spec.correlation, dim=spec.dim, seed=seed)
    space = agent.space_id
    if byz and (beh in AGENT_FAULTS or beh == "sybil"):
        if spec.replay:
            raise SimulationError(f"behaviour {beh!r} needs the synthetic agent's candidates, not a replay file")
        agent = FaultyAgent(agent, byz, "colluding_wrong" if beh == "sybil" else beh)
    byz_set = set(byz)
    machines = []
    for i in range(n):
        fault = PROTOCOL_FAULTS.get(beh) if i in byz_set else None
        # the daemon's own configuration path and defaults (p2pmoa/settings.py)
        settings = ProtocolSettings(role=f"You are expert {i}.", method=spec.method,
                                    proposers_max=spec.proposers, proposers_oversample=spec.oversample,
                                    collect_timeout_s=spec.collect_timeout_s,
                                    round_timeout_s=spec.round_timeout_s, fault=fault)
        cfg = protocol_config(settings, model_id=getattr(agent, "model_id", "replay"),
                              space_id=space, mesh_size=n)
        proto = PeerProtocol(signers[i], InsecureSimVerifier(registry), cfg, rng=random.Random(f"{seed}|rng|{i}"))
        machines.append(PeerMachine(proto, [ids[u] for u in sorted(g.neighbors(i))]))
    parts: tuple = ()
    if spec.partition_heal_s > 0:
        parts = (Partition.halves(g, 0.0, spec.partition_heal_s),)
    crashes = crash_schedule(byz, spec.byzantine, rng) if beh == "crash_recover" else ()
    eng = Engine(g, machines, seed=seed, conditions=NetworkConditions(spec.link, parts, crashes),
                 agent=agent, service=ServiceModel(alpha_s=spec.alpha_s, embed_s=spec.embed_s),
                 peer_ids=ids, size_fn=len)
    eng.start()
    honest = [v for v in range(n) if v not in byz_set]
    asked = []
    for q in range(spec.queries):
        origin = honest[rng.randrange(len(honest))]
        qid = f"q{q:05d}"
        prompt = (agent.questions[q % len(agent.questions)] if spec.replay
                  else f"Question {q} (seed {seed}): which candidate is right?")
        eng.inject(0.001 + q * spec.query_interval_s, origin, (qid, prompt, spec.method))
        asked.append((qid, origin, prompt, 0.001 + q * spec.query_interval_s))
    eng.run(until_s=spec.query_interval_s * spec.queries + spec.horizon_s)
    base = agent.inner if isinstance(agent, FaultyAgent) else agent
    delivered = {(node, d.query_id): (t, d) for t, node, d in eng.deliveries}
    rows = []
    for qid, origin, prompt, t0 in asked:
        got = delivered.get((origin, qid))
        correct = None if spec.replay else bool(got and got[1].answer == base.candidate_text(prompt, 0))
        rows.append({"query": qid, "origin": origin, "delivered": got is not None, "correct": correct,
                     "answer": got[1].answer if got else None,
                     "latency_s": (got[0] - t0) if got else float("nan"),
                     "proposals": (got[1].trace.get("n_proposals") if got and isinstance(got[1].trace, dict) else None)})
    return MeshResult(rows=rows, stats=eng.statistics(), byzantine=byz,
                      refused=sum(len(m.refused) for m in machines), failed=sum(len(m.failed) for m in machines))
