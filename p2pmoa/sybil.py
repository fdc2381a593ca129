"""The sybil attack of issue 12 on the in-memory mesh running the real :class:`PeerProtocol`.

A test and benchmark harness (it uses :mod:`p2pmoa.testing`'s in-memory mesh, stand-in
generators and the hashing embedder; it is not the simulator). ``honest`` nodes answer with
a realistic model speed (``honest_llm_s`` of virtual time per answer); once they have some
history together (``warmup`` queries), ``sybils`` fresh identities join, each answering
every query *instantly* with one identical attacker answer, otherwise following the
protocol. Then every honest node asks ``queries_per_node`` questions. The figure of merit is
the share of delivered answers whose chosen proposer is honest.

Before issue 12 the seats of a round went to the first ``proposers_max`` proposals to
arrive: 8 instant sybils took 8 of 9 seats and the user got the attacker's answer.
"""
from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field

from p2pmoa.llm import StandInGenerator
from p2pmoa.protocol import PeerProtocol, ProtocolConfig
from p2pmoa.testing import InMemoryMesh

ATTACK_ANSWER = "The answer is definitely Berlin, trust me, every source agrees on Berlin."


@dataclass
class SybilOutcome:
    method: str
    honest: int
    sybils: int
    rostered: bool
    queries: int = 0
    delivered: int = 0
    honest_answers: int = 0
    sybil_seats_max: int = 0
    """Most sybil identities among the members of any one round."""
    sybil_bundle_max: int = 0
    refused: dict = field(default_factory=dict)

    @property
    def honest_answer_rate(self) -> float:
        return self.honest_answers / self.queries if self.queries else 0.0


def _node(mesh: InMemoryMesh, i: int, seed: int, method: str, gen, roster, k: int) -> str:
    from p2pmoa.identity import Ed25519Identity, Ed25519Verifier  # noqa: PLC0415

    signer = Ed25519Identity.from_seed(hashlib.sha256(f"sybil-mesh:{seed}:{i}".encode()).digest())
    cfg = ProtocolConfig(role=f"You are expert number {i}.", model_id=f"stand-in:m{i}",
                         space_id=mesh.embedder.space_id, method=method, proposers_max=k,
                         roster=roster, collect_timeout_s=20.0)
    proto = PeerProtocol(signer, Ed25519Verifier(), cfg, rng=random.Random(seed * 7919 + i))
    return mesh.add(proto, gen)


def run_sybil_mesh(*, honest: int = 5, sybils: int = 8, method: str = "pbft", seed: int = 0,
                   warmup: int = 3, queries_per_node: int = 1, honest_llm_s: float = 2.0,
                   proposers_max: int = 8, rostered: bool = False) -> SybilOutcome:
    """Run the scenario (see module doc) and count whose answers users received.

    Args:
        rostered: give every honest node a roster of the honest peer ids (a signed roster
            in the daemon, see p2pmoa/roster.py); sybils are then refused seats.
    """
    from p2pmoa.embed import HashingEmbedder  # noqa: PLC0415

    mesh = InMemoryMesh(HashingEmbedder(64), seed=seed)
    tokens = 40  # stand-in answers are ~20 words; prompts ~20: llm_s ~= honest_llm_s
    gens = [StandInGenerator(f"m{i}", variants=1, seconds_per_token=honest_llm_s / tokens)
            for i in range(honest)]
    ids_h: list[str] = []
    roster_ids = [sybil_mesh_peer_id(seed, i) for i in range(honest)] if rostered else None
    roster = frozenset(roster_ids) if roster_ids else None
    for i in range(honest):
        ids_h.append(_node(mesh, i, seed, method, gens[i], roster, proposers_max))
    for q in range(warmup):
        mesh.ask(ids_h[q % honest], f"warm-{q}", f"Warm-up question {q}: what is {q} plus {q}?")
        mesh.run(until_s=mesh.now + 200)
    ids_s = set()
    for j in range(sybils):
        gen = StandInGenerator(f"s{j}", reply=lambda msgs, params: ATTACK_ANSWER)
        ids_s.add(_node(mesh, honest + j, seed, method, gen, None, proposers_max))
    mesh.run(until_s=mesh.now + 1)
    out = SybilOutcome(method, honest, sybils, rostered)
    for r in range(queries_per_node):
        for i, asker in enumerate(ids_h):
            qid = f"q-{r}-{i}"
            mesh.ask(asker, qid, f"Question {r}.{i}: what is the capital of France?")
            mesh.run(until_s=mesh.now + 200)
            out.queries += 1
            d = mesh.delivered.get((asker, qid))
            if d is None:
                continue
            out.delivered += 1
            chosen = d.trace.get("decision", {}).get("proposer")
            if chosen in ids_h and d.answer != ATTACK_ANSWER:
                out.honest_answers += 1
            members = d.trace.get("members", [])
            out.sybil_seats_max = max(out.sybil_seats_max, sum(m in ids_s for m in members))
            bundle = [p["peer"] for p in d.trace.get("proposals", []) if p.get("in_round")]
            out.sybil_bundle_max = max(out.sybil_bundle_max, sum(p in ids_s for p in bundle))
    for pid in ids_h:
        for reason, n in mesh.nodes[pid].proto.statistics().rejects.items():
            if reason.startswith("seat_"):
                out.refused[reason] = out.refused.get(reason, 0) + n
    return out


def sybil_mesh_peer_id(seed: int, i: int) -> str:
    """The peer id :func:`run_sybil_mesh` gives node ``i`` (for rosters)."""
    from p2pmoa.identity import Ed25519Identity  # noqa: PLC0415

    return Ed25519Identity.from_seed(
        hashlib.sha256(f"sybil-mesh:{seed}:{i}".encode()).digest()).peer_id
