"""Who gets a seat in a round: admission of proposals by the originator (issue 12).

Before this module the round's members were the first ``proposers_max`` proposals to
arrive: eight fresh identities answering instantly took 8 of 9 seats from five honest nodes
(an Ed25519 key costs nothing). The rules here are applied by the originator to every
proposal, before it may take a seat, and to the weights it puts into ``RoundStart``:

* **quarantined** peers (evidence of equivocation, forged signatures) never get a seat;
* with a **roster** (``--roster FILE``, :mod:`p2pmoa.roster`) only its peer ids get a seat;
* a peer is **established** once this node has judged its answers in at least
  ``history_min`` rounds (``TrustBook.history``: every member of a round rates every
  candidate, see :func:`observe_round`) and their average agreement with the reference
  candidates is at least ``max(quality_min, quality_ratio * median)`` (median over the
  peers judged as often); otherwise it is **new**;
* **bound on new identities**: once this node is out of bootstrap, new identities hold at
  most ``floor((k - 1) / 3)`` of the ``k = proposers_max`` seats of a round (the originator's
  own answer holds one of them) and vote with weight 0, so they are fewer than a third of
  the members, hold none of the weight, cannot be PBFT primary, and are no reference when
  candidates are ranked (:func:`weighted_centrality`). Established peers are never refused
  for lack of a seat taken by a new one. Speed buys nothing beyond the new seats.
* with a roster, every rostered peer counts as established (the mesh key vouches for it);
* **bootstrap**: a node that knows no established peer and has been connected to no peer
  for ``seniority_s`` (600 s) seats anyone it can: a fresh mesh has no history to tell an
  honest newcomer from a sybil. In a large mesh, where a node rarely judges the same peer
  three times, seniority ends bootstrap; its rounds then hold the known peers, at most
  ``floor((k - 1) / 3)`` unknown ones, and its own answer. An open mesh is therefore only
  as sybil-resistant as its history; a rostered (or ``--network-key`` private) mesh is not
  exposed at bootstrap either. docs/reliability.md states the bound.

Everything here is pure: no clock, no randomness.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Optional, Protocol, Sequence

import numpy as np



HISTORY_MIN = 3
"""Rounds in which a peer's answers were judged before it counts as established."""
QUALITY_MIN = 0.2
"""Answer quality (mean cosine agreement with the other candidates, clipped at 0) an
established peer must keep."""


class _Trust(Protocol):
    def is_quarantined(self, member: str) -> bool: ...

    def quality(self, member: str, score: float, now: float) -> None: ...

    def good(self, member: str, now: float) -> None: ...

    def bad(self, member: str, reason: str, now: float) -> None: ...

    def end_round(self, now: float) -> None: ...


def new_seats_max(k: int) -> int:
    """Seats of a ``k``-seat round (the originator's included) new identities may hold:
    ``floor((k - 1) / 3)``, strictly fewer than a third of the seats."""
    return max(0, k - 1) // 3


SENIORITY_S = 600.0
"""Seconds a peer must have been connected before it counts as known without history."""
FIRST_SEEN_MAX = 100_000


@dataclass(eq=False)
class SeatPolicy:
    """The originator's admission rule (see module doc).

    Args:
        history_min: rounds judged before a peer is established (default 3).
        roster: peer ids allowed to hold seats (None: open mesh).
        quality_min: answer quality a peer must keep to stay established (default 0.2): a
            newcomer whose answers agree with nobody's does not earn a seat by waiting.
        quality_ratio: ... and at least this share of the median quality of the peers
            judged ``history_min`` times (default 0.75): taking new seats for three rounds
            with answers nobody agrees with does not make an identity established.
        seniority_s: a node connected to some peer for at least this long (``connected``)
            is out of bootstrap even without history (default 600 s): in a large mesh a node
            rarely judges the same peer three times, so without this it would stay in
            bootstrap (seat anyone) for ever. Seniority gives no seat by itself.
    """

    history_min: int = HISTORY_MIN
    roster: Optional[frozenset] = None
    quality_min: float = QUALITY_MIN
    quality_ratio: float = 0.75
    seniority_s: float = SENIORITY_S
    first_seen: dict = field(default_factory=dict)

    def connected(self, peer: str, now: float) -> None:
        """Record the first time ``peer`` was connected (kept for the node's lifetime)."""
        if peer not in self.first_seen and len(self.first_seen) < FIRST_SEEN_MAX:
            self.first_seen[peer] = now

    def senior(self, peer: str, now: Optional[float]) -> bool:
        """Connected to this node for at least ``seniority_s``."""
        t = self.first_seen.get(peer)
        return now is not None and t is not None and now - t >= self.seniority_s

    def established(self, trust, peer: str, now: Optional[float] = None) -> bool:
        if self.roster is not None and peer in self.roster:
            return True  # the mesh key vouches for it (quarantine is checked apart)
        history = getattr(trust, "history", None)
        if history is None:  # a trust port without history: everyone counts as known
            return True
        if history(peer) < self.history_min:
            return False
        quality = getattr(trust, "answer_quality", None)
        if quality is None:
            return True
        return quality(peer) >= max(self.quality_min, self.quality_ratio * self._median(trust))

    def _median(self, trust) -> float:
        """Median answer quality of the peers this node has judged ``history_min`` times."""
        known = getattr(trust, "judged", None)
        if known is None:
            return 0.0
        qs = sorted(trust.answer_quality(p) for p in known(self.history_min))
        return qs[len(qs) // 2] if qs else 0.0

    def bootstrap(self, trust, peers: Iterable[str], now: Optional[float] = None) -> bool:
        """True while this node knows no established peer and has been connected to none of
        ``peers`` for ``seniority_s`` (a fresh mesh)."""
        return not any(self.established(trust, p, now) or self.senior(p, now) for p in peers)

    def refuse(self, trust, me: str, peer: str, seated: Sequence[str], k: int,
               known: Iterable[str], now: Optional[float] = None) -> Optional[str]:
        """Why ``peer`` may not take a seat now (None: it may).

        Args:
            trust: the node's trust port.
            me: the originator.
            peer: the proposer asking for a seat.
            seated: peers already holding a seat in this round.
            k: ``proposers_max`` of the round.
            known: peers this node is connected to (for the bootstrap rule).
            now: protocol time (for the seniority rule; None: history only).
        """
        if trust.is_quarantined(peer):
            return "seat_quarantined"
        if self.roster is not None and peer not in self.roster and peer != me:
            return "seat_not_in_roster"
        if peer == me or self.established(trust, peer, now):
            return None
        if self.bootstrap(trust, known, now):
            return None
        new = sum(1 for s in seated if s != me and not self.established(trust, s, now))
        if new >= new_seats_max(k):
            return "seat_new_identity_bound"
        return None

    def weights(self, trust, me: str, members: Sequence[str],
                weights: dict[str, int], now: Optional[float] = None,
                known: Iterable[str] = ()) -> dict[str, int]:
        """Round weights: new identities vote with weight 0 (outside bootstrap, judged over
        the members and the connected peers ``known``, as for the seats)."""
        if self.bootstrap(trust, [m for m in members if m != me] + list(known), now):
            return dict(weights)
        out = {m: (w if m == me or self.established(trust, m, now) else 0)
               for m, w in weights.items()}
        if not any(out.values()):
            return dict(weights)
        return out


def observe_round(trust: _Trust, me: str, proposers: Sequence[str], vectors,
                  chosen: str, now: float, silent: Iterable[str] = (),
                  policy: Optional["SeatPolicy"] = None) -> None:
    """What a node learns from a round it took part in, as originator *or member* (every
    member can compute it from the bundle): each candidate's closeness to the *reference*
    candidates (mean cosine similarity, clipped at 0: an unrelated answer scores 0, not the
    neutral 0.5) as its quality, a good event for the chosen proposer, a bad event for each
    member that stayed silent. References are this node's own answer and the established
    peers' (all candidates while none is established): newcomers cannot vouch for each
    other, so a crowd of identical sybil answers does not lift its own quality. A node whose
    answers are garbage loses score at every member within a few rounds, not only at
    originators whose judging finished in time.

    Why embedding closeness here while decisions use answer agreement (p2pmoa.agreement): this
    quality asks "does this node answer the question at all" (on topic vs garbage or unrelated
    text), which the embedding space separates well; it must not ask "did it give the winning
    answer", or on open-ended questions (where no two answers are canonically equivalent)
    every honest peer would score 0, none would become established, and rounds would shrink
    to the new-identity bound. Which answer wins is decided by agreement clusters."""
    if vectors is not None and len(proposers) == len(vectors) and len(proposers) >= 2:
        v = np.asarray(vectors, dtype=np.float64)
        ref = [i for i, p in enumerate(proposers)
               if p == me or policy is None or policy.established(trust, p, now)]
        if len(ref) < 2:
            ref = list(range(len(proposers)))
        sims = v @ v[ref].T
        for i, p in enumerate(proposers):
            if p == me:
                continue
            others = [j for j, r in enumerate(ref) if r != i]
            q = float(np.mean(sims[i, others])) if others else 0.0
            trust.quality(p, min(1.0, max(0.0, q)), now)
            if p == chosen:
                trust.good(p, now)
    for p in silent:
        if p != me:
            trust.bad(p, "silent_in_round", now)
    trust.end_round(now)
