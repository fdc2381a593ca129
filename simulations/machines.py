"""Adapters that let the engine drive the production state machines.

An adapter (:class:`simulations.engine.NodeAdapter`) holds one production machine and turns
what happens to its node into that machine's OWN event types; the machine's transport effects
go straight to the driver, so what runs is the production code:

* :class:`PeerMachine` -- a ``p2pmoa.protocol.PeerProtocol`` (the daemon's state machine):
  ``FrameIn``, ``TimerFired``, ``GenerateDone``, ``EmbedDone``, ``UserQuery``, ``Started``,
  ``PeerUp``.
* :class:`PbftMachine` -- one ``consensus.pbft.Replica`` per node (a one-shot PBFT instance
  over a fixed membership, as the daemon runs per query): ``Receive``, ``TimerExpired``,
  ``Request``. Its ``Broadcast(MEMBERS)`` is one direct ``Send`` per other member (PBFT's
  all-to-all, O(N**2) messages; the driver does that), ``Decided`` becomes ``Deliver``. The
  adapter checks that a message's ``sender`` is the peer it came from (the envelope
  authentication the daemon does with signatures).
* :class:`SplitBrainPbft` -- a Byzantine member (see :mod:`simulations.faults`).
* :class:`SilentMachine` -- a node that never says anything.
* :class:`ProtocolEvents` -- the peer protocol's event types for simulator-only machines
  (the queueing model of ``experiments/queue.py``).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

import msgpack

from p2pmoa.effects import CancelTimer, Deliver, PeerId, QueryId, Send, SetTimer
from p2pmoa.testing import PeerAdapter
from simulations.engine import NodeAdapter
from simulations.errors import SimulationError

log = logging.getLogger(__name__)

# The daemon signs PBFT messages with Ed25519; the simulator's members sign with a keyed hash
# standing in for it (a member can sign only as itself: no adapter here forges).
from consensus.testing import KeyedHashAuthStandIn  # noqa: E402

SIM_AUTH = KeyedHashAuthStandIn("p2pmoa-sim")


def pbft_size(msg: Any) -> int:
    """Wire bytes of a PBFT message: msgpack of ``consensus.pbft.encode`` (the daemon's body)."""
    from consensus import pbft

    if isinstance(msg, tuple):  # a Byzantine side channel ("world", msg)
        msg = msg[1]
    return len(msgpack.packb(pbft.encode(msg), use_bin_type=True))


@dataclass(frozen=True)
class PbftDecision:
    """What one member decided: ``value`` at ``seq`` in ``view``, at virtual time ``at_s``."""

    member: str
    seq: int
    view: int
    value: bytes
    at_s: float


class PbftMachine(NodeAdapter):
    """An honest PBFT member running ``consensus.pbft.Replica`` (see module doc).

    Args:
        me: this member's id (its ``PeerId`` in the engine).
        weights: every member's integer weight (identical at all honest members).
        view_timeout_s: passed to the replica (seconds).
        validity: the replica's validity predicate.
        seq_max: passed to the replica (1 = the daemon's one-shot round).
    """

    def __init__(self, me: str, weights: Mapping[str, int], *, view_timeout_s: float = 1.0,
                 validity: Callable[[bytes], bool] | None = None, seq_max: int | None = 1) -> None:
        from consensus import pbft

        self._pbft = pbft
        kw: dict[str, Any] = {"view_timeout_s": view_timeout_s, "seq_max": seq_max}
        if validity is not None:
            kw["validity"] = validity
        self.replica = self.machine = pbft.Replica(pbft.MemberId(me), dict(weights), **kw,
                                                   **SIM_AUTH.hooks(me))
        self.me = me
        self.members = self.others = [m for m in sorted(weights) if m != me]
        self.decisions: list[PbftDecision] = []
        self.equivocations = 0
        self.forged_dropped = 0

    def on_message(self, src: Any, msg: Any, topic: str | None, now: float) -> Any:
        if getattr(msg, "sender", None) != src:
            self.forged_dropped += 1
            return None
        return self._pbft.Receive(msg)

    def on_timer(self, name: Any, now: float) -> Any:
        return self._pbft.TimerExpired(name)

    def on_input(self, payload: Any, now: float) -> Iterable:
        return (self._pbft.Request(payload),)

    def on_output(self, effect: Any, now: float) -> Iterable | None:
        pbft = self._pbft
        match effect:
            case pbft.Decided(seq=seq, view=view, value=value):
                self.decisions.append(PbftDecision(self.me, seq, view, value, now))
                return (Deliver(QueryId(f"seq{seq}"), value.decode("utf-8", "replace"),
                                {"view": view, "member": self.me}),)
            case pbft.EquivocationDetected():
                self.equivocations += 1
        return None


class SilentMachine(NodeAdapter):
    """A Byzantine node that receives everything and sends nothing (omission fault)."""

    decisions: list = []

    @property
    def machine(self) -> "SilentMachine":
        return self

    def handle(self, event: Any) -> list:
        return []


class SplitBrainPbft(NodeAdapter):
    """A Byzantine PBFT member that equivocates: the strongest attack on PBFT safety.

    It runs two honest replicas, world ``A`` and world ``B``. Honest members are split into two
    fixed halves; messages from half A feed replica A and replica A's output goes only to half
    A (and to the other Byzantine members' A replicas, over a side channel tagged ``"A"``);
    likewise for B. As primary it proposes ``value_a`` in world A and ``value_b`` in world B,
    and as a backup it prepares and commits whatever each world shows it. With Byzantine weight
    below ``W/3`` neither world alone reaches a quorum with conflicting values, so PBFT stays
    safe; at or above ``W/3`` two honest halves can decide differently. It never forges another
    member's message (signatures would prevent that in the daemon).

    Args:
        me: its member id.
        weights: the membership and weights.
        half_a: honest members of world A (the rest of the honest members form world B).
        byzantine: every Byzantine member id (including ``me``).
        value_a, value_b: what it proposes in each world (as primary).
        view_timeout_s: passed to both replicas.
    """

    def __init__(self, me: str, weights: Mapping[str, int], *, half_a: Sequence[str],
                 byzantine: Sequence[str], value_a: bytes, value_b: bytes,
                 view_timeout_s: float = 1.0) -> None:
        from consensus import pbft

        self._pbft = pbft
        self.me = me
        self.byz = sorted(set(byzantine) - {me})
        self.half = {"A": sorted(half_a),
                     "B": sorted(m for m in weights if m not in set(half_a) and m not in set(byzantine))}
        self.value = {"A": value_a, "B": value_b}
        self.replicas = {w: pbft.Replica(pbft.MemberId(me), dict(weights), view_timeout_s=view_timeout_s,
                                         seq_max=1, **SIM_AUTH.hooks(me)) for w in ("A", "B")}
        self.world_of = {m: w for w, ms in self.half.items() for m in ms}
        self.decisions: list = []

    @property
    def machine(self) -> "SplitBrainPbft":
        return self

    def on_message(self, src: Any, msg: Any, topic: str | None, now: float) -> Any:
        return self._pbft.Receive(msg)

    def on_timer(self, name: Any, now: float) -> Any:
        return self._pbft.TimerExpired(name)

    def on_input(self, payload: Any, now: float) -> Iterable:
        return (self._pbft.Request(payload),)

    def handle(self, event: Any) -> list:
        """PBFT's own events, routed to world A or B (the attack); returns direct sends."""
        pbft = self._pbft
        match event:
            case pbft.Receive(msg=msg):
                if isinstance(msg, tuple):  # the side channel of the other Byzantine members
                    world, inner = msg
                    if world not in self.replicas:
                        return []
                    return self._effects(world, self.replicas[world].handle(pbft.Receive(inner)))
                # members sign as themselves (no adapter forges), so sender is the peer
                world = self.world_of.get(getattr(msg, "sender", None))
                if world is None:
                    return []
                return self._effects(world, self.replicas[world].handle(event))
            case pbft.TimerExpired(name=name):
                world, _, inner = name.partition(":")
                if world not in self.replicas:
                    return []
                return self._effects(world, self.replicas[world].handle(pbft.TimerExpired(inner)))
            case pbft.Request():
                out: list = []
                for w in ("A", "B"):
                    out.extend(self._effects(w, self.replicas[w].handle(pbft.Request(self.value[w]))))
                return out
        return []

    def _effects(self, world: str, out: list) -> list:
        pbft = self._pbft
        effects: list = []
        for e in out:
            match e:
                case pbft.Broadcast(msg=m):
                    effects.extend(Send(PeerId(p), m) for p in self.half[world])
                    effects.extend(Send(PeerId(p), (world, m)) for p in self.byz)
                case pbft.Send(peer=p, msg=m):
                    if p in self.byz:
                        effects.append(Send(PeerId(p), (world, m)))
                    elif self.world_of.get(p) == world:
                        effects.append(Send(PeerId(p), m))
                case pbft.SetTimer(name=name, delay_s=d):
                    effects.append(SetTimer(f"{world}:{name}", d))
                case pbft.CancelTimer(name=name):
                    effects.append(CancelTimer(f"{world}:{name}"))
                case _:
                    pass
        return effects


class ProtocolEvents(PeerAdapter, NodeAdapter):
    """Hands a node the peer protocol's own event types (``p2pmoa.protocol``): ``FrameIn``,
    ``TimerFired`` (as :class:`p2pmoa.testing.PeerAdapter`, the tests' mesh, does),
    ``GenerateDone``, ``EmbedDone``; ``UserQuery`` for an injected
    ``(query_id, prompt, method)``; ``Started`` on start and on recovery.

    The generation handed over is the agent's; ``service_s`` (the seconds the job held the
    node's LLM server) is dropped here, as the peer protocol reads its own ``llm_s``.
    """

    def __init__(self) -> None:
        from p2pmoa import protocol as P

        self.P = P

    def on_input(self, payload: Any, now: float) -> Iterable:
        qid, prompt, method = payload
        return (self.P.UserQuery(QueryId(qid), prompt, method, now=now),)

    def on_start(self, now: float) -> Iterable:
        return (self.P.Started(now=now),)

    def on_recover(self, now: float) -> Iterable:
        return (self.P.Started(now=now),)

    def on_generate_done(self, job_id: str, generation: Any, service_s: float, now: float) -> Any:
        return self.P.GenerateDone(job_id, generation, now=now)

    def on_embed_done(self, job_id: str, vectors: Any, now: float) -> Any:
        return self.P.EmbedDone(job_id, vectors, now=now)


class PeerMachine(ProtocolEvents):
    """Drives one production ``p2pmoa.protocol.PeerProtocol`` (the daemon's state machine).

    Events as :class:`ProtocolEvents`; on start the protocol also gets ``PeerUp`` for every
    graph neighbour (the peers a libp2p host would be connected to); on recovery only
    ``Started`` (the protocol resumes its buffered queries). ``FrameIn.peer`` is the
    transport-authenticated sender (for gossip, the publisher). The protocol's extra outputs
    ``Accepted``/``Refused``/``Failed`` are recorded here.

    Args:
        proto: the peer protocol instance.
        neighbours: PeerIds of the graph neighbours.
    """

    def __init__(self, proto: Any, neighbours: Sequence[str]) -> None:
        super().__init__()
        self.proto = self.machine = proto
        self.neighbours = list(neighbours)
        self.accepted: list[str] = []
        self.refused: list[Any] = []
        self.failed: list[Any] = []

    def on_start(self, now: float) -> Iterable:
        P = self.P
        return [P.Started(now=now), *(P.PeerUp(PeerId(p), now=now) for p in self.neighbours)]

    def on_output(self, effect: Any, now: float) -> Iterable | None:
        P = self.P
        if isinstance(effect, P.Accepted):
            self.accepted.append(effect.query_id)
        elif isinstance(effect, P.Refused):
            self.refused.append(effect)
        elif isinstance(effect, P.Failed):
            self.failed.append(effect)
        else:
            raise SimulationError(f"the peer protocol returned an unknown effect {effect!r}")
        return None
