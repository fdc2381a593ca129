"""Weighted quorums: the one place in the code base that decides whether a vote is won.

Written the way etcd-io/raft's ``quorum`` package writes it: a vote has three outcomes,
:attr:`VoteOutcome.PENDING`, :attr:`VoteOutcome.WON` and :attr:`VoteOutcome.LOST`. A vote is
*won* when the members voting yes weigh strictly more than ``threshold`` of the total weight,
*lost* when the members that voted no (or can no longer vote) leave too little weight for that,
and pending otherwise. PBFT's prepare/commit/view-change certificates, the peer protocol's
decision tally and the voting methods all ask :class:`Quorum` (``tests/test_layering.py``
checks that no other file writes the inequality).

Two thresholds matter in BFT: :data:`TWO_THIRDS` (a quorum: any two intersect in an honest
member when faulty weight is below one third) and :data:`ONE_THIRD` (a *weak* quorum: it
contains at least one honest member). Arithmetic is on integers (``3·w > 2·total``), never
floats.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Hashable, Iterable, Mapping

TWO_THIRDS = Fraction(2, 3)
ONE_THIRD = Fraction(1, 3)


class VoteOutcome(enum.Enum):
    PENDING = "pending"
    WON = "won"
    LOST = "lost"


Pending, Won, Lost = VoteOutcome.PENDING, VoteOutcome.WON, VoteOutcome.LOST


@dataclass(frozen=True)
class Quorum:
    """A fixed weighted membership and a threshold (strictly more than ``threshold`` wins)."""

    weights: Mapping[Hashable, int]
    threshold: Fraction = TWO_THIRDS

    def __post_init__(self) -> None:
        if not 0 <= self.threshold < 1:
            raise ValueError(f"threshold must be in [0, 1), got {self.threshold}")
        if any((not isinstance(w, int)) or isinstance(w, bool) or w < 0
               for w in self.weights.values()):
            raise ValueError("weights must be non-negative integers")
        total = sum(self.weights.values())
        object.__setattr__(self, "total", total)
        object.__setattr__(self, "_den", self.threshold.denominator)
        object.__setattr__(self, "_bar", self.threshold.numerator * total)

    total: int = field(init=False, default=0)
    _den: int = field(init=False, default=1, repr=False)
    _bar: int = field(init=False, default=0, repr=False)

    def reached(self, weight: int) -> bool:
        """True when ``weight`` is strictly more than ``threshold`` of the total weight."""
        return weight * self._den > self._bar

    def weight_of(self, members: Iterable[Hashable]) -> int:
        """The weight of ``members`` counted once each (non-members weigh nothing)."""
        w = self.weights
        return sum(w.get(m, 0) for m in set(members))

    def vote_result(self, voters: Mapping[Hashable, bool] | Iterable[Hashable]) -> VoteOutcome:
        """Won, lost or pending, given who voted yes (``True``) and no (``False``).

        ``voters`` is a mapping member -> vote, or an iterable of members that voted yes.
        """
        if isinstance(voters, Mapping):
            yes = [m for m, v in voters.items() if v]
            no = [m for m, v in voters.items() if not v]
        else:
            yes, no = list(voters), []
        if self.reached(self.weight_of(yes)):
            return Won
        if not self.reached(self.total - self.weight_of(no)):
            return Lost
        return Pending


def vote_result(weights: Mapping[Hashable, int], voters, *,
                threshold: Fraction = TWO_THIRDS) -> VoteOutcome:
    """:meth:`Quorum.vote_result` for a one-off membership."""
    return Quorum(weights, threshold).vote_result(voters)


__all__ = ["ONE_THIRD", "TWO_THIRDS", "Lost", "Pending", "Quorum", "VoteOutcome", "Won",
           "vote_result"]
