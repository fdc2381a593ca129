"""The PBFT replica: one member's state machine, ``handle(event) -> list[effect]``.

What it owns (and nothing else): the current view and whether it is active; the requests
waiting to be ordered (``_pending``) and, as primary, the next sequence number to assign and
the digests it proposed in this view; the seqs in flight that drive the view timer; the
installed new-view; the equivocations already reported; counters. It decides *when* things
happen -- accept, prepare, commit, decide, checkpoint, change view -- and emits the effects.

What it delegates (one module each, none of which emits effects on its own):
:class:`~consensus.pbft.group.Group` -- membership, weights, quorum tests
(:class:`consensus.quorum.Quorum`) and the primary order; :mod:`~consensus.pbft.certs` --
every certificate check (pure functions); :class:`~consensus.pbft.log.Log` -- slots, values,
decisions, execution, checkpoints, watermarks; :mod:`~consensus.pbft.views` -- view-change
votes, the future-view buffer, the view timer; :class:`~consensus.pbft.catchup.Catchup` --
answers to members that are behind; :mod:`~consensus.pbft.codec` -- signing. The protocol
itself is described in :mod:`consensus.pbft`.

Reading order: :meth:`Replica.handle` -> ``_receive`` (authentication and dispatch) ->
normal case (``_on_pre_prepare``, ``_on_prepare``, ``_check_prepared``, ``_on_commit``,
``_decide``) -> checkpoints (``_on_checkpoint``, ``_make_stable``) -> view change
(``_start_view_change``, ``_on_view_change``, ``_maybe_new_view``, ``_on_new_view``) ->
catch-up (``_on_commit_proof``) -> the view timer (``_on_timeout``, ``_timer_wanted``).
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Callable, Mapping, Optional

from ..effects import MEMBERS, Broadcast
from . import certs
from .codec import Auth
from .catchup import Catchup
from .config import Counters, ReplicaStatistics, always_valid, check_options
from .group import Group
from .log import Log, Slot
from .messages import (
    DIGEST_BYTES, VALUE_BYTES_MAX, Checkpoint, Commit, CommitProof, Decided, Effect,
    EquivocationDetected, Event, MemberId, NewView, PbftError, PrePrepare, Prepare, Receive,
    Request, StateTransferNeeded, TimerExpired, ViewChange, carries_others, digest_of,
)
from .views import FutureBuffer, ViewChangeVotes, ViewTimer

logger = logging.getLogger("consensus.pbft")


class Replica:
    """One PBFT member. Feed it events with :meth:`handle`; execute the effects it returns.

    Args:
        me: this member's id (must be a key of ``weights``).
        weights: every member's integer weight (>= 0, total > 0), identical at every member.
        validity: predicate a backup applies to a proposed value; a primary proposing a value
            that fails it is replaced. Default: accept everything.
        view_timeout_s: how long a backup waits for a pending request to be decided before it
            suspects the primary (seconds, default 2.0); doubles per fruitless view change.
        checkpoint_interval: sequence numbers between checkpoints (default 16).
        watermark_window: how far above the stable checkpoint a sequence number may be
            (default 64; at least ``checkpoint_interval``).
        seq_max: highest sequence number this replica orders (``None``: unbounded; the daemon
            passes 1 for its one-shot round).
        sign: ``sign(signing_bytes(msg)) -> signature`` for messages this replica creates.
        verify: ``verify(sender, signing_bytes(msg), signature) -> bool`` for every received
            message, nested ones included.
        pending_max: most remembered undecided requests (default 4096; extra are dropped);
            also the most decided values kept to help laggards catch up (commit proofs).
        buffer_max: most messages for views not yet entered kept for later (default 4096);
            one member may hold at most ``buffer_max // N`` (at least 1) of them, so a flood
            from one member cannot push out the honest members' new-view messages.
        value_bytes_max: largest value accepted (bytes, default 1 MiB).
        unauthenticated: allow building without ``sign``/``verify`` (default False); such a
            replica refuses messages carrying other members' messages (see package doc).
        order_seed: bytes that fix the primary order as ``sha256(order_seed || member)``
            (default None: sorted member ids).

    Raises:
        PbftConfigError: on any impossible or wrongly typed argument.
    """

    def __init__(
        self,
        me: MemberId,
        weights: Mapping[MemberId, int],
        *,
        validity: Callable[[bytes], bool] = always_valid,
        view_timeout_s: float = 2.0,
        checkpoint_interval: int = 16,
        watermark_window: int = 64,
        seq_max: Optional[int] = None,
        sign: Optional[Callable[[bytes], bytes]] = None,
        verify: Optional[Callable[[MemberId, bytes, bytes], bool]] = None,
        pending_max: int = 4096,
        buffer_max: int = 4096,
        value_bytes_max: int = VALUE_BYTES_MAX,
        unauthenticated: bool = False,
        order_seed: Optional[bytes] = None,
    ) -> None:
        self.group = group = Group(weights, checkpoint_interval=checkpoint_interval,
                                   watermark_window=watermark_window,
                                   value_bytes_max=value_bytes_max, order_seed=order_seed)
        check_options(me, group, validity=validity, view_timeout_s=view_timeout_s,
                      seq_max=seq_max, sign=sign, verify=verify, pending_max=pending_max,
                      buffer_max=buffer_max, unauthenticated=unauthenticated)
        self.me = MemberId(me)
        self.weights = group.weights
        self.members = group.members
        self.total_weight = group.total_weight
        self.primary_order = group.order
        self.unauthenticated = bool(unauthenticated)
        self.validity = validity
        self.view_timeout_s = float(view_timeout_s)
        self.checkpoint_interval = checkpoint_interval
        self.watermark_window = watermark_window
        self.seq_max = seq_max
        self._verify = verify
        auth = Auth(sign, verify)
        self._signed, self._authentic = auth.signed, auth.authentic  # sign ours, check theirs
        self._check_auth = certs.always_authentic if verify is None else auth.authentic
        self.pending_max = pending_max
        self.buffer_max = buffer_max
        self.value_bytes_max = value_bytes_max
        self._quorum = group.quorum  # the one quorum test (consensus.quorum)
        self.log = Log(group, seq_max=seq_max, pending_max=pending_max)

        self.view = 0
        self.active = True
        self._pending: OrderedDict[bytes, bytes] = OrderedDict()
        self._assigned: set[bytes] = set()  # digests proposed in this view (primary)
        self._next_seq = 1
        self._inflight: set[int] = set()  # seqs with an accepted pre-prepare, undecided
        self._votes = ViewChangeVotes(group)
        self._new_view: Optional[NewView] = None
        self._catchup = Catchup(self.me, self.log, self._votes, self._signed)
        self._buffer = FutureBuffer(len(group.members), buffer_max)
        self._reported: set[tuple[str, MemberId, int, int]] = set()
        self.timer = ViewTimer(self.me, self.view_timeout_s)
        self._out: list[Effect] = []
        self.counts = Counters()

    # ---------------------------------------------------------------- group and log views

    def is_quorum(self, weight: int) -> bool:
        """True when ``weight`` is strictly more than two thirds of the total weight."""
        return self._quorum.reached(weight)

    def is_weak(self, weight: int) -> bool:
        """True when ``weight`` is strictly more than one third (contains an honest member)."""
        return self.group.weak.reached(weight)

    def primary(self, view: int) -> MemberId:
        """The primary of ``view``: :attr:`primary_order` round robin (weight-0 members are
        never primary)."""
        return self.primary_order[view % len(self.primary_order)]

    @property
    def low(self) -> int:
        """The stable checkpoint (low watermark)."""
        return self.log.low

    @property
    def high(self) -> int:
        """The high watermark: highest seq this replica accepts now."""
        return self.log.high

    @property
    def last_executed(self) -> int:
        return self.log.last_executed

    @property
    def state_digest(self) -> bytes:
        """Chain of the executed digests (what checkpoints agree on)."""
        return self.log.state_digest

    # ---------------------------------------------------------------- public API

    def handle(self, event: Event) -> list[Effect]:
        """Apply one event and return the effects the caller must execute, in order."""
        self._out = out = []
        if type(event) is Receive or isinstance(event, Receive):  # hot path: type() first
            self.counts.received += 1
            try:
                self._receive(event.msg)
            except (TypeError, AttributeError, ValueError) as exc:
                # a hand-built message with fields of the wrong type (decode() never
                # produces one): ignore and count it like any other invalid message
                self.counts.invalid += 1
                logger.info("%s: ignored malformed %s: %s", self.me,
                            type(event.msg).__name__, exc)
        elif isinstance(event, Request):
            self._on_request(event.value)
        elif isinstance(event, TimerExpired):
            kind = self.timer.fired(event.name)
            if kind is not None:
                self._on_timeout(kind)
        else:
            raise PbftError(f"unknown event {type(event).__name__}")
        # fast path: nothing to change when no work is pending and no timer runs
        if self.timer.name is not None or self._pending or self._inflight or not self.active:
            self.timer.want(self._timer_wanted(), self.view, out)
        self._out = []
        return out

    def statistics(self) -> ReplicaStatistics:
        return self.counts.snapshot(self.me, self.view, self.active, self.primary(self.view),
                                    self.log, len(self._pending), self._buffer.size)

    def decided_value(self, seq: int) -> Optional[bytes]:
        """The value decided at ``seq`` if this replica decided it and still remembers it."""
        return self.log.decided_value(seq)

    # ---------------------------------------------------------------- helpers

    def _broadcast(self, msg) -> None:
        self._out.append(Broadcast(MEMBERS, msg))

    # ---------------------------------------------------------------- requests

    def _on_request(self, value: bytes) -> None:
        if not isinstance(value, bytes) or len(value) > self.value_bytes_max:
            self.counts.invalid += 1
            return
        d = digest_of(value)
        if d in self._pending or d in self.log.decided_digests:
            return  # duplicate: ordered once
        if self.seq_max is not None and self.log.all_done():
            return
        if len(self._pending) >= self.pending_max:
            self.counts.invalid += 1
            return
        self._pending[d] = value
        self.log.values[d] = value
        self._propose()

    def _propose(self) -> None:
        if not self.active or self.primary(self.view) != self.me:
            return
        log = self.log
        for d, value in list(self._pending.items()):
            if d in self._assigned:
                continue
            seq = self._next_seq
            if seq <= log.low:
                seq = self._next_seq = log.low + 1
            if seq > log.high:
                return
            self._next_seq = seq + 1
            pp = self._signed(PrePrepare(self.view, seq, d, value, self.me))
            self._assigned.add(d)
            slot = log.slot(self.view, seq)
            slot.pre_prepare = pp
            self._inflight.add(seq)
            self._broadcast(pp)
            self._check_prepared(self.view, seq, slot)

    # ---------------------------------------------------------------- receive dispatch

    def _receive(self, msg) -> None:
        sender = getattr(msg, "sender", None)
        if sender not in self.weights:
            self.counts.non_member += 1
            return
        if sender == self.me:
            self.counts.stale += 1
            return
        if self._verify is not None and not self._authentic(msg):
            self.counts.invalid += 1
            return
        if self.unauthenticated and carries_others(msg):
            self.counts.refused += 1
            return
        on = _DISPATCH.get(type(msg))
        if on is None:
            self.counts.invalid += 1
        else:
            on(self, msg)

    def _on_normal(self, msg) -> None:
        view, seq = msg.view, msg.seq
        if type(view) is not int or type(seq) is not int or len(msg.digest) != DIGEST_BYTES:
            self.counts.invalid += 1
            return
        log = self.log
        high = log.low + self.watermark_window
        if self.seq_max is not None and self.seq_max < high:
            high = self.seq_max
        if seq <= log.low or seq > high:
            self.counts.stale += 1
            return
        if view > self.view or (view == self.view and not self.active):
            if not self._buffer.add(msg, self.view):
                self.counts.stale += 1
            return
        if view < self.view:
            if type(msg) is PrePrepare:
                self._learn_value(msg)
                return
            if type(msg) is Commit and view >= self.view - 4:
                self._on_commit(msg)
            else:
                self.counts.stale += 1
            return
        t = type(msg)
        if t is Prepare:
            self._on_prepare(msg)
        elif t is Commit:
            self._on_commit(msg)
        else:
            self._on_pre_prepare(msg)

    def _learn_value(self, pp: PrePrepare) -> None:
        """An old view's pre-prepare is useful only to a commit quorum waiting for its value:
        store nothing else (otherwise any member could park megabytes here)."""
        log = self.log
        if (pp.sender != self.primary(pp.view) or pp.digest in log.values
                or pp.seq in log.decided):
            self.counts.stale += 1
            return
        waiting = log.views_weakly_committed(pp.seq, pp.digest)
        if not waiting or len(pp.value) > self.value_bytes_max or digest_of(pp.value) != pp.digest:
            self.counts.stale += 1
            return
        log.values[pp.digest] = pp.value
        self._try_decide(waiting[0], pp.seq, pp.digest)

    # ---------------------------------------------------------------- normal case

    def _on_pre_prepare(self, pp: PrePrepare) -> None:
        view, seq = pp.view, pp.seq
        if pp.sender != self.primary(view):
            self.counts.invalid += 1
            return
        if len(pp.value) > self.value_bytes_max or digest_of(pp.value) != pp.digest:
            self.counts.invalid += 1
            return
        slot = self.log.slot(view, seq)
        old = slot.pre_prepare
        if old is not None:
            if old.digest != pp.digest:
                self._equivocation("pp", pp.sender, view, seq, old, pp)
                self._start_view_change(self.view + 1)
            return
        dec = self.log.decided.get(seq)
        if dec is not None and dec[1] != pp.digest:
            # a primary re-using a decided slot for something else is faulty
            self.counts.bad_proposals += 1
            self._start_view_change(self.view + 1)
            return
        try:
            ok = bool(self.validity(pp.value))
        except Exception:  # a predicate that crashes on garbage rejects it
            ok = False
        if not ok:
            self.counts.bad_proposals += 1
            logger.info("%s: view %d primary %s proposed an invalid value at seq %d",
                        self.me, view, pp.sender, seq)
            self._start_view_change(self.view + 1)
            return
        self._accept_pre_prepare(slot, pp)

    def _accept_pre_prepare(self, slot: Slot, pp: PrePrepare) -> None:
        slot.pre_prepare = pp
        self.log.values[pp.digest] = pp.value
        if pp.seq not in self.log.decided:
            self._inflight.add(pp.seq)
        if self.me != pp.sender:
            p = self._signed(Prepare(pp.view, pp.seq, pp.digest, self.me))
            self._add_prepare(slot, p)
            self._broadcast(p)
        self._check_prepared(pp.view, pp.seq, slot)

    def _add_prepare(self, slot: Slot, p: Prepare) -> None:
        slot.prepares[p.sender] = p
        slot.prep_weight[p.digest] = slot.prep_weight.get(p.digest, 0) + self.weights[p.sender]

    def _on_prepare(self, p: Prepare) -> None:
        if p.sender == self.primary(p.view):
            self.counts.invalid += 1  # the primary's pre-prepare stands for its prepare
            return
        slot = self.log.slot(p.view, p.seq)
        old = slot.prepares.get(p.sender)
        if old is not None:
            if old.digest != p.digest:
                self._equivocation("p", p.sender, p.view, p.seq, old, p)
            return
        self._add_prepare(slot, p)
        self._check_prepared(p.view, p.seq, slot)

    def _check_prepared(self, view: int, seq: int, slot: Slot) -> None:
        pp = slot.pre_prepare
        if slot.prepared or pp is None:
            return
        w = self.weights[pp.sender] + slot.prep_weight.get(pp.digest, 0)
        if not self._quorum.reached(w):
            return
        self.log.mark_prepared(view, seq, slot)
        if view == self.view and self.active and not slot.commit_sent:
            slot.commit_sent = True
            c = self._signed(Commit(view, seq, pp.digest, self.me))
            self._add_commit(slot, c)
            self._broadcast(c)
            self._try_decide(view, seq, pp.digest)

    def _add_commit(self, slot: Slot, c: Commit) -> None:
        slot.commits[c.sender] = c
        slot.commit_weight[c.digest] = slot.commit_weight.get(c.digest, 0) + self.weights[c.sender]

    def _on_commit(self, c: Commit) -> None:
        slots = self.log.slots
        key = (c.view, c.seq)
        slot = slots.get(key)
        if slot is None:
            slot = slots[key] = Slot()
        old = slot.commits.get(c.sender)
        if old is not None:
            if old.digest != c.digest:
                self._equivocation("c", c.sender, c.view, c.seq, old, c)
            return
        slot.commits[c.sender] = c
        d = c.digest
        w = slot.commit_weight[d] = slot.commit_weight.get(d, 0) + self.weights[c.sender]
        if self._quorum.reached(w):
            self._try_decide(c.view, c.seq, d)

    def _try_decide(self, view: int, seq: int, digest: bytes) -> None:
        log = self.log
        if seq in log.decided or seq <= log.low:
            return
        slot = log.slots.get((view, seq))
        if slot is None or not self._quorum.reached(slot.commit_weight.get(digest, 0)):
            return
        value = log.values.get(digest)
        if value is None:
            return  # wait for the value (a pre-prepare or a proof will bring it)
        self._decide(seq, view, digest, value)

    def _decide(self, seq: int, view: int, digest: bytes, value: bytes) -> None:
        self.log.record_decision(seq, view, digest, value)
        self.counts.decided += 1
        self._inflight.discard(seq)
        self._assigned.discard(digest)
        if self._pending.pop(digest, None) is not None:
            # a request we were waiting for was ordered: restart the clock for the rest
            self.timer.reset_backoff()
            self.timer.stop(self._out)
        logger.debug("%s decided seq %d in view %d", self.me, seq, view)
        self._out.append(Decided(seq, view, value, digest))
        self._execute()
        if self.active and self.primary(self.view) == self.me:
            self._propose()

    def _execute(self) -> None:
        """Advance the executed prefix; emit checkpoints at multiples of the interval."""
        log = self.log
        while (n := log.execute_next()) is not None:
            if n % self.checkpoint_interval == 0:
                ck = self._signed(Checkpoint(n, log.state_digest, self.me))
                log.own_checkpoints[n] = log.state_digest
                self._broadcast(ck)
                self._add_checkpoint(ck)

    # ---------------------------------------------------------------- checkpoints

    def _on_checkpoint(self, ck: Checkpoint) -> None:
        if (not isinstance(ck.seq, int) or ck.seq % self.checkpoint_interval
                or len(ck.state_digest) != DIGEST_BYTES):
            self.counts.invalid += 1
            return
        stale, proof = self.log.add_checkpoint(ck)
        if stale:
            self.counts.stale += 1
        elif proof is not None:
            self._make_stable(ck.seq, ck.state_digest, proof)

    def _add_checkpoint(self, ck: Checkpoint) -> None:
        _, proof = self.log.add_checkpoint(ck)
        if proof is not None:
            self._make_stable(ck.seq, ck.state_digest, proof)

    def _make_stable(self, seq: int, state_digest: bytes, proof: tuple[Checkpoint, ...]) -> None:
        log = self.log
        if seq <= log.low:
            return
        logger.info("%s: checkpoint %d stable", self.me, seq)
        if log.stabilise(seq, state_digest, proof):
            self._out.append(StateTransferNeeded(seq, state_digest))
            self._execute()
        elif log.own_checkpoints.get(seq, state_digest) != state_digest:
            logger.error("%s: stable checkpoint %d differs from own state", self.me, seq)
        log.truncate(seq, keep_values=self._pending)
        self._inflight = {n for n in self._inflight if n > seq}
        if self._next_seq <= seq:
            self._next_seq = seq + 1
        if self.active and self.primary(self.view) == self.me:
            self._propose()

    # ---------------------------------------------------------------- view change

    def _equivocation(self, kind: str, member: MemberId, view: int, seq: int, first, second) -> None:
        key = (kind, member, view, seq)
        if key in self._reported:
            return
        self._reported.add(key)
        self.counts.equivocations += 1
        logger.info("%s: %s equivocated at view %d seq %d", self.me, member, view, seq)
        self._out.append(EquivocationDetected(member, first, second))

    def _start_view_change(self, new_view: int) -> None:
        if new_view <= self.view:
            return
        if self.seq_max is not None and self.log.all_done():
            return
        self.timer.stop(self._out)
        self.timer.backoff += 1
        self.timer.wait_backoff = 0
        self.counts.view_changes += 1
        logger.info("%s: view change %d -> %d (primary %s)", self.me, self.view, new_view,
                    self.primary(new_view))
        self.view = new_view
        self.active = False
        self._new_view = None
        self._assigned.clear()
        self._inflight.clear()
        self._votes.keep_from(new_view)
        vc = self._make_view_change(new_view)
        self._buffer.keep_from(new_view)
        self._broadcast(vc)
        self._maybe_new_view()

    def _make_view_change(self, new_view: int) -> ViewChange:
        log = self.log
        missing = tuple(sorted(log.skipped)[: self.watermark_window])  # oldest first
        vc = self._signed(ViewChange(new_view, log.low, log.best_certs(), self.me,
                                     log.stable_proof, missing))
        self._votes.record_own(vc)
        return vc

    def _on_view_change(self, vc: ViewChange) -> None:
        if not certs.valid_view_change(vc, self.group, self._check_auth):
            self.counts.invalid += 1
            return
        self._out += self._catchup.answers(vc, view=self.view, active=self.active,
                                           new_view=self._new_view)
        if vc.new_view < self.view or (vc.new_view == self.view and self.active):
            self.counts.stale += 1  # the sender is behind (answered above)
            return
        if vc.new_view > self.view + 1024:
            self.counts.stale += 1
            return
        if not self._votes.add(vc):
            return
        if vc.stable_seq > self.log.low:
            self._make_stable(vc.stable_seq, vc.checkpoint_proof[0].state_digest,
                              vc.checkpoint_proof)
        self._join_if_left_behind()
        self._maybe_new_view()

    def _join_if_left_behind(self) -> None:
        """Follow members weighing more than W/3 to the highest view they have reached."""
        view = self._votes.view_to_join(self.view, self.me)
        if view is not None:
            self._start_view_change(view)

    def _maybe_new_view(self) -> None:
        if self.active or self._new_view is not None or self.primary(self.view) != self.me:
            return
        per = self._votes.of(self.view)
        if not self.is_quorum(self._votes.weight(self.view)):
            return
        vcs = tuple(per[m] for m in sorted(per))
        pps = tuple(self._signed(pp)
                    for pp in certs.compute_new_view(self.view, vcs, self.me))
        nv = self._signed(NewView(self.view, vcs, pps, self.me))
        self._broadcast(nv)
        self._install_new_view(nv)

    def _on_new_view(self, nv: NewView) -> None:
        if not isinstance(nv.view, int) or nv.view < self.view or (
                nv.view == self.view and self.active):
            self.counts.stale += 1
            return
        verdict = certs.check_new_view(nv, self.group, self._check_auth)
        if verdict is certs.NewViewCheck.WRONG_PRE_PREPARES:
            self.counts.invalid += 1
            logger.info("%s: rejected new-view %d from %s (wrong pre-prepares)",
                        self.me, nv.view, nv.sender)
            self._start_view_change(max(self.view, nv.view) + 1)
            return
        if verdict is not certs.NewViewCheck.VALID:
            self.counts.invalid += 1
            return
        if nv.view > self.view:
            # we never sent a view change for this view; enter it directly
            self.counts.view_changes += 1
            self.view = nv.view
            self._assigned.clear()
            self._inflight.clear()
        self._install_new_view(nv)

    def _install_new_view(self, nv: NewView) -> None:
        self.timer.stop(self._out)
        self.active = True
        self._new_view = nv
        self.counts.new_views += 1
        logger.info("%s: entered view %d (primary %s)", self.me, nv.view, nv.sender)
        log = self.log
        best = max(nv.view_changes, key=lambda vc: vc.stable_seq)
        if best.stable_seq > log.low:
            self._make_stable(best.stable_seq, best.checkpoint_proof[0].state_digest,
                              best.checkpoint_proof)
        max_s = log.low
        for pp in nv.pre_prepares:
            max_s = max(max_s, pp.seq)
            if pp.seq <= log.low:
                continue
            slot = log.slot(nv.view, pp.seq)
            if slot.pre_prepare is None:
                if pp.sender == self.me:
                    slot.pre_prepare = pp
                    log.values[pp.digest] = pp.value
                    if pp.seq not in log.decided:
                        self._inflight.add(pp.seq)
                    self._assigned.add(pp.digest)
                    self._check_prepared(nv.view, pp.seq, slot)
                else:
                    self._accept_pre_prepare(slot, pp)
        # a new primary numbers from just above the new-view's pre-prepares: seqs it
        # proposed in an older view and that nobody prepared are free again
        self._next_seq = max_s + 1
        self._votes.keep_from(nv.view + 1)
        for msg in self._buffer.pop(nv.view):
            self._receive(msg)
        self._propose()

    # ---------------------------------------------------------------- catch-up

    def _on_commit_proof(self, cp: CommitProof) -> None:
        if not isinstance(cp.seq, int) or not isinstance(cp.view, int):
            self.counts.invalid += 1
            return
        log = self.log
        if ((cp.seq <= log.low and cp.seq not in log.skipped) or cp.seq > log.high
                or cp.seq in log.decided):
            self.counts.stale += 1
            return
        if not certs.valid_commit_proof(cp, self.group, self._check_auth):
            self.counts.invalid += 1
            return
        for old, c in log.adopt_commit_proof(cp):
            self._equivocation("c", c.sender, c.view, c.seq, old, c)
        self._decide(cp.seq, cp.view, cp.digest, cp.value)

    # ---------------------------------------------------------------- the view timer

    def _on_timeout(self, kind: Optional[str]) -> None:
        if kind == "wait":
            # Still short of a quorum for this view: do not run ahead alone (that is how
            # honest replicas end up chasing each other through views); re-send our view
            # change instead (a fresh snapshot: it may name decisions we have learnt are
            # missing since). Members ahead of us answer with their view change for our
            # view, so we are never stuck for lack of one; we follow others upward only when
            # they weigh more than W/3 (_join_if_left_behind), so one liar cannot drag us.
            vc = self._make_view_change(self.view)
            self._broadcast(vc)
            self.timer.wait_backoff += 1  # retransmit ever more slowly while nothing changes
            return
        self._start_view_change(self.view + 1)

    def _timer_wanted(self) -> Optional[str]:
        """Which view timer should run: ``"active"`` (a request is waiting in a working
        view), ``"quorum"`` (a quorum asked for this view; waiting for its new-view),
        ``"wait"`` (view change sent, no quorum yet, work pending: retransmit) or None."""
        if self.seq_max is not None and self.log.all_done():
            return None
        if self.active:
            return "active" if (self._pending or self._inflight) else None
        if self.is_quorum(self._votes.weight(self.view)):
            return "quorum"
        # retransmit while someone needs this view change to complete: us (pending work)
        # or others who asked for the same view
        return "wait" if self._pending or len(self._votes.of(self.view)) > 1 else None


_DISPATCH = {PrePrepare: Replica._on_normal, Prepare: Replica._on_normal,
             Commit: Replica._on_normal, Checkpoint: Replica._on_checkpoint,
             ViewChange: Replica._on_view_change, NewView: Replica._on_new_view,
             CommitProof: Replica._on_commit_proof}
"""Received message type -> handler (exact types: ``decode`` never builds subclasses)."""
