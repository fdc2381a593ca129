"""What a :class:`~consensus.pbft.replica.Replica` is built from and what it reports: the
checks on its constructor arguments (:func:`check_options`, raising
:class:`PbftConfigError`), its :class:`Counters` and the :class:`ReplicaStatistics`
snapshot."""
from __future__ import annotations

import math
from dataclasses import dataclass

from .group import Group
from .messages import MemberId, PbftConfigError


def always_valid(value: bytes) -> bool:
    """The default validity predicate: accept every proposed value."""
    return True


def _is_int(x) -> bool:
    return type(x) is int


def check_options(me, group: Group, *, validity, view_timeout_s, seq_max, sign, verify,
                  pending_max, buffer_max, unauthenticated) -> None:
    """Raise :class:`PbftConfigError` on any impossible or wrongly typed replica option
    (the group's own parameters are checked by :class:`Group`)."""
    if not isinstance(me, str) or me not in group.weights:
        raise PbftConfigError(f"{me!r:.60} is not a member")
    if (isinstance(view_timeout_s, bool) or not isinstance(view_timeout_s, (int, float))
            or not 0 < view_timeout_s < math.inf):
        raise PbftConfigError(f"view_timeout_s must be a positive finite number, got "
                              f"{view_timeout_s!r:.40}")
    if seq_max is not None and (not _is_int(seq_max) or seq_max < 1):
        raise PbftConfigError(f"seq_max must be None or an int >= 1, got {seq_max!r:.40}")
    for name, v in (("pending_max", pending_max), ("buffer_max", buffer_max)):
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


class Counters:
    """What a replica counts (messages received, ignored and why, view changes...)."""

    __slots__ = ("decided", "view_changes", "new_views", "received", "non_member", "invalid",
                 "stale", "equivocations", "bad_proposals", "refused")

    def __init__(self) -> None:
        self.decided = self.view_changes = self.new_views = self.received = 0
        self.non_member = self.invalid = self.stale = self.equivocations = 0
        self.bad_proposals = self.refused = 0

    def snapshot(self, me, view, active, primary, log, pending, buffered) -> ReplicaStatistics:
        return ReplicaStatistics(
            member=me, view=view, active=active, primary=primary, low_watermark=log.low,
            last_executed=log.last_executed, decided=self.decided, pending_requests=pending,
            view_changes_started=self.view_changes, new_views_installed=self.new_views,
            messages_received=self.received, ignored_non_member=self.non_member,
            ignored_invalid=self.invalid, ignored_stale=self.stale,
            equivocations=self.equivocations, invalid_proposals=self.bad_proposals,
            buffered=buffered, state_digest=log.state_digest,
            refused_unauthenticated=self.refused, values_held_bytes=log.values_held_bytes())
