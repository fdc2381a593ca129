"""Adapters that let the engine drive the production state machines.

The engine speaks :mod:`simulations.engine` events and :mod:`p2pmoa.effects` effects; each
production machine has its own event and effect types. An adapter translates in both
directions and adds nothing else, so that what runs is the production code:

* :class:`PbftMachine` -- one ``consensus.pbft.Replica`` per node (a one-shot PBFT instance
  over a fixed membership, as the daemon runs per query). ``Broadcast`` becomes one direct
  ``Send`` per other member (PBFT's all-to-all, O(N**2) messages), timers map one to one,
  ``Decided`` becomes ``Deliver``. The adapter checks that a message's ``sender`` is the peer
  it came from (the envelope authentication the daemon does with signatures).
* :class:`SplitBrainPbft` -- a Byzantine member (see :mod:`simulations.faults`).
* :class:`SilentMachine` -- a node that never says anything.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import msgpack

from p2pmoa.effects import Broadcast, CancelTimer, Deliver, PeerId, QueryId, Send, SetTimer
from simulations.engine import External, Received, Recovered, SimEvent, Started, TimerFired

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


class PbftMachine:
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
        self.replica = pbft.Replica(pbft.MemberId(me), dict(weights), **kw,
                                    **SIM_AUTH.hooks(me))
        self.me = me
        self.others = [m for m in sorted(weights) if m != me]
        self.decisions: list[PbftDecision] = []
        self.equivocations = 0
        self.forged_dropped = 0

    def handle(self, event: SimEvent) -> list:
        pbft = self._pbft
        match event:
            case Received(src=src, msg=msg):
                if getattr(msg, "sender", None) != src:
                    self.forged_dropped += 1
                    return []
                out = self.replica.handle(pbft.Receive(msg))
            case TimerFired(name=name):
                out = self.replica.handle(pbft.TimerExpired(name))
            case External(payload=value):
                out = self.replica.handle(pbft.Request(value))
            case Started() | Recovered():
                return []
            case _:
                return []
        return self._effects(event.now, out)

    def _effects(self, now: float, out: list) -> list:
        pbft = self._pbft
        effects: list = []
        for e in out:
            match e:
                case Broadcast(msg=m):  # to the group: one direct send per other member
                    effects.extend(Send(PeerId(p), m) for p in self.others)
                case Send() | SetTimer() | CancelTimer():  # the same vocabulary: pass through
                    effects.append(e)
                case pbft.Decided(seq=seq, view=view, value=value):
                    self.decisions.append(PbftDecision(self.me, seq, view, value, now))
                    effects.append(Deliver(QueryId(f"seq{seq}"), value.decode("utf-8", "replace"),
                                           {"view": view, "member": self.me}))
                case pbft.EquivocationDetected():
                    self.equivocations += 1
                case _:
                    pass
        return effects


class SilentMachine:
    """A Byzantine node that receives everything and sends nothing (omission fault)."""

    decisions: list = []

    def handle(self, event: SimEvent) -> list:
        return []


class SplitBrainPbft:
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

    def handle(self, event: SimEvent) -> list:
        pbft = self._pbft
        match event:
            case Received(src=src, msg=msg):
                if isinstance(msg, tuple):
                    world, inner = msg
                    if world not in self.replicas:
                        return []
                    return self._effects(world, self.replicas[world].handle(pbft.Receive(inner)))
                world = self.world_of.get(src)
                if world is None:
                    return []
                return self._effects(world, self.replicas[world].handle(pbft.Receive(msg)))
            case TimerFired(name=name):
                world, _, inner = name.partition(":")
                if world not in self.replicas:
                    return []
                return self._effects(world, self.replicas[world].handle(pbft.TimerExpired(inner)))
            case External():
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


class PeerMachine:
    """Drives one production ``p2pmoa.protocol.PeerProtocol`` (the daemon's state machine).

    Event mapping: ``Started`` -> ``Started`` then ``PeerUp`` for every graph neighbour (the
    peers a libp2p host would be connected to); ``Received`` -> ``FrameIn`` (the engine's ``src``
    is the transport-authenticated peer); ``TimerFired``/``GenerateDone``/``EmbedDone`` map one
    to one; ``External((query_id, prompt, method))`` -> ``UserQuery``; ``Recovered`` ->
    ``Started`` (the protocol resumes its buffered queries). The protocol's extra effects
    ``Accepted``/``Refused``/``Failed`` are recorded here; every other effect goes to the engine.

    Args:
        proto: the peer protocol instance.
        neighbours: PeerIds of the graph neighbours.
    """

    def __init__(self, proto: Any, neighbours: Sequence[str]) -> None:
        from p2pmoa import protocol as P

        self.P = P
        self.proto = proto
        self.neighbours = list(neighbours)
        self.accepted: list[str] = []
        self.refused: list[Any] = []
        self.failed: list[Any] = []

    def handle(self, event: SimEvent) -> list:
        P = self.P
        now = event.now
        match event:
            case Received(src=src, msg=data, topic=topic):
                out = self.proto.handle(P.FrameIn(PeerId(src), topic, data, now=now))
            case TimerFired(name=name):
                out = self.proto.handle(P.TimerFired(name, now=now))
            case External(payload=(qid, prompt, method)):
                out = self.proto.handle(P.UserQuery(QueryId(qid), prompt, method, now=now))
            case Started():
                out = list(self.proto.handle(P.Started(now=now)))
                for p in self.neighbours:
                    out.extend(self.proto.handle(P.PeerUp(PeerId(p), now=now)))
            case Recovered():
                out = self.proto.handle(P.Started(now=now))
            case _:
                from simulations.engine import EmbedDone, GenerateDone

                if isinstance(event, GenerateDone):
                    out = self.proto.handle(P.GenerateDone(event.job_id, event.generation, now=now))
                elif isinstance(event, EmbedDone):
                    out = self.proto.handle(P.EmbedDone(event.job_id, event.vectors, now=now))
                else:
                    return []
        effects = []
        for e in out:
            if isinstance(e, P.Accepted):
                self.accepted.append(e.query_id)
            elif isinstance(e, P.Refused):
                self.refused.append(e)
            elif isinstance(e, P.Failed):
                self.failed.append(e)
            else:
                effects.append(e)
        return effects
