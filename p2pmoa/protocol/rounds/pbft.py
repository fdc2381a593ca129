"""The PBFT round: one :class:`consensus.pbft.Replica` per query (``seq_max=1``).

Owns: the replica, PBFT messages that arrived before the candidates were judged, the signed
messages seen per (sender, type, view, seq) (equivocation evidence), the messages this member
sent (re-sent on a timer, lossy links), per-sender inbound counts (flood cap), the round's
signature domain (binds query and round content, so no message replays into another round).

Value of a candidate = ``msgpack([query_id, proposer, sha256(answer)])``; validity = "this
candidate is in the bundle and in my ``valid`` set" (see :mod:`.base`), so a primary proposing
anything else is voted down by a view change.

Handles: :class:`~p2pmoa.messages.PbftWire` (``on_wire``), its timers (``TimerKind.PBFT``,
``TimerKind.PBFT_RESEND``). Emits, through the :class:`~..common.RoundContext`: signed
``PbftWire`` sends to the other members (the replica's ``Broadcast(MEMBERS, m)`` becomes one
send per member, here and nowhere else), timers, equivocation quarantines. Returns
:class:`~.base.Chosen` when the replica decided.

Originator side: :class:`DecisionTally` learns a member's decision once members weighing more
than a third (``consensus.quorum``, weak quorum) report it.
"""
from __future__ import annotations

import hashlib
import logging
from typing import Any, ClassVar

from consensus import pbft
from consensus.effects import MEMBERS
from consensus.quorum import ONE_THIRD, Quorum, Won
from p2pmoa.effects import PeerId
from p2pmoa.identity import public_key_from_peer_id
from p2pmoa.messages import Decision, FrameError, Limits, PbftWire, RoundStart, encode_body, pack, unpack_bounded

from ..common import RoundContext, Timer, TimerKind, digest
from .base import Chosen, MemberRound

log = logging.getLogger(__name__)


class PbftRound(MemberRound):
    method: ClassVar[str] = "pbft"
    # Members rate: between equally supported answers the primary proposes the one its own
    # model rates best (PMI with the question), and with no agreement every stated answer is
    # valid at the backups. With raw-likelihood ratings this lost (36 of 91 against 39 by
    # centrality, stop 17); with PMI ratings, replayed on all 315 graded questions, 139
    # against 133.
    rates: ClassVar[bool] = True
    timer_kinds = (TimerKind.PBFT, TimerKind.PBFT_RESEND)

    def __init__(self, *a, limits: Limits, msgs_per_member_max: int, **kw):
        super().__init__(*a, **kw)
        self.limits = limits
        self.msgs_per_member_max = msgs_per_member_max
        self.replica: pbft.Replica | None = None
        self.pending: list[tuple[PeerId, Any]] = []
        self.slots: dict[tuple, Any] = {}
        self.sent: dict[tuple, Any] = {}
        self.inbound: dict[PeerId, int] = {}
        self.helped: dict[PeerId, int] = {}
        rid = hashlib.sha256(encode_body(self.rs)).digest()[:16]
        self.domain = b"p2pmoa/pbft/v1\x00" + rid

    # --- values

    def value_of(self, idx: int) -> bytes:
        p = self.cands[idx][1]
        return pack([self.rs.query_id, p.proposer, digest(p.answer)])

    def index_of_value(self, value: bytes) -> int | None:
        try:
            obj = unpack_bounded(value, self.limits)
        except FrameError:
            return None
        if not isinstance(obj, list) or len(obj) != 3:
            return None
        q, proposer, dg = obj
        if q != self.rs.query_id:
            return None
        for i, (_, p) in enumerate(self.cands):
            if p.proposer == proposer and digest(p.answer) == dg:
                return i
        return None

    # --- lifecycle

    def on_embedded(self, ctx: RoundContext) -> Chosen | None:
        rs = self.rs
        weights = {pbft.MemberId(p): w for p, w in zip(rs.members, rs.weights)}
        valid = self.valid
        domain = self.domain

        def validity(value: bytes) -> bool:
            i = self.index_of_value(value)
            return i is not None and i in valid

        self.replica = pbft.Replica(
            pbft.MemberId(ctx.me), weights, validity=validity,
            view_timeout_s=rs.view_timeout_s, seq_max=1,
            sign=lambda data: ctx.sign(domain + data),
            verify=lambda sender, data, sig: ctx.verify(sender, domain + data, sig),
            order_seed=domain)
        value = self.value_of(self.rank[0])
        if ctx.fault == "garbage":
            value = pack([rs.query_id, ctx.me, digest(f"garbage {ctx.rng.getrandbits(64)}")])
        chosen = self._run(ctx, pbft.Request(value))
        ctx.set_timer(Timer(TimerKind.PBFT_RESEND, rs.query_id), rs.view_timeout_s / 2)
        pending, self.pending = self.pending, []
        for _sender, inner in pending:
            if chosen is None:
                chosen = self._run(ctx, pbft.Receive(inner))
        return chosen

    def on_wire(self, ctx: RoundContext, sender: PeerId, inner: Any) -> Chosen | None:
        """A member's PBFT message (its envelope signature and sender already checked)."""
        if sender not in self.rs.members:
            ctx.reject("not_member")
            return None
        self.spoke.add(sender)
        n_in = self.inbound.get(sender, 0) + 1
        self.inbound[sender] = n_in
        if n_in > self.msgs_per_member_max:
            ctx.reject("pbft_flood")
            return None
        self._check_twin(ctx, sender, inner)
        if self.decision is not None:
            # after deciding, only help laggards a little (their view changes get our proofs)
            helped = self.helped.get(sender, 0)
            if not isinstance(inner, pbft.ViewChange) or helped >= 8:
                return None
            self.helped[sender] = helped + 1
        if self.replica is None:
            if len(self.pending) < 16 * len(self.rs.members) ** 2:
                self.pending.append((sender, inner))
            else:
                ctx.reject("pbft_backlog")
            return None
        return self._run(ctx, pbft.Receive(inner))

    def on_timer(self, ctx: RoundContext, t: Timer) -> Chosen | None:
        if self.replica is None:
            return None
        if t.kind is TimerKind.PBFT:
            return self._run(ctx, pbft.TimerExpired(t.tag))
        if t.kind is TimerKind.PBFT_RESEND and self.decision is None:
            self._resend(ctx)
        return None

    # --- internals

    def _check_twin(self, ctx: RoundContext, sender: PeerId, inner: Any) -> None:
        """Keep each (sender, type, view, seq)'s message as equivocation evidence."""
        view = getattr(inner, "view", getattr(inner, "new_view", None))
        key = (sender, type(inner).__name__, view, getattr(inner, "seq", None))
        prev = self.slots.get(key)
        if prev is None:
            if len(self.slots) < 64 * len(self.rs.members):
                self.slots[key] = inner
            return
        if prev != inner and isinstance(inner, (pbft.PrePrepare, pbft.Prepare, pbft.Commit)):
            ctx.quarantine(sender, self.rs.query_id, "conflicting PBFT messages",
                           pack(pbft.encode(prev)), pack(pbft.encode(inner)))

    def _run(self, ctx: RoundContext, ev: Any) -> Chosen | None:
        try:
            effects = self.replica.handle(ev)
        except pbft.PbftError as exc:
            ctx.reject("pbft_error")
            log.warning("query %s: pbft rejected input: %s", self.rs.query_id, exc)
            return None
        chosen = None
        qid = self.rs.query_id
        for eff in effects:
            match eff:
                case pbft.Broadcast(topic=topic, msg=msg) if topic == MEMBERS:
                    for peer in self.rs.members:
                        if peer != ctx.me:
                            self._send_msg(ctx, peer, msg)
                case pbft.Send(peer=peer, msg=msg):
                    self._send_msg(ctx, PeerId(peer), msg)
                case pbft.SetTimer(name=name, delay_s=d):
                    ctx.set_timer(Timer(TimerKind.PBFT, qid, str(name)), d)
                case pbft.CancelTimer(name=name):
                    ctx.cancel_timer(Timer(TimerKind.PBFT, qid, str(name)))
                case pbft.Decided(view=view, value=value):
                    idx = self.index_of_value(value)
                    if idx is None:
                        # impossible with an honest quorum: make it loud
                        ctx.count("pbft_decided_unknown_value")
                        log.error("query %s: PBFT decided a value outside the bundle", qid)
                        continue
                    ctx.cancel_timer(Timer(TimerKind.PBFT_RESEND, qid))
                    chosen = Chosen(idx, view)
                case pbft.EquivocationDetected(member=who, first=a, second=b):
                    ctx.quarantine(who, qid, "equivocation seen by PBFT",
                                   pack(pbft.encode(a)), pack(pbft.encode(b)))
                case _:
                    ctx.count("pbft_other_effect")
        return chosen

    def _resend(self, ctx: RoundContext) -> None:
        """Re-send this member's messages of the current view (lossy links: PBFT itself only
        recovers by view change); receivers treat identical PBFT messages idempotently."""
        view = self.replica.view
        for (peer, _kind, v), msg in list(self.sent.items()):
            if v >= view:
                ctx.send(peer, PbftWire(self.rs.query_id, msg))
                ctx.count("pbft_resent")
        ctx.set_timer(Timer(TimerKind.PBFT_RESEND, self.rs.query_id), self.rs.view_timeout_s / 2)

    def _send_msg(self, ctx: RoundContext, peer: PeerId, msg: Any) -> None:
        qid = self.rs.query_id
        view = getattr(msg, "view", getattr(msg, "new_view", 0))
        if len(self.sent) < 64 * len(self.rs.members):
            self.sent[(peer, type(msg).__name__, view)] = msg
        ctx.send(peer, PbftWire(qid, msg))
        if ctx.fault == "equivocate" and isinstance(msg, (pbft.PrePrepare, pbft.Prepare,
                                                           pbft.Commit)):
            fake_value = pack([qid, ctx.me, digest(f"twin {msg.view}")])
            fake = pbft.PrePrepare(msg.view, msg.seq, pbft.digest_of(fake_value), fake_value,
                                   msg.sender) if isinstance(msg, pbft.PrePrepare) else \
                type(msg)(msg.view, msg.seq, pbft.digest_of(fake_value), msg.sender)
            fake = pbft.with_signature(fake, ctx.sign(self.domain + pbft.signing_bytes(fake)))
            ctx.send(peer, PbftWire(qid, fake))


def verify_member(verifier, sender: str, data: bytes, sig: bytes) -> bool:
    """A PBFT signature check by the member's peer id (its Ed25519 public key)."""
    try:
        pk = public_key_from_peer_id(sender)
    except ValueError:
        return False
    return verifier.verify(pk, sig, data)


class DecisionTally:
    """Originator side of PBFT: members report their decision; it is learned once the members
    reporting one digest weigh more than a third (at least one honest member among them)."""

    def __init__(self, rs: RoundStart):
        self._quorum = Quorum(dict(zip(rs.members, rs.weights)), ONE_THIRD)
        self._votes: dict[bytes, dict[PeerId, Decision]] = {}

    def add(self, sender: PeerId, d: Decision) -> int | None:
        """Record ``sender``'s decision; returns the number of reporters once it is learned."""
        votes = self._votes.setdefault(d.digest, {})
        votes[sender] = d
        return len(votes) if self._quorum.vote_result(list(votes)) is Won else None


__all__ = ["DecisionTally", "PbftRound", "verify_member"]
