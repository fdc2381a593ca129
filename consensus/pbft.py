"""PBFT (Castro & Liskov 1999) as a sans-I/O replica state machine with weighted quorums.

A :class:`Replica` consumes events (:class:`Request`, :class:`Receive`, :class:`TimerExpired`)
and returns effects (:class:`Broadcast`, :class:`Send`, :class:`SetTimer`,
:class:`CancelTimer`, :class:`Decided`, :class:`EquivocationDetected`,
:class:`StateTransferNeeded`). It never touches the network, a clock or a random generator:
the caller delivers messages, runs timers and (optionally) signs and verifies.

Quorums are weighted. Every member has a non-negative integer weight and the total is ``W``.
A *quorum* is a set of members whose weight is strictly more than ``2W/3``; a *weak
certificate* is strictly more than ``W/3``. Two quorums overlap in more than ``W/3``, so as
long as the Byzantine members weigh less than ``W/3`` every two quorums share an honest
member, which is what makes a decided value final. With equal weights and ``N = 3f + 1`` this
is the classic ``2f + 1`` / ``f + 1``. Weights must be identical at every honest member
(derive them from decided state, see :mod:`consensus.trust`), and they are fixed for the
lifetime of a replica: change them at an epoch boundary by starting a new replica.

Protocol, in short (the names follow the paper):

* ``Request(value)``: the primary of the current view (``order[view % N]``, see below)
  assigns the next sequence number and broadcasts ``PrePrepare``; backups remember the value
  and run the view-change timer until it is decided (duplicates are ordered once).
* A backup accepts a pre-prepare if it is from the primary, in the current view, inside the
  watermarks, ``digest == sha256(value)``, the value passes the ``validity`` predicate and no
  other digest was accepted for that ``(view, seq)``; it broadcasts ``Prepare``. A pre-prepare
  that fails validity, or a second conflicting one, is evidence against the primary and
  starts a view change at once.
* *Prepared* = accepted pre-prepare + prepares whose weight together with the primary's is a
  quorum; then the replica broadcasts ``Commit``. A quorum of matching commits with a known
  value decides (``Decided``). Commits are counted for recent earlier views too: a commit
  quorum proves the value was prepared by a quorum, so deciding on it is safe at any time.
* Every ``checkpoint_interval`` executed sequence numbers a replica broadcasts
  ``Checkpoint(seq, state_digest)`` (``state_digest`` chains the decided digests); a quorum
  of matching checkpoints makes it stable, moves the low watermark and truncates the log.
* View change: on timeout, on evidence against the primary, or when members weighing more
  than ``W/3`` already moved to a higher view, a replica broadcasts ``ViewChange`` with its
  stable checkpoint (and its proof) and a *prepared certificate* (pre-prepare + quorum of
  prepares) of the highest view for each sequence number. The new primary collects a quorum
  of view changes and broadcasts ``NewView`` which re-proposes, for every sequence number
  between the highest stable checkpoint and the highest prepared one, the value of the
  highest-view certificate (or a no-op ``b""`` if none): so a value that may have been
  decided is never replaced. Backups recompute that set and reject a ``NewView`` that differs.
  Timeouts double with every view change that brings no decision (capped at 64x).
* Catch-up: a replica that receives a ``ViewChange`` answers with a :class:`CommitProof`
  (value + quorum of commits) for each sequence number it decided that the sender may lack,
  so a replica that lost messages still decides once the network delivers again.

Authentication: every message has a ``signature`` field that takes no part in equality.
Pass ``sign``/``verify`` callables: the replica signs every message it creates and checks
every message it receives, including the messages nested in certificates (which is what
makes view changes and catch-up safe against forged certificates). Without them a replica
must be built with ``unauthenticated=True`` (else :class:`PbftConfigError`): the caller
authenticates the outer sender, and the replica *refuses every message that carries other
members' messages* (``CommitProof``, ``NewView``, and view changes with certificates or a
checkpoint proof), because one member could fabricate those. That mode is safe (one member
cannot make two honest replicas decide differently) but not live under a faulty primary:
view changes never complete and laggards never catch up. Use it only for benchmarks and
trusted test harnesses.

Primary order: by default the sorted member ids, round robin. A key whose id sorts first
would then be the view-0 primary of every group it joins, so a caller that forms groups
from identities it does not control passes ``order_seed`` (e.g. the round's query id): the
order is then ``sha256(order_seed || member)`` and cannot be ground without knowing the
seed in advance. Members of weight 0 are never primary.

One-shot use (the daemon's per-query round): pass ``seq_max=1``; the replica orders one value
and then ignores further requests.

Duplicates: a request is proposed once per view, but after view changes the same value can
end up decided at two sequence numbers (two primaries each got it prepared, as in PBFT). All
honest logs agree, so an executor that skips a digest already executed at a lower sequence
number stays deterministic.
"""
from __future__ import annotations

import hashlib
import logging
import math
import struct
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Mapping, NewType, Optional, Union

from .effects import MEMBERS, Broadcast, CancelTimer, Send, SetTimer
from .quorum import ONE_THIRD, TWO_THIRDS, Quorum

logger = logging.getLogger(__name__)

MemberId = NewType("MemberId", str)
"""A PBFT member's identity (the daemon uses the libp2p peer id string)."""

DIGEST_BYTES = 32
NULL_VALUE = b""
"""The value of a no-op request that a new primary uses to fill a gap in the log."""

VALUE_BYTES_MAX = 1 << 20
"""Default largest value ``decode`` accepts (1 MiB): an encoded answer is far smaller."""
MEMBER_ID_CHARS_MAX = 256
SIGNATURE_BYTES_MAX = 512
ITEMS_MAX = 4096
"""Largest list inside a decoded message (certificates, prepares, view changes)."""
INT_MAX = (1 << 63) - 1


def digest_of(value: bytes) -> bytes:
    """The digest that names a value in every message: ``sha256(value)`` (32 bytes)."""
    return hashlib.sha256(value).digest()


NULL_DIGEST = digest_of(NULL_VALUE)


class PbftError(Exception):
    """Base class of every error raised by :mod:`consensus.pbft`."""


class MalformedMessage(PbftError, ValueError):
    """``decode`` was given something that is not a well-formed PBFT message."""


class PbftConfigError(PbftError, ValueError):
    """A :class:`Replica` was built with impossible parameters (no weight, bad window...)."""


# --------------------------------------------------------------------------------------------
# Messages (frozen; ``signature`` is excluded from equality and hashing)


@dataclass(frozen=True, slots=True)
class PrePrepare:
    view: int
    seq: int
    digest: bytes
    value: bytes
    sender: MemberId
    signature: bytes = field(default=b"", compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Prepare:
    view: int
    seq: int
    digest: bytes
    sender: MemberId
    signature: bytes = field(default=b"", compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Commit:
    view: int
    seq: int
    digest: bytes
    sender: MemberId
    signature: bytes = field(default=b"", compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    seq: int
    state_digest: bytes
    sender: MemberId
    signature: bytes = field(default=b"", compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class PreparedCert:
    """Proof that ``pre_prepare`` was prepared: it plus prepares reaching a quorum of weight."""

    pre_prepare: PrePrepare
    prepares: tuple[Prepare, ...]


@dataclass(frozen=True, slots=True)
class ViewChange:
    new_view: int
    stable_seq: int
    prepared: tuple[PreparedCert, ...]
    sender: MemberId
    checkpoint_proof: tuple[Checkpoint, ...] = ()
    """A quorum of matching checkpoints for ``stable_seq`` (empty when ``stable_seq == 0``)."""
    missing: tuple[int, ...] = ()
    """Sequence numbers at or below ``stable_seq`` the sender never saw decided (it adopted
    the checkpoint from others); helpers answer with commit proofs for them."""
    signature: bytes = field(default=b"", compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class NewView:
    view: int
    view_changes: tuple[ViewChange, ...]
    pre_prepares: tuple[PrePrepare, ...]
    sender: MemberId
    signature: bytes = field(default=b"", compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class CommitProof:
    """A decided value with the quorum of commits that decided it (catch-up for laggards)."""

    seq: int
    view: int
    digest: bytes
    value: bytes
    commits: tuple[Commit, ...]
    sender: MemberId
    signature: bytes = field(default=b"", compare=False, repr=False)


Message = Union[PrePrepare, Prepare, Commit, Checkpoint, ViewChange, NewView, CommitProof]

# --------------------------------------------------------------------------------------------
# Events and effects


@dataclass(frozen=True, slots=True)
class Request:
    """A client value to order (only the primary proposes it; backups watch for it)."""

    value: bytes


@dataclass(frozen=True, slots=True)
class Receive:
    """A message from another member (the caller has checked the envelope's sender)."""

    msg: Message


@dataclass(frozen=True, slots=True)
class TimerExpired:
    name: str


Event = Union[Request, Receive, TimerExpired]


@dataclass(frozen=True, slots=True)
class Decided:
    """``value`` is final at ``seq`` (``value == b""`` is a no-op filling a gap)."""

    seq: int
    view: int
    value: bytes
    digest: bytes


@dataclass(frozen=True, slots=True)
class EquivocationDetected:
    """``member`` sent two conflicting messages for one slot; keep both as evidence."""

    member: MemberId
    first: Message
    second: Message


@dataclass(frozen=True, slots=True)
class StateTransferNeeded:
    """A quorum checkpointed ``seq`` before this replica decided everything up to it.

    The decisions up to ``seq`` are final but this replica did not see all of them; fetch
    the state named by ``state_digest`` out of band if you need it.
    """

    seq: int
    state_digest: bytes


Effect = Union[Broadcast, Send, SetTimer, CancelTimer, Decided, EquivocationDetected,
               StateTransferNeeded]


def _carries_others(msg) -> bool:
    """True for a message that embeds other members' messages (forgeable without hooks)."""
    t = type(msg)
    if t is CommitProof or t is NewView:
        return True
    return t is ViewChange and bool(msg.prepared or msg.checkpoint_proof)


def _is_int(x) -> bool:
    return type(x) is int


def primary_order(weights: Mapping[MemberId, int],
                  order_seed: Optional[bytes] = None) -> tuple[MemberId, ...]:
    """The round-robin order of primaries: members of positive weight, sorted by id, or by
    ``sha256(order_seed || len(member) || member)`` when ``order_seed`` is given (then no key
    can be ground to sort first without knowing the seed)."""
    live = [m for m, w in weights.items() if w > 0]
    if order_seed is None:
        return tuple(sorted(live))

    def key(m: str) -> tuple[bytes, str]:
        b = m.encode()
        return hashlib.sha256(order_seed + len(b).to_bytes(4, "big") + b).digest(), m

    return tuple(sorted(live, key=key))


def always_valid(value: bytes) -> bool:
    """The default validity predicate: accept every proposed value."""
    return True


@dataclass(frozen=True, slots=True)
class ReplicaStatistics:
    """A frozen snapshot of one replica (see :meth:`Replica.statistics`)."""

    member: MemberId
    view: int
    active: bool
    primary: MemberId
    low_watermark: int
    last_executed: int
    decided: int
    pending_requests: int
    view_changes_started: int
    new_views_installed: int
    messages_received: int
    ignored_non_member: int
    ignored_invalid: int
    ignored_stale: int
    equivocations: int
    invalid_proposals: int
    buffered: int
    state_digest: bytes
    refused_unauthenticated: int = 0
    """Messages refused because they carry other members' messages and there are no hooks."""
    values_held_bytes: int = 0
    """Bytes of request values held (pending, in the log, or kept for laggards)."""


class _Slot:
    """Everything known about one ``(view, seq)``."""

    __slots__ = ("pre_prepare", "prepares", "commits", "prep_weight", "commit_weight",
                 "prepared", "commit_sent")

    def __init__(self) -> None:
        self.pre_prepare: Optional[PrePrepare] = None
        self.prepares: dict[MemberId, Prepare] = {}
        self.commits: dict[MemberId, Commit] = {}
        self.prep_weight: dict[bytes, int] = {}
        self.commit_weight: dict[bytes, int] = {}
        self.prepared = False
        self.commit_sent = False


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
            replica refuses messages carrying other members' messages (see module doc).
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
        if not isinstance(weights, Mapping):
            raise PbftConfigError(f"weights must be a mapping member -> int, got "
                                  f"{type(weights).__name__}")
        if not weights:
            raise PbftConfigError("a PBFT group needs at least one member")
        if len(weights) > ITEMS_MAX:
            raise PbftConfigError(f"at most {ITEMS_MAX} members, got {len(weights)}")
        for m, w in weights.items():
            if not isinstance(m, str) or not (1 <= len(m) <= MEMBER_ID_CHARS_MAX):
                raise PbftConfigError(f"member ids must be strings of 1..{MEMBER_ID_CHARS_MAX} "
                                      f"chars, got {m!r:.60}")
            if not _is_int(w) or not (0 <= w <= INT_MAX):
                raise PbftConfigError(f"weight of {m!r} must be an int >= 0, got {w!r:.40}")
        if not isinstance(me, str) or me not in weights:
            raise PbftConfigError(f"{me!r:.60} is not a member")
        self.total_weight = sum(weights.values())
        self._quorum = Quorum(weights, TWO_THIRDS)  # the one quorum test (consensus.quorum)
        self._weak = Quorum(weights, ONE_THIRD)
        if self.total_weight <= 0:
            raise PbftConfigError("total weight must be positive")
        if (not _is_int(checkpoint_interval) or not _is_int(watermark_window)
                or checkpoint_interval < 1 or watermark_window < checkpoint_interval):
            raise PbftConfigError("need ints 1 <= checkpoint_interval <= watermark_window")
        if (isinstance(view_timeout_s, bool) or not isinstance(view_timeout_s, (int, float))
                or not 0 < view_timeout_s < math.inf):
            raise PbftConfigError(f"view_timeout_s must be a positive finite number, got "
                                  f"{view_timeout_s!r:.40}")
        if seq_max is not None and (not _is_int(seq_max) or seq_max < 1):
            raise PbftConfigError(f"seq_max must be None or an int >= 1, got {seq_max!r:.40}")
        for name, v in (("pending_max", pending_max), ("buffer_max", buffer_max),
                        ("value_bytes_max", value_bytes_max)):
            if not _is_int(v) or v < 1:
                raise PbftConfigError(f"{name} must be an int >= 1, got {v!r:.40}")
        if not callable(validity):
            raise PbftConfigError("validity must be callable(value) -> bool")
        for name, fn in (("sign", sign), ("verify", verify)):
            if fn is not None and not callable(fn):
                raise PbftConfigError(f"{name} must be callable or None")
        if (sign is None) != (verify is None):
            raise PbftConfigError("pass both sign and verify, or neither")
        if sign is None and not unauthenticated:
            raise PbftConfigError(
                "sign/verify hooks are required: without them one member can forge commit "
                "proofs and certificates; pass unauthenticated=True only for trusted harnesses")
        if sign is not None and unauthenticated:
            raise PbftConfigError("unauthenticated=True contradicts the sign/verify hooks")
        if order_seed is not None and (not isinstance(order_seed, bytes)
                                       or len(order_seed) > 1024):
            raise PbftConfigError("order_seed must be None or at most 1024 bytes")
        self.me = MemberId(me)
        self.weights: dict[MemberId, int] = dict(weights)
        self.members: tuple[MemberId, ...] = tuple(sorted(self.weights))
        self.unauthenticated = bool(unauthenticated)
        self.primary_order: tuple[MemberId, ...] = primary_order(self.weights, order_seed)
        self.validity = validity
        self.view_timeout_s = float(view_timeout_s)
        self.checkpoint_interval = checkpoint_interval
        self.watermark_window = watermark_window
        self.seq_max = seq_max
        self._sign = sign
        self._verify = verify
        self.pending_max = pending_max
        self.buffer_max = buffer_max
        self.value_bytes_max = value_bytes_max

        self.view = 0
        self.active = True
        self.low = 0  # stable checkpoint seq (low watermark)
        self._stable_proof: tuple[Checkpoint, ...] = ()
        self._stable_digest = b"\x00" * DIGEST_BYTES
        self.last_executed = 0
        self.state_digest = b"\x00" * DIGEST_BYTES
        self._slots: dict[tuple[int, int], _Slot] = {}
        self._certs: dict[int, tuple[int, _Slot]] = {}  # seq -> (view, prepared slot)
        self._values: dict[bytes, bytes] = {NULL_DIGEST: NULL_VALUE}
        self._decided: dict[int, tuple[int, bytes]] = {}  # seq -> (view, digest), > low
        self._decided_digests: OrderedDict[bytes, int] = OrderedDict()
        self._pending: OrderedDict[bytes, bytes] = OrderedDict()
        self._assigned: set[bytes] = set()  # digests proposed in this view (primary)
        self._next_seq = 1
        self._inflight: set[int] = set()  # seqs with an accepted pre-prepare, undecided
        self._checkpoints: dict[int, dict[MemberId, Checkpoint]] = {}
        self._far_cks: dict[MemberId, Checkpoint] = {}  # highest far-ahead one per member
        self._vc_missing: dict[tuple[MemberId, int], tuple[int, ...]] = {}
        self._own_checkpoints: dict[int, bytes] = {}
        self._vcs: dict[int, dict[MemberId, ViewChange]] = {}
        self._new_view: Optional[NewView] = None
        self._buffer: dict[int, list[Message]] = {}
        self._buffered = 0
        self._my_vcs: dict[int, ViewChange] = {}  # our last few view changes, for replies
        self._vc_copies: dict[tuple[MemberId, int], int] = {}  # copies seen per (sender, view)
        self._skipped: set[int] = set()  # seqs <= low decided by others, not seen here
        self._old_proofs: dict[int, tuple] = {}  # one window below low, for laggards
        self._proof_commits: dict[int, tuple[Commit, ...]] = {}  # seqs decided by a proof
        self._reported: set[tuple[str, MemberId, int, int]] = set()
        self._timer: Optional[str] = None
        self._timer_kind: Optional[str] = None
        self._timer_gen = 0
        self._backoff = 0
        self._wait_backoff = 0
        self._out: list[Effect] = []
        # counters
        self._n_decided = 0
        self._n_vc = 0
        self._n_nv = 0
        self._n_recv = 0
        self._n_nonmember = 0
        self._n_invalid = 0
        self._n_stale = 0
        self._n_equiv = 0
        self._n_bad_proposals = 0
        self._n_refused = 0
        self._buffered_by: dict[MemberId, int] = {}
        assert self._quorum.reached(self._quorum_min()), "quorum threshold must exceed 2/3 of the weight"

    # ---------------------------------------------------------------- quorum arithmetic

    def _quorum_min(self) -> int:
        """Smallest integer weight that is strictly more than 2/3 of the total."""
        return (2 * self.total_weight) // 3 + 1

    def is_quorum(self, weight: int) -> bool:
        """True when ``weight`` is strictly more than two thirds of the total weight."""
        return self._quorum.reached(weight)

    def is_weak(self, weight: int) -> bool:
        """True when ``weight`` is strictly more than one third (contains an honest member)."""
        return self._weak.reached(weight)

    def primary(self, view: int) -> MemberId:
        """The primary of ``view``: :attr:`primary_order` round robin (weight-0 members are
        never primary)."""
        return self.primary_order[view % len(self.primary_order)]

    @property
    def high(self) -> int:
        h = self.low + self.watermark_window
        return h if self.seq_max is None else min(h, self.seq_max)

    # ---------------------------------------------------------------- public API

    def handle(self, event: Event) -> list[Effect]:
        """Apply one event and return the effects the caller must execute, in order."""
        self._out = out = []
        match event:
            case Receive(msg=msg):
                self._n_recv += 1
                try:
                    self._receive(msg)
                except (TypeError, AttributeError, ValueError) as exc:
                    # a hand-built message with fields of the wrong type (decode() never
                    # produces one): ignore and count it like any other invalid message
                    self._n_invalid += 1
                    logger.info("%s: ignored malformed %s: %s", self.me, type(msg).__name__, exc)
            case Request(value=value):
                self._on_request(value)
            case TimerExpired(name=name):
                if name == self._timer:
                    kind = self._timer_kind
                    self._timer = self._timer_kind = None
                    self._on_timeout(kind)
            case _:
                raise PbftError(f"unknown event {type(event).__name__}")
        # fast path: nothing to change when no work is pending and no timer runs
        if self._timer is not None or self._pending or self._inflight or not self.active:
            self._update_timer()
        self._out = []
        return out

    def statistics(self) -> ReplicaStatistics:
        return ReplicaStatistics(
            member=self.me, view=self.view, active=self.active,
            primary=self.primary(self.view), low_watermark=self.low,
            last_executed=self.last_executed, decided=self._n_decided,
            pending_requests=len(self._pending), view_changes_started=self._n_vc,
            new_views_installed=self._n_nv, messages_received=self._n_recv,
            ignored_non_member=self._n_nonmember, ignored_invalid=self._n_invalid,
            ignored_stale=self._n_stale, equivocations=self._n_equiv,
            invalid_proposals=self._n_bad_proposals, buffered=self._buffered,
            state_digest=self.state_digest, refused_unauthenticated=self._n_refused,
            values_held_bytes=sum(map(len, self._values.values())) + sum(
                len(p[2]) for n, p in self._old_proofs.items()),
        )

    def decided_value(self, seq: int) -> Optional[bytes]:
        """The value decided at ``seq`` if this replica decided it and still remembers it."""
        d = self._decided.get(seq)
        return None if d is None else self._values.get(d[1])

    # ---------------------------------------------------------------- signing

    def _signed(self, msg):
        if self._sign is None:
            return msg
        return _with_signature(msg, self._sign(signing_bytes(msg)))

    def _authentic(self, msg) -> bool:
        if self._verify is None:
            return True
        try:
            return bool(self._verify(msg.sender, signing_bytes(msg), msg.signature))
        except Exception:  # unsignable fields, or a verifier raising on garbage: not authentic
            return False

    def _broadcast(self, msg) -> None:
        self._out.append(Broadcast(MEMBERS, msg))

    # ---------------------------------------------------------------- requests

    def _on_request(self, value: bytes) -> None:
        if not isinstance(value, bytes) or len(value) > self.value_bytes_max:
            self._n_invalid += 1
            return
        d = digest_of(value)
        if d in self._pending or d in self._decided_digests:
            return  # duplicate: ordered once
        if self.seq_max is not None and self._all_done():
            return
        if len(self._pending) >= self.pending_max:
            self._n_invalid += 1
            return
        self._pending[d] = value
        self._values[d] = value
        self._propose()

    def _all_done(self) -> bool:
        return self.seq_max is not None and all(
            s in self._decided or s <= self.low for s in range(1, self.seq_max + 1))

    def _propose(self) -> None:
        if not self.active or self.primary(self.view) != self.me:
            return
        for d, value in list(self._pending.items()):
            if d in self._assigned:
                continue
            seq = self._next_seq
            if seq <= self.low:
                seq = self._next_seq = self.low + 1
            if seq > self.high:
                return
            self._next_seq = seq + 1
            pp = self._signed(PrePrepare(self.view, seq, d, value, self.me))
            self._assigned.add(d)
            slot = self._slot(self.view, seq)
            slot.pre_prepare = pp
            self._inflight.add(seq)
            self._broadcast(pp)
            self._check_prepared(self.view, seq, slot)

    # ---------------------------------------------------------------- receive dispatch

    def _slot(self, view: int, seq: int) -> _Slot:
        key = (view, seq)
        s = self._slots.get(key)
        if s is None:
            s = self._slots[key] = _Slot()
        return s

    def _receive(self, msg) -> None:
        sender = getattr(msg, "sender", None)
        if sender not in self.weights:
            self._n_nonmember += 1
            return
        if sender == self.me:
            self._n_stale += 1
            return
        if self._verify is not None and not self._authentic(msg):
            self._n_invalid += 1
            return
        if self.unauthenticated and _carries_others(msg):
            self._n_refused += 1
            return
        match msg:
            case PrePrepare() | Prepare() | Commit():
                self._on_normal(msg)
            case Checkpoint():
                self._on_checkpoint(msg)
            case ViewChange():
                self._on_view_change(msg)
            case NewView():
                self._on_new_view(msg)
            case CommitProof():
                self._on_commit_proof(msg)
            case _:
                self._n_invalid += 1

    def _on_normal(self, msg) -> None:
        view, seq = msg.view, msg.seq
        if type(view) is not int or type(seq) is not int or len(msg.digest) != DIGEST_BYTES:
            self._n_invalid += 1
            return
        high = self.low + self.watermark_window
        if self.seq_max is not None and self.seq_max < high:
            high = self.seq_max
        if seq <= self.low or seq > high:
            self._n_stale += 1
            return
        if view > self.view or (view == self.view and not self.active):
            self._buffer_msg(msg)
            return
        if view < self.view:
            if type(msg) is PrePrepare:
                self._learn_value(msg)
                return
            if type(msg) is Commit and view >= self.view - 4:
                self._on_commit(msg)
            else:
                self._n_stale += 1
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
        if (pp.sender != self.primary(pp.view) or pp.digest in self._values
                or pp.seq in self._decided):
            self._n_stale += 1
            return
        # more than W/3 committed it: an honest member did, so a quorum may follow
        waiting = [v for (v, s), slot in self._slots.items() if s == pp.seq
                   and self.is_weak(slot.commit_weight.get(pp.digest, 0))]
        if not waiting or len(pp.value) > self.value_bytes_max or digest_of(pp.value) != pp.digest:
            self._n_stale += 1
            return
        self._values[pp.digest] = pp.value
        self._try_decide(waiting[0], pp.seq, pp.digest)

    def _buffer_msg(self, msg) -> None:
        v = getattr(msg, "view", None)
        quota = max(1, self.buffer_max // len(self.members))
        if (v is None or v > self.view + 64 or self._buffered >= self.buffer_max
                or self._buffered_by.get(msg.sender, 0) >= quota):
            self._n_stale += 1
            return
        self._buffer.setdefault(v, []).append(msg)
        self._buffered += 1
        self._buffered_by[msg.sender] = self._buffered_by.get(msg.sender, 0) + 1

    def _recount_buffer(self) -> None:
        by: dict[MemberId, int] = {}
        for msgs in self._buffer.values():
            for m in msgs:
                by[m.sender] = by.get(m.sender, 0) + 1
        self._buffered_by = by
        self._buffered = sum(by.values())

    def _on_pre_prepare(self, pp: PrePrepare) -> None:
        view, seq = pp.view, pp.seq
        if pp.sender != self.primary(view):
            self._n_invalid += 1
            return
        if len(pp.value) > self.value_bytes_max or digest_of(pp.value) != pp.digest:
            self._n_invalid += 1
            return
        slot = self._slot(view, seq)
        old = slot.pre_prepare
        if old is not None:
            if old.digest != pp.digest:
                self._equivocation("pp", pp.sender, view, seq, old, pp)
                self._start_view_change(self.view + 1)
            return
        dec = self._decided.get(seq)
        if dec is not None and dec[1] != pp.digest:
            # a primary re-using a decided slot for something else is faulty
            self._n_bad_proposals += 1
            self._start_view_change(self.view + 1)
            return
        try:
            ok = bool(self.validity(pp.value))
        except Exception:  # a predicate that crashes on garbage rejects it
            ok = False
        if not ok:
            self._n_bad_proposals += 1
            logger.info("%s: view %d primary %s proposed an invalid value at seq %d",
                        self.me, view, pp.sender, seq)
            self._start_view_change(self.view + 1)
            return
        self._accept_pre_prepare(slot, pp)

    def _accept_pre_prepare(self, slot: _Slot, pp: PrePrepare) -> None:
        slot.pre_prepare = pp
        self._values[pp.digest] = pp.value
        if pp.seq not in self._decided:
            self._inflight.add(pp.seq)
        if self.me != pp.sender:
            p = self._signed(Prepare(pp.view, pp.seq, pp.digest, self.me))
            self._add_prepare(slot, p)
            self._broadcast(p)
        self._check_prepared(pp.view, pp.seq, slot)

    def _add_prepare(self, slot: _Slot, p: Prepare) -> None:
        slot.prepares[p.sender] = p
        slot.prep_weight[p.digest] = slot.prep_weight.get(p.digest, 0) + self.weights[p.sender]

    def _on_prepare(self, p: Prepare) -> None:
        if p.sender == self.primary(p.view):
            self._n_invalid += 1  # the primary's pre-prepare stands for its prepare
            return
        slot = self._slot(p.view, p.seq)
        old = slot.prepares.get(p.sender)
        if old is not None:
            if old.digest != p.digest:
                self._equivocation("p", p.sender, p.view, p.seq, old, p)
            return
        self._add_prepare(slot, p)
        self._check_prepared(p.view, p.seq, slot)

    def _check_prepared(self, view: int, seq: int, slot: _Slot) -> None:
        pp = slot.pre_prepare
        if slot.prepared or pp is None:
            return
        w = self.weights[pp.sender] + slot.prep_weight.get(pp.digest, 0)
        if not self._quorum.reached(w):
            return
        slot.prepared = True
        best = self._certs.get(seq)
        if best is None or best[0] < view:
            self._certs[seq] = (view, slot)
        if view == self.view and self.active and not slot.commit_sent:
            slot.commit_sent = True
            c = self._signed(Commit(view, seq, pp.digest, self.me))
            self._add_commit(slot, c)
            self._broadcast(c)
            self._try_decide(view, seq, pp.digest)

    def _add_commit(self, slot: _Slot, c: Commit) -> None:
        slot.commits[c.sender] = c
        slot.commit_weight[c.digest] = slot.commit_weight.get(c.digest, 0) + self.weights[c.sender]

    def _on_commit(self, c: Commit) -> None:
        key = (c.view, c.seq)
        slot = self._slots.get(key)
        if slot is None:
            slot = self._slots[key] = _Slot()
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
        if seq in self._decided or seq <= self.low:
            return
        slot = self._slots.get((view, seq))
        if slot is None or not self.is_quorum(slot.commit_weight.get(digest, 0)):
            return
        value = self._values.get(digest)
        if value is None:
            return  # wait for the value (a pre-prepare or a proof will bring it)
        self._decide(seq, view, digest, value)

    def _decide(self, seq: int, view: int, digest: bytes, value: bytes) -> None:
        self._decided[seq] = (view, digest)
        self._values[digest] = value
        self._n_decided += 1
        self._inflight.discard(seq)
        self._assigned.discard(digest)
        self._decided_digests[digest] = seq
        while len(self._decided_digests) > self.pending_max:
            self._decided_digests.popitem(last=False)
        if self._pending.pop(digest, None) is not None:
            # a request we were waiting for was ordered: restart the clock for the rest
            self._backoff = 0
            self._wait_backoff = 0
            self._stop_timer()
        logger.debug("%s decided seq %d in view %d", self.me, seq, view)
        self._out.append(Decided(seq, view, value, digest))
        self._execute()
        if self.active and self.primary(self.view) == self.me:
            self._propose()

    def _execute(self) -> None:
        """Advance the executed prefix; emit checkpoints at multiples of the interval."""
        while True:
            nxt = self.last_executed + 1
            d = self._decided.get(nxt)
            if d is None:
                return
            self.last_executed = nxt
            self.state_digest = hashlib.sha256(self.state_digest + d[1]).digest()
            if nxt % self.checkpoint_interval == 0:
                ck = self._signed(Checkpoint(nxt, self.state_digest, self.me))
                self._own_checkpoints[nxt] = self.state_digest
                self._broadcast(ck)
                self._add_checkpoint(ck)

    # ---------------------------------------------------------------- checkpoints

    def _on_checkpoint(self, ck: Checkpoint) -> None:
        if (not isinstance(ck.seq, int) or ck.seq % self.checkpoint_interval
                or len(ck.state_digest) != DIGEST_BYTES):
            self._n_invalid += 1
            return
        if ck.seq <= self.low:
            self._n_stale += 1
            return
        if ck.seq > self.low + 2 * self.watermark_window:
            self._far_checkpoint(ck)
            return
        self._add_checkpoint(ck)

    def _far_checkpoint(self, ck: Checkpoint) -> None:
        """A checkpoint far above our window (we were cut off while others went on): keep
        only each member's highest one (bounded memory) and adopt it once a quorum agrees."""
        prev = self._far_cks.get(ck.sender)
        if prev is not None and prev.seq >= ck.seq:
            self._n_stale += 1
            return
        self._far_cks[ck.sender] = ck
        agree = tuple(c for m, c in sorted(self._far_cks.items())
                      if c.seq == ck.seq and c.state_digest == ck.state_digest)
        if self.is_quorum(sum(self.weights[c.sender] for c in agree)):
            self._make_stable(ck.seq, ck.state_digest, agree)

    def _add_checkpoint(self, ck: Checkpoint) -> None:
        per = self._checkpoints.setdefault(ck.seq, {})
        if ck.sender in per:
            return
        per[ck.sender] = ck
        w = sum(self.weights[m] for m, c in per.items() if c.state_digest == ck.state_digest)
        if self.is_quorum(w):
            proof = tuple(c for c in per.values() if c.state_digest == ck.state_digest)
            self._make_stable(ck.seq, ck.state_digest, proof)

    def _make_stable(self, seq: int, state_digest: bytes, proof: tuple[Checkpoint, ...]) -> None:
        if seq <= self.low:
            return
        logger.info("%s: checkpoint %d stable", self.me, seq)
        self.low = seq
        self._stable_proof = proof
        self._stable_digest = state_digest
        for n in range(self.last_executed + 1, seq + 1):
            if n not in self._decided:
                self._skipped.add(n)
        # Remember what we skipped (bounded by pending_max, oldest forgotten first): a
        # pending request may have been decided there, and view changes ask for the proofs.
        if len(self._skipped) > self.pending_max:
            self._skipped = set(sorted(self._skipped)[-self.pending_max:])
        for n, (v, d) in self._decided.items():
            if n <= seq:
                slot = self._slots.get((v, n))
                value = self._values.get(d)
                if value is not None and (slot is not None or n in self._proof_commits):
                    self._old_proofs[n] = (v, d, value, slot)
        # keep proofs for the last pending_max decided seqs: a replica cut off for longer
        # than one window still catches up on them (it lists them as ``missing``)
        if len(self._old_proofs) > self.pending_max:
            self._old_proofs = dict(sorted(self._old_proofs.items())[-self.pending_max:])
        if len(self._proof_commits) > self.pending_max:
            self._proof_commits = dict(sorted(self._proof_commits.items())[-self.pending_max:])
        if self.last_executed < seq:
            self.last_executed = seq
            self.state_digest = state_digest
            self._out.append(StateTransferNeeded(seq, state_digest))
            self._execute()
        elif self._own_checkpoints.get(seq, state_digest) != state_digest:
            logger.error("%s: stable checkpoint %d differs from own state", self.me, seq)
        # truncate the log
        self._slots = {k: s for k, s in self._slots.items() if k[1] > seq}
        self._certs = {n: c for n, c in self._certs.items() if n > seq}
        self._checkpoints = {n: c for n, c in self._checkpoints.items() if n > seq}
        self._far_cks = {m: c for m, c in self._far_cks.items() if c.seq > seq}
        self._own_checkpoints = {n: c for n, c in self._own_checkpoints.items() if n >= seq}
        self._inflight = {n for n in self._inflight if n > seq}
        dropped = [n for n in self._decided if n <= seq]
        keep_digests = {v[1] for n, v in self._decided.items() if n > seq}
        for n in dropped:
            del self._decided[n]
        keep_digests.update(self._pending)
        keep_digests.update(pp.digest for s in self._slots.values()
                            if (pp := s.pre_prepare) is not None)
        keep_digests.add(NULL_DIGEST)
        self._values = {d: v for d, v in self._values.items() if d in keep_digests}
        if self._next_seq <= seq:
            self._next_seq = seq + 1
        if self.active and self.primary(self.view) == self.me:
            self._propose()

    def _valid_checkpoint_proof(self, seq: int, proof: tuple[Checkpoint, ...]) -> bool:
        if seq == 0:
            return not proof
        if seq % self.checkpoint_interval or not proof:
            return False
        senders = set()
        sd = proof[0].state_digest
        w = 0
        for ck in proof:
            if (type(ck) is not Checkpoint or ck.seq != seq or ck.state_digest != sd
                    or ck.sender not in self.weights or ck.sender in senders):
                return False
            if not self._authentic(ck):
                return False
            senders.add(ck.sender)
            w += self.weights[ck.sender]
        return self.is_quorum(w)

    # ---------------------------------------------------------------- view change

    def _equivocation(self, kind: str, member: MemberId, view: int, seq: int, first, second) -> None:
        key = (kind, member, view, seq)
        if key in self._reported:
            return
        self._reported.add(key)
        self._n_equiv += 1
        logger.info("%s: %s equivocated at view %d seq %d", self.me, member, view, seq)
        self._out.append(EquivocationDetected(member, first, second))

    def _on_timeout(self, kind: Optional[str]) -> None:
        if kind == "wait":
            # Still short of a quorum for this view: do not run ahead alone (that is how
            # honest replicas end up chasing each other through views); re-send our view
            # change instead, in case the network lost it.
            # (a fresh snapshot: it may name decisions we have learnt are missing since).
            # Members ahead of us answer with their view change for our view, so we are
            # never stuck for lack of one; we follow others upward only when they weigh
            # more than W/3 (_join_if_left_behind), so one liar cannot drag us along.
            vc = self._make_view_change(self.view)
            self._broadcast(vc)
            self._wait_backoff += 1  # retransmit ever more slowly while nothing changes
            return
        self._start_view_change(self.view + 1)

    def _timer_wanted(self) -> Optional[str]:
        """Which view timer should run: ``"active"`` (a request is waiting in a working
        view), ``"quorum"`` (a quorum asked for this view; waiting for its new-view),
        ``"wait"`` (view change sent, no quorum yet, work pending: retransmit) or None."""
        if self.seq_max is not None and self._all_done():
            return None
        if self.active:
            return "active" if (self._pending or self._inflight) else None
        vcs = self._vcs.get(self.view, {})
        if self.is_quorum(sum(self.weights[m] for m in vcs)):
            return "quorum"
        # retransmit while someone needs this view change to complete: us (pending work)
        # or others who asked for the same view
        return "wait" if self._pending or len(vcs) > 1 else None

    def _update_timer(self) -> None:
        want = self._timer_wanted()
        if want == self._timer_kind:
            return
        self._stop_timer()
        if want is not None:
            self._timer_gen += 1
            self._timer = f"pbft-view:{self.me}:{self.view}:{self._timer_gen}"
            self._timer_kind = want
            exp = self._backoff + (self._wait_backoff if want == "wait" else 0)
            delay = self.view_timeout_s * (1 << min(exp, 16))
            self._out.append(SetTimer(self._timer, delay))

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._out.append(CancelTimer(self._timer))
            self._timer = self._timer_kind = None

    def _best_certs(self) -> tuple[PreparedCert, ...]:
        out = []
        for seq in sorted(self._certs):
            view, slot = self._certs[seq]
            pp = slot.pre_prepare
            assert pp is not None and slot.prepared, "a certificate needs a prepared slot"
            preps = tuple(p for m, p in sorted(slot.prepares.items())
                          if p.digest == pp.digest and m != pp.sender)
            out.append(PreparedCert(pp, preps))
        return tuple(out)

    def _start_view_change(self, new_view: int) -> None:
        if new_view <= self.view:
            return
        if self.seq_max is not None and self._all_done():
            return
        self._stop_timer()
        self._backoff += 1
        self._wait_backoff = 0
        self._n_vc += 1
        logger.info("%s: view change %d -> %d (primary %s)", self.me, self.view, new_view,
                    self.primary(new_view))
        self.view = new_view
        self.active = False
        self._new_view = None
        self._assigned.clear()
        self._inflight.clear()
        self._vcs = {v: d for v, d in self._vcs.items() if v >= new_view}
        vc = self._make_view_change(new_view)
        self._buffer = {v: b for v, b in self._buffer.items() if v >= new_view}
        self._recount_buffer()
        self._broadcast(vc)
        self._maybe_new_view()

    def _make_view_change(self, new_view: int) -> ViewChange:
        missing = tuple(sorted(self._skipped)[: self.watermark_window])  # oldest first
        vc = self._signed(ViewChange(new_view, self.low, self._best_certs(), self.me,
                                     self._stable_proof, missing))
        self._vcs.setdefault(new_view, {})[self.me] = vc
        self._my_vcs[new_view] = vc
        for v in sorted(self._my_vcs)[:-4]:
            del self._my_vcs[v]
        return vc

    def _valid_cert(self, cert, vc_view: int, stable_seq: int) -> bool:
        if type(cert) is not PreparedCert:
            return False
        pp = cert.pre_prepare
        if type(pp) is not PrePrepare or not (0 <= pp.view < vc_view):
            return False
        if not (stable_seq < pp.seq <= stable_seq + self.watermark_window):
            return False
        if pp.sender != self.primary(pp.view) or len(pp.value) > self.value_bytes_max:
            return False
        if digest_of(pp.value) != pp.digest:
            return False
        if not self._authentic(pp):
            return False
        w = self.weights[pp.sender]
        seen = {pp.sender}
        for p in cert.prepares:
            if (type(p) is not Prepare or p.view != pp.view or p.seq != pp.seq
                    or p.digest != pp.digest or p.sender not in self.weights
                    or p.sender in seen):
                return False
            if not self._authentic(p):
                return False
            seen.add(p.sender)
            w += self.weights[p.sender]
        return self.is_quorum(w)

    def _valid_view_change(self, vc: ViewChange) -> bool:
        if not isinstance(vc.new_view, int) or not isinstance(vc.stable_seq, int):
            return False
        if vc.new_view < 1 or vc.stable_seq < 0:
            return False
        if not self._valid_checkpoint_proof(vc.stable_seq, vc.checkpoint_proof):
            return False
        if len(vc.missing) > self.watermark_window or any(
                type(n) is not int or not (0 < n <= vc.stable_seq) for n in vc.missing):
            return False
        seqs = set()
        for cert in vc.prepared:
            if not self._valid_cert(cert, vc.new_view, vc.stable_seq):
                return False
            if cert.pre_prepare.seq in seqs:
                return False
            seqs.add(cert.pre_prepare.seq)
        return True

    def _on_view_change(self, vc: ViewChange) -> None:
        if not self._valid_view_change(vc):
            self._n_invalid += 1
            return
        # Answers to view changes (commit proofs, our new-view or view changes) go out on the
        # 1st, 2nd, 4th, 8th... copy of one (sender, view): a laggard's retransmissions keep
        # being answered, while two replicas answering each other's answers die out quickly.
        key = (vc.sender, vc.new_view)
        count = self._vc_copies.get(key, 0) + 1
        if len(self._vc_copies) > 16 * len(self.members) + 64:
            self._vc_copies.clear()
            self._vc_missing.clear()
        self._vc_copies[key] = count
        answer = count & (count - 1) == 0
        if answer:
            self._help(vc, retransmitted=count > 1)
            self._vc_missing[key] = vc.missing
        elif vc.missing and self._vc_missing.get(key) != vc.missing:
            # a laggard catching up names new missing seqs: progress, answer those at once
            self._vc_missing[key] = vc.missing
            for seq in vc.missing:
                proof = self._proof(seq)
                if proof is not None:
                    self._out.append(Send(vc.sender, proof))
        if vc.new_view < self.view or (vc.new_view == self.view and self.active):
            # the sender is behind: show it where we are (and the view change it asks for)
            self._n_stale += 1
            if not answer:
                return
            nv = self._new_view
            if self.active:
                if nv is not None and nv.view == self.view:
                    self._out.append(Send(vc.sender, nv))
            else:
                for v in sorted({vc.new_view, self.view}):
                    mine = self._my_vcs.get(v)
                    if mine is not None:
                        self._out.append(Send(vc.sender, mine))
            return
        if vc.new_view > self.view + 1024:
            self._n_stale += 1
            return
        per = self._vcs.setdefault(vc.new_view, {})
        if (answer and vc.sender == self.primary(vc.new_view) and vc.new_view == self.view
                and not self.active):
            # The would-be primary is still collecting view changes (it retransmits while
            # short of a quorum): make sure it has ours.
            mine = self._my_vcs.get(self.view)
            if mine is not None:
                self._out.append(Send(vc.sender, mine))
        if vc.sender in per:
            return
        per[vc.sender] = vc
        # keep at most 4 future views per sender (a Byzantine flood only costs its own slots)
        mine = sorted(v for v, d in self._vcs.items() if vc.sender in d)
        for v in mine[:-4]:
            del self._vcs[v][vc.sender]
            if not self._vcs[v]:
                del self._vcs[v]
        if vc.stable_seq > self.low:
            self._make_stable(vc.stable_seq, vc.checkpoint_proof[0].state_digest,
                              vc.checkpoint_proof)
        self._join_if_left_behind()
        self._maybe_new_view()

    def _help(self, vc: ViewChange, retransmitted: bool = False) -> None:
        """Send commit proofs for what we decided above the sender's stable checkpoint."""
        has = {c.pre_prepare.seq: c.pre_prepare.view for c in vc.prepared}
        # When we take part in the same view change, a sender holding a certificate from the
        # deciding view will decide through the new view: spare those proofs.
        joint = not self.active and self.view == vc.new_view and not retransmitted
        wanted = [n for n in sorted(self._decided) if n > vc.stable_seq
                  and not (joint and has.get(n, -1) >= self._decided[n][0])]
        # decisions already below our checkpoint: the sender may lack them too
        floor = max(vc.stable_seq, self.low - self.watermark_window)
        wanted += [n for n in sorted(self._old_proofs)
                   if n > floor and n not in self._decided]
        wanted += [n for n in vc.missing if n in self._old_proofs or n in self._decided]
        if vc.stable_seq < self.low:
            for ck in self._stable_proof:  # let it adopt our stable checkpoint too
                self._out.append(Send(vc.sender, ck))
        for seq in wanted:
            proof = self._proof(seq)
            if proof is not None:
                self._out.append(Send(vc.sender, proof))

    def _proof(self, seq: int) -> Optional[CommitProof]:
        """A commit proof for a seq this replica decided, if it still holds the commits."""
        dec = self._decided.get(seq)
        if dec is not None:
            view, d = dec
            slot = self._slots.get((view, seq))
            value = self._values.get(d)
        elif seq in self._old_proofs:
            view, d, value, slot = self._old_proofs[seq]
        else:
            return None
        if value is None:
            return None
        commits = self._proof_commits.get(seq)
        if commits is None:
            if slot is None:
                return None
            commits = tuple(c for m, c in sorted(slot.commits.items()) if c.digest == d)
        if not self.is_quorum(sum(self.weights[c.sender] for c in commits)):
            return None
        return self._signed(CommitProof(seq, view, d, value, commits, self.me))

    def _on_commit_proof(self, cp: CommitProof) -> None:
        if not isinstance(cp.seq, int) or not isinstance(cp.view, int):
            self._n_invalid += 1
            return
        if ((cp.seq <= self.low and cp.seq not in self._skipped) or cp.seq > self.high
                or cp.seq in self._decided):
            self._n_stale += 1
            return
        if len(cp.value) > self.value_bytes_max or digest_of(cp.value) != cp.digest:
            self._n_invalid += 1
            return
        w = 0
        seen = set()
        for c in cp.commits:
            if (type(c) is not Commit or c.view != cp.view or c.seq != cp.seq
                    or c.digest != cp.digest or c.sender not in self.weights
                    or c.sender in seen):
                self._n_invalid += 1
                return
            if not self._authentic(c):
                self._n_invalid += 1
                return
            seen.add(c.sender)
            w += self.weights[c.sender]
        if not self.is_quorum(w):
            self._n_invalid += 1
            return
        self._skipped.discard(cp.seq)
        slot = self._slot(cp.view, cp.seq)
        for c in cp.commits:
            old = slot.commits.get(c.sender)
            if old is None:
                self._add_commit(slot, c)
            elif old.digest != c.digest:
                self._equivocation("c", c.sender, c.view, c.seq, old, c)
        self._proof_commits[cp.seq] = cp.commits  # we may have to pass the proof on
        self._decide(cp.seq, cp.view, cp.digest, cp.value)

    def _join_if_left_behind(self) -> None:
        """If members weighing more than W/3 are in higher views, join the highest view
        that such a group has reached (at least one honest member is there)."""
        best: dict[MemberId, int] = {}
        for v, per in self._vcs.items():
            if v > self.view:
                for m in per:
                    if m != self.me and v > best.get(m, -1):
                        best[m] = v
        if not self.is_weak(sum(self.weights[m] for m in best)):
            return
        acc = 0
        for m, v in sorted(best.items(), key=lambda kv: -kv[1]):
            acc += self.weights[m]
            if self.is_weak(acc):
                self._start_view_change(v)
                return

    def _compute_new_view(self, view: int, vcs) -> tuple[PrePrepare, ...]:
        min_s = max(vc.stable_seq for vc in vcs)
        chosen: dict[int, PrePrepare] = {}
        for vc in vcs:
            for cert in vc.prepared:
                pp = cert.pre_prepare
                if pp.seq <= min_s:
                    continue
                cur = chosen.get(pp.seq)
                if cur is None or cur.view < pp.view:
                    chosen[pp.seq] = pp
        max_s = max(chosen, default=min_s)
        primary = self.primary(view)
        out = []
        for n in range(min_s + 1, max_s + 1):
            pp = chosen.get(n)
            if pp is None:
                out.append(PrePrepare(view, n, NULL_DIGEST, NULL_VALUE, primary))
            else:
                out.append(PrePrepare(view, n, pp.digest, pp.value, primary))
        return tuple(out)

    def _maybe_new_view(self) -> None:
        if self.active or self._new_view is not None or self.primary(self.view) != self.me:
            return
        per = self._vcs.get(self.view, {})
        if not self.is_quorum(sum(self.weights[m] for m in per)):
            return
        vcs = tuple(per[m] for m in sorted(per))
        pps = tuple(self._signed(pp) for pp in self._compute_new_view(self.view, vcs))
        nv = self._signed(NewView(self.view, vcs, pps, self.me))
        self._broadcast(nv)
        self._install_new_view(nv)

    def _on_new_view(self, nv: NewView) -> None:
        if not isinstance(nv.view, int) or nv.view < self.view or (
                nv.view == self.view and self.active):
            self._n_stale += 1
            return
        if nv.sender != self.primary(nv.view):
            self._n_invalid += 1
            return
        seen = set()
        w = 0
        for vc in nv.view_changes:
            if (type(vc) is not ViewChange or vc.new_view != nv.view
                    or vc.sender not in self.weights or vc.sender in seen):
                self._n_invalid += 1
                return
            if not self._authentic(vc):
                self._n_invalid += 1
                return
            if not self._valid_view_change(vc):
                self._n_invalid += 1
                return
            seen.add(vc.sender)
            w += self.weights[vc.sender]
        if not self.is_quorum(w):
            self._n_invalid += 1
            return
        expected = self._compute_new_view(nv.view, nv.view_changes)
        if len(expected) != len(nv.pre_prepares) or any(
                type(a) is not PrePrepare or a != b for a, b in zip(nv.pre_prepares, expected)):
            self._n_invalid += 1
            logger.info("%s: rejected new-view %d from %s (wrong pre-prepares)",
                        self.me, nv.view, nv.sender)
            self._start_view_change(max(self.view, nv.view) + 1)
            return
        if any(not self._authentic(pp) for pp in nv.pre_prepares):
            self._n_invalid += 1
            return
        if nv.view > self.view:
            # we never sent a view change for this view; enter it directly
            self._n_vc += 1
            self.view = nv.view
            self._assigned.clear()
            self._inflight.clear()
        self._install_new_view(nv)

    def _install_new_view(self, nv: NewView) -> None:
        self._stop_timer()
        self.active = True
        self._new_view = nv
        self._n_nv += 1
        logger.info("%s: entered view %d (primary %s)", self.me, nv.view, nv.sender)
        best = max(nv.view_changes, key=lambda vc: vc.stable_seq)
        if best.stable_seq > self.low:
            self._make_stable(best.stable_seq, best.checkpoint_proof[0].state_digest,
                              best.checkpoint_proof)
        max_s = self.low
        for pp in nv.pre_prepares:
            max_s = max(max_s, pp.seq)
            if pp.seq <= self.low:
                continue
            slot = self._slot(nv.view, pp.seq)
            if slot.pre_prepare is None:
                if pp.sender == self.me:
                    slot.pre_prepare = pp
                    self._values[pp.digest] = pp.value
                    if pp.seq not in self._decided:
                        self._inflight.add(pp.seq)
                    self._assigned.add(pp.digest)
                    self._check_prepared(nv.view, pp.seq, slot)
                else:
                    self._accept_pre_prepare(slot, pp)
        # a new primary numbers from just above the new-view's pre-prepares: seqs it
        # proposed in an older view and that nobody prepared are free again
        self._next_seq = max_s + 1
        self._vcs = {v: d for v, d in self._vcs.items() if v > nv.view}
        buffered = self._buffer.pop(nv.view, [])
        self._recount_buffer()
        for msg in buffered:
            self._receive(msg)
        self._propose()


# --------------------------------------------------------------------------------------------
# Codec: plain dicts of str/int/bytes/list (msgpack-able), validated on the way in


def with_signature(msg: Message, signature: bytes) -> Message:
    """A copy of ``msg`` carrying ``signature`` (over :func:`signing_bytes` of ``msg``)."""
    cls = type(msg)
    vals = {f: getattr(msg, f) for f in cls.__dataclass_fields__}
    vals["signature"] = signature
    return cls(**vals)


_with_signature = with_signature  # older private name, kept for callers that used it


def encode(msg: Message) -> dict:
    """Encode a message as a dict of str/int/bytes/list/dict (msgpack-able)."""
    match msg:
        case PrePrepare(view=v, seq=n, digest=d, value=x, sender=s, signature=g):
            return {"t": "pp", "v": v, "n": n, "d": d, "x": x, "s": s, "g": g}
        case Prepare(view=v, seq=n, digest=d, sender=s, signature=g):
            return {"t": "p", "v": v, "n": n, "d": d, "s": s, "g": g}
        case Commit(view=v, seq=n, digest=d, sender=s, signature=g):
            return {"t": "c", "v": v, "n": n, "d": d, "s": s, "g": g}
        case Checkpoint(seq=n, state_digest=d, sender=s, signature=g):
            return {"t": "ck", "n": n, "d": d, "s": s, "g": g}
        case ViewChange(new_view=v, stable_seq=n, prepared=certs, sender=s,
                        checkpoint_proof=proof, missing=missing, signature=g):
            return {"t": "vc", "v": v, "n": n, "M": list(missing),
                    "P": [{"pp": encode(c.pre_prepare), "ps": [encode(p) for p in c.prepares]}
                          for c in certs],
                    "C": [encode(c) for c in proof], "s": s, "g": g}
        case NewView(view=v, view_changes=vcs, pre_prepares=pps, sender=s, signature=g):
            return {"t": "nv", "v": v, "V": [encode(x) for x in vcs],
                    "O": [encode(x) for x in pps], "s": s, "g": g}
        case CommitProof(seq=n, view=v, digest=d, value=x, commits=cs, sender=s, signature=g):
            return {"t": "cp", "n": n, "v": v, "d": d, "x": x,
                    "C": [encode(c) for c in cs], "s": s, "g": g}
    raise PbftError(f"cannot encode {type(msg).__name__}")


_KEYS = {
    "pp": {"t", "v", "n", "d", "x", "s", "g"},
    "p": {"t", "v", "n", "d", "s", "g"},
    "c": {"t", "v", "n", "d", "s", "g"},
    "ck": {"t", "n", "d", "s", "g"},
    "vc": {"t", "v", "n", "P", "C", "M", "s", "g"},
    "nv": {"t", "v", "V", "O", "s", "g"},
    "cp": {"t", "n", "v", "d", "x", "C", "s", "g"},
}


def _int(obj: dict, k: str) -> int:
    x = obj[k]
    if type(x) is not int or not (0 <= x <= INT_MAX):
        raise MalformedMessage(f"field {k!r} must be an int in [0, 2^63), got {x!r:.40}")
    return x


def _bytes(obj: dict, k: str, *, exact: Optional[int] = None, most: int = VALUE_BYTES_MAX) -> bytes:
    x = obj[k]
    if type(x) is not bytes:
        raise MalformedMessage(f"field {k!r} must be bytes")
    if exact is not None and len(x) != exact:
        raise MalformedMessage(f"field {k!r} must be {exact} bytes, got {len(x)}")
    if len(x) > most:
        raise MalformedMessage(f"field {k!r} longer than {most} bytes")
    return x


def _sender(obj: dict) -> MemberId:
    s = obj["s"]
    if type(s) is not str or not (1 <= len(s) <= MEMBER_ID_CHARS_MAX):
        raise MalformedMessage("sender must be a non-empty string of at most 256 chars")
    return MemberId(s)


def _list(obj: dict, k: str) -> list:
    x = obj[k]
    if type(x) not in (list, tuple) or len(x) > ITEMS_MAX:
        raise MalformedMessage(f"field {k!r} must be a list of at most {ITEMS_MAX} items")
    return list(x)


def decode(obj: object, *, value_bytes_max: int = VALUE_BYTES_MAX) -> Message:
    """Decode and validate a dict produced by :func:`encode`.

    Raises:
        MalformedMessage: on a wrong type, a missing or extra field, or a value out of bounds.
    """
    return _decode(obj, value_bytes_max, None)


def _decode(obj: object, vmax: int, want: Optional[str]):
    if not isinstance(obj, dict):
        raise MalformedMessage("a PBFT message must be a dict")
    t = obj.get("t")
    if t not in _KEYS:
        raise MalformedMessage(f"unknown message type {t!r:.40}")
    if want is not None and t != want:
        raise MalformedMessage(f"expected a {want!r} message, got {t!r}")
    if set(obj) != _KEYS[t]:
        raise MalformedMessage(f"{t!r} needs fields {sorted(_KEYS[t])}, got {sorted(map(str, obj))}")
    g = _bytes(obj, "g", most=SIGNATURE_BYTES_MAX)
    s = _sender(obj)
    if t == "pp":
        return PrePrepare(_int(obj, "v"), _int(obj, "n"), _bytes(obj, "d", exact=DIGEST_BYTES),
                          _bytes(obj, "x", most=vmax), s, g)
    if t == "p":
        return Prepare(_int(obj, "v"), _int(obj, "n"), _bytes(obj, "d", exact=DIGEST_BYTES), s, g)
    if t == "c":
        return Commit(_int(obj, "v"), _int(obj, "n"), _bytes(obj, "d", exact=DIGEST_BYTES), s, g)
    if t == "ck":
        return Checkpoint(_int(obj, "n"), _bytes(obj, "d", exact=DIGEST_BYTES), s, g)
    if t == "vc":
        certs = []
        for c in _list(obj, "P"):
            if not isinstance(c, dict) or set(c) != {"pp", "ps"}:
                raise MalformedMessage("a prepared certificate is {'pp': ..., 'ps': [...]}")
            certs.append(PreparedCert(_decode(c["pp"], vmax, "pp"),
                                      tuple(_decode(p, vmax, "p") for p in _list(c, "ps"))))
        proof = tuple(_decode(c, vmax, "ck") for c in _list(obj, "C"))
        missing = _list(obj, "M")
        if any(type(x) is not int or not (0 <= x <= INT_MAX) for x in missing):
            raise MalformedMessage("field 'M' must list sequence numbers")
        return ViewChange(_int(obj, "v"), _int(obj, "n"), tuple(certs), s, proof,
                          tuple(missing), g)
    if t == "nv":
        return NewView(_int(obj, "v"), tuple(_decode(x, vmax, "vc") for x in _list(obj, "V")),
                       tuple(_decode(x, vmax, "pp") for x in _list(obj, "O")), s, g)
    return CommitProof(_int(obj, "n"), _int(obj, "v"), _bytes(obj, "d", exact=DIGEST_BYTES),
                       _bytes(obj, "x", most=vmax),
                       tuple(_decode(c, vmax, "c") for c in _list(obj, "C")), s, g)


_I64 = struct.Struct("!q")
_I64x2 = struct.Struct("!qq")


def _ints(*xs) -> bytes:
    try:
        return _I64x2.pack(*xs) if len(xs) == 2 else _I64.pack(*xs)
    except struct.error as exc:
        raise PbftError(f"integer field out of range: {xs!r:.60}") from exc


def _blob(b: bytes) -> bytes:
    return len(b).to_bytes(4, "big") + b


def _name(s: str) -> bytes:
    if type(s) is not str:
        raise PbftError("sender must be a string")
    return _blob(s.encode())


def _nested(m) -> bytes:
    """A nested message inside a signed one: its own signing bytes and signature."""
    return _blob(_sb(m)) + _blob(m.signature)


def _sb(m) -> bytes:
    t = type(m)
    if t is Prepare or t is Commit:
        return (b"p" if t is Prepare else b"c") + _ints(m.view, m.seq) + _blob(m.digest) + _name(m.sender)
    if t is PrePrepare:
        # the value is bound through its digest: every receiver checks sha256(value) == digest
        return b"P" + _ints(m.view, m.seq) + _blob(m.digest) + _name(m.sender)
    if t is Checkpoint:
        return b"k" + _ints(m.seq) + _blob(m.state_digest) + _name(m.sender)
    if t is ViewChange:
        h = hashlib.sha256()
        for cert in m.prepared:
            h.update(b"C" + _nested(cert.pre_prepare) + len(cert.prepares).to_bytes(4, "big"))
            for p in cert.prepares:
                h.update(_nested(p))
        h.update(b"K" + len(m.checkpoint_proof).to_bytes(4, "big"))
        for ck in m.checkpoint_proof:
            h.update(_nested(ck))
        h.update(b"M" + len(m.missing).to_bytes(4, "big"))
        for n in m.missing:
            h.update(_ints(n))
        return b"v" + _ints(m.new_view, m.stable_seq) + _name(m.sender) + h.digest()
    if t is NewView:
        h = hashlib.sha256(len(m.view_changes).to_bytes(4, "big"))
        for vc in m.view_changes:
            h.update(_nested(vc))
        h.update(len(m.pre_prepares).to_bytes(4, "big"))
        for pp in m.pre_prepares:
            h.update(_nested(pp))
        return b"n" + _ints(m.view) + _name(m.sender) + h.digest()
    if t is CommitProof:
        h = hashlib.sha256(len(m.commits).to_bytes(4, "big"))
        for c in m.commits:
            h.update(_nested(c))
        return b"f" + _ints(m.seq, m.view) + _blob(m.digest) + _name(m.sender) + h.digest()
    raise PbftError(f"cannot sign {t.__name__}")


def signing_bytes(msg: Message) -> bytes:
    """The bytes a member signs for ``msg``: an unambiguous encoding of every field except
    the signature. Values are covered through their digest (receivers check
    ``sha256(value) == digest``); nested messages are covered with their own signatures, so
    a signature over a view change also covers the certificates it carries.

    Raises:
        PbftError: a field has an impossible type or an integer outside 64 bits.
    """
    return b"pbft2" + _sb(msg)
