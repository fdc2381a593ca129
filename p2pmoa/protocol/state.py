"""Per-query records of the machine: :class:`Origin` (a query asked here) and :class:`Answer`
(a query this node answers). The round a node takes part in is a round class
(:mod:`.rounds`)."""
from __future__ import annotations

from typing import Any

from p2pmoa.effects import PeerId
from p2pmoa.messages import Proposal, QueryAnnounce, RoundStart
from p2pmoa.round_start import Attendance

from .common import Phase
from .rounds import DecisionTally, VoteTally


class Origin:
    """Originator-side state of one local query."""

    def __init__(self, ann: QueryAnnounce, ann_nonce: bytes, now: float, me: PeerId):
        self.ann = ann
        self.ann_nonce = ann_nonce
        self.started = now
        self.proposals: dict[PeerId, tuple[bytes, Proposal, float]] = {}
        self.bad: set[PeerId] = set()
        self.nacks: dict[PeerId, str] = {}
        self.phase = Phase.COLLECT
        self.round: RoundStart | None = None
        self.round_at = 0.0
        self.ballots: VoteTally | None = None      # vote / score
        self.reports: DecisionTally | None = None  # pbft: members' decisions
        self.notes: list[str] = []
        self.att = Attendance(me)
        self.judging = False  # round timer fired while the candidates were still embedding
        self.collect_extended = False  # deadline passed with only the own answer running

    @property
    def query_id(self):
        return self.ann.query_id

    @property
    def votes(self) -> dict:
        return self.ballots.votes if self.ballots is not None else {}

    def method(self) -> str:
        return self.round.method if self.round is not None else self.ann.method


class Answer:
    """Proposer-side state of one query this node answers."""

    def __init__(self, ann: QueryAnnounce):
        self.ann = ann
        self.generation: Any = None
        self.proposal: Proposal | None = None


__all__ = ["Answer", "Origin"]
