"""When the originator starts a query's aggregation round (issue 9): as soon as the answers
are in, not at the collection deadline.

Before, the round waited for ``proposers_max`` (default 8) proposals, so on a mesh of fewer
than 8 nodes every question waited the full 60 s deadline. Now the originator notes which
live peers it *invited* when it announced the query (the peers on the query topic that are
selected for it), and starts the round when the first of these holds:

* ``proposers_max`` proposals arrived (the cap; own answer included);
* every invited peer that is still alive has answered, by a proposal or a refusal (``Nack``),
  and the originator's own proposal is in;
* the collection deadline (``deadline_s``) passed: the round starts with what arrived.

``proposers_max`` itself defaults to the live peers: :func:`proposers_for` caps
``1 + len(invited)`` at the configured maximum, and that number goes on the wire in the
announce. This module decides *when*; which peers get seats is the protocol's business.

A query the asker capped (``UserQuery.proposers_max``, e.g. a cascade's cheap tier) invites
only that many proposers, the originator included: :func:`invitees` names them and the
announce carries the list (``QueryAnnounce.invited``), so the other peers do not generate.
Without a per-query cap every selected peer is invited, as before (the node's own cap keeps
its oversampling: extra answers cover slow or dead peers).

Pure and sans-I/O like the rest of p2pmoa: the protocol passes the live peer set and ids in.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Callable, Iterable

from p2pmoa.effects import PeerId


def proposers_for(live_invited: int, cap: int) -> int:
    """Proposals to collect for one query: this node plus its invited live peers, at most
    ``cap`` (and at least 1: a lone node answers itself)."""
    assert cap >= 1, "the proposers cap must be at least 1"
    return max(1, min(cap, 1 + live_invited))


def invitees(query_id: str, pool: Iterable[PeerId], n: int,
             established: Callable[[PeerId], bool]) -> tuple[PeerId, ...]:
    """The ``n`` peers of ``pool`` invited to answer a capped query, sorted.

    Established peers first (a new identity may be refused a seat in a small round,
    p2pmoa/seats.py, and its generation would be wasted), then by a hash of (query id, peer)
    so that capped queries spread over the mesh instead of always asking the same peers.
    """
    assert n >= 0, "cannot invite a negative number of peers"

    def rank(p: PeerId) -> tuple[bool, bytes]:
        return (not established(p), hashlib.sha256(f"{query_id}\x00{p}".encode()).digest())
    return tuple(sorted(sorted(pool, key=rank)[:n]))


@dataclass
class Attendance:
    """Who was asked to answer one query, and what became of them.

    Args:
        me: the originator.
        invited: live peers selected for the query when it was (re)announced.
    """

    me: PeerId
    invited: set[PeerId] = field(default_factory=set)
    answered: set[PeerId] = field(default_factory=set)
    refused: dict[PeerId, str] = field(default_factory=dict)
    late: set[PeerId] = field(default_factory=set)
    gone: set[PeerId] = field(default_factory=set)
    started_by: str = ""

    def invite(self, peers) -> None:
        """Add peers to the invitation (a re-announce invites peers that came up since)."""
        self.invited.update(p for p in peers if p != self.me)

    def waiting(self, live: set[PeerId]) -> set[PeerId]:
        """Invited peers still alive that have neither answered nor refused."""
        return (self.invited - self.answered - set(self.refused)) & live

    def should_start(self, n_proposals: int, proposers_max: int, live: set[PeerId]) -> str | None:
        """Why the round should start now (None: keep collecting). Pure decision."""
        if self.me in self.answered and not self.waiting(live):
            return "all_invited_answered"
        if n_proposals >= proposers_max:
            return "proposers_max"
        return None

    def close(self, why: str, live: set[PeerId]) -> None:
        """The round starts now (``why``): freeze who was late (invited, alive, no answer yet)
        and who was gone (invited, no answer, no longer alive)."""
        self.started_by = why
        silent = self.invited - self.answered - set(self.refused)
        self.late = silent & live
        self.gone = silent - live

    def report(self) -> dict:
        """The trace's view of the collection phase."""
        return {"invited": sorted(self.invited),
                "answered": sorted(self.answered - {self.me}),
                "refused": dict(sorted(self.refused.items())),
                "late": sorted(self.late),
                "gone": sorted(self.gone),
                "round_started_by": self.started_by}


__all__ = ["Attendance", "invitees", "proposers_for"]
