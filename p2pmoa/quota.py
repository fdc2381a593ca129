"""Work only for those entitled to ask: admission of *remote* queries (issue 12, finding 6).

Before: anyone could make every node work. Announces signed with fresh keys and relayed by
one peer were admitted and generated (``max_tokens`` 2000, ``deadline_s`` 3600), a local
user's query right after got 429, and the strangers' queries survived a restart and were
generated again. The rules, applied by :class:`~p2pmoa.protocol.PeerProtocol` to every
remote announce before the prompt buffer's own admission (``PromptBuffer.admit``: capacity,
stability bound, deadline), are:

* **publisher = signer**: a gossip frame names its publisher (libp2p pubsub's signed
  ``from``; the simulator and the in-memory mesh report the same), and an announce is taken
  only if its envelope is signed by that publisher. A relay cannot inject announces signed
  by other keys; to announce, a key has to be a libp2p peer of the mesh itself.
* **quarantined** originators (evidence of forgery or equivocation) get no work; with a
  roster, originators outside it get none either.
* **local reserve**: remote queries never occupy more than ``capacity - reserve`` buffer
  slots (``reserve = max(1, ceil(capacity * local_reserve))``, default a quarter), so the
  local user is never refused because of other people's queries.
* **per-originator quota**: one originator holds at most ``per_origin_share`` (default a
  quarter, at least 1) of the remote slots ``capacity - reserve``.
* **strangers**: an originator that is neither a connected peer nor established (see
  :mod:`p2pmoa.seats`) is a stranger; all strangers together hold at most
  ``strangers_share`` (default half, at least 1) of the remote slots, and a stranger's query
  is *not resumed after a restart* (it is marked failed): work for strangers is best effort.
* **bounded work**: a remote query is generated with at most this node's own
  ``max_tokens``.

Pure functions over the buffer's records; no clock, no randomness.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable, Optional


@dataclass(frozen=True)
class QuotaPolicy:
    """See the module doc.

    Args:
        per_origin_share: share of the remote slots one originator may hold (default 0.25).
        strangers_share: share of the remote slots all strangers together may hold (0.5).
        local_reserve: share of the buffer capacity kept for local queries (default 0.25).
    """

    per_origin_share: float = 0.25
    strangers_share: float = 0.5
    local_reserve: float = 0.25

    def reserve(self, capacity: int) -> int:
        """Buffer slots remote queries can never take (at least 1)."""
        return min(capacity, max(1, math.ceil(capacity * self.local_reserve)))

    def remote_slots(self, capacity: int) -> int:
        return capacity - self.reserve(capacity)

    def per_origin_max(self, capacity: int) -> int:
        return max(1, math.floor(self.remote_slots(capacity) * self.per_origin_share))

    def strangers_max(self, capacity: int) -> int:
        return max(1, math.floor(self.remote_slots(capacity) * self.strangers_share))

    def refuse_remote(self, origin: str, records: Iterable, capacity: int,
                      is_stranger: Callable[[str], bool], quarantined: bool,
                      roster: Optional[frozenset] = None) -> Optional[str]:
        """Why a remote announce from ``origin`` gets no work now (None: go on to the buffer).

        Args:
            records: the buffer's unfinished records (``.local``, ``.announce.origin``).
            capacity: the buffer's capacity.
            is_stranger: whether an originator is a stranger (module doc).
            quarantined: whether ``origin`` is quarantined.
            roster: peer ids allowed to ask (None: open mesh).
        """
        if quarantined:
            return "origin_quarantined"
        if roster is not None and origin not in roster:
            return "origin_not_in_roster"
        remote = [r for r in records if not r.local]
        if len(remote) >= self.remote_slots(capacity):
            return "local_reserve"
        if sum(1 for r in remote if r.announce.origin == origin) >= self.per_origin_max(capacity):
            return "origin_quota"
        if is_stranger(origin) and sum(1 for r in remote if is_stranger(r.announce.origin)) \
                >= self.strangers_max(capacity):
            return "strangers_quota"
        return None
