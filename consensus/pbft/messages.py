"""PBFT messages, events and domain outputs: the vocabulary every other module of
:mod:`consensus.pbft` speaks (it imports nothing of the package).

* limits (:data:`VALUE_BYTES_MAX`, :data:`ITEMS_MAX`...) and :func:`digest_of`;
* the seven wire messages (frozen; ``signature`` takes no part in equality or hashing);
* the events a :class:`~consensus.pbft.replica.Replica` consumes (:class:`Request`,
  :class:`Receive`, :class:`TimerExpired`) and its domain outputs (:class:`Decided`,
  :class:`EquivocationDetected`, :class:`StateTransferNeeded`); transport effects are the
  project's one vocabulary, :mod:`consensus.effects`.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import NewType, Union

from ..effects import Broadcast, CancelTimer, Send, SetTimer

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


def carries_others(msg) -> bool:
    """True for a message that embeds other members' messages (forgeable without hooks)."""
    t = type(msg)
    if t is CommitProof or t is NewView:
        return True
    return t is ViewChange and bool(msg.prepared or msg.checkpoint_proof)
