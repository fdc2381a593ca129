"""PBFT (Castro & Liskov 1999) as a sans-I/O replica state machine with weighted quorums.

The package, one room per concern (each module imports only modules listed before it;
``tests/consensus/test_pbft_package.py`` checks that and the 700-line limit):

* :mod:`~consensus.pbft.messages` -- message dataclasses, events, domain outputs, limits;
* :mod:`~consensus.pbft.codec` -- ``encode``/``decode`` (strict), ``signing_bytes``, ``Auth``;
* :mod:`~consensus.pbft.group` -- membership, weights, quorums (via :mod:`consensus.quorum`),
  primary order, the log parameters every member shares;
* :mod:`~consensus.pbft.config` -- replica option checks, counters, statistics;
* :mod:`~consensus.pbft.certs` -- pure certificate checks (prepared certificate, checkpoint
  proof, view change, new view and its O-set, commit proof);
* :mod:`~consensus.pbft.log` -- slots, decisions, execution, checkpoints, watermarks;
* :mod:`~consensus.pbft.views` -- view-change votes, future-view buffer, view timer;
* :mod:`~consensus.pbft.catchup` -- answers to members that are behind;
* :mod:`~consensus.pbft.replica` -- the :class:`Replica` state machine wiring them.

Every public name is re-exported here: ``from consensus.pbft import Replica`` and
``pbft.X`` keep working.

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

from ..effects import MEMBERS, Broadcast, CancelTimer, Send, SetTimer
from .certs import (
    NewViewCheck, always_authentic, check_new_view, compute_new_view, valid_checkpoint_proof,
    valid_commit_proof, valid_prepared_cert, valid_view_change,
)
from .codec import Auth, decode, encode, signing_bytes, with_signature
from .group import Group, primary_order
from .log import Log, Slot
from .messages import (
    DIGEST_BYTES, INT_MAX, ITEMS_MAX, MEMBER_ID_CHARS_MAX, NULL_DIGEST, NULL_VALUE,
    SIGNATURE_BYTES_MAX, VALUE_BYTES_MAX, Checkpoint, Commit, CommitProof, Decided, Effect,
    EquivocationDetected, Event, MalformedMessage, MemberId, Message, NewView,
    PbftConfigError, PbftError, PreparedCert, PrePrepare, Prepare, Receive, Request,
    StateTransferNeeded, TimerExpired, ViewChange, digest_of,
)
from .config import ReplicaStatistics, always_valid
from .replica import Replica

__all__ = [
    "Auth", "CancelTimer", "Broadcast", "Checkpoint", "Commit", "CommitProof", "DIGEST_BYTES",
    "Decided", "Effect", "EquivocationDetected", "Event", "Group", "INT_MAX", "ITEMS_MAX",
    "Log", "MEMBERS", "MEMBER_ID_CHARS_MAX", "MalformedMessage", "MemberId", "Message",
    "NULL_DIGEST", "NULL_VALUE", "NewView", "NewViewCheck", "PbftConfigError", "PbftError",
    "PrePrepare", "Prepare", "PreparedCert", "Receive", "Replica", "ReplicaStatistics",
    "Request", "SIGNATURE_BYTES_MAX", "Send", "SetTimer", "Slot", "StateTransferNeeded",
    "TimerExpired", "VALUE_BYTES_MAX", "ViewChange", "always_authentic", "always_valid",
    "check_new_view", "compute_new_view", "decode", "digest_of", "encode", "primary_order",
    "signing_bytes", "valid_checkpoint_proof", "valid_commit_proof", "valid_prepared_cert",
    "valid_view_change", "with_signature",
]
