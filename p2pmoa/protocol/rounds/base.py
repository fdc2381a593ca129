"""What every aggregation round shares on the member side: the verified bundle and its judging.

A :class:`MemberRound` is created when a member accepts a :class:`~p2pmoa.messages.RoundStart`
(the originator creates its own). It holds the candidates (signed proposals of the bundle),
the member's OWN embeddings of them, and the judging of :mod:`p2pmoa.agreement`: candidates
ordered by answer agreement (heaviest cluster of equivalent canonical answers first, trust
weights of the proposers, 0 for an answer that states nothing; between equally supported
clusters, the member's own model's rating of the answers (``rate_candidates``), else
embedding centrality; inside a cluster a hash of (query, proposer) decides) and ``valid``,
the candidates a member accepts (the winning clusters; if no two answers agree, every stated
answer when rated, else the top-k by that order). The method subclasses (pbft, vote, averaging,
aggregate) add their own state and messages; outcomes go back to the machine as return
values (:class:`Chosen`, or a ``ScoreVote`` this node casts for itself), never by calling it.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from p2pmoa import agreement
from p2pmoa.effects import PeerId
from p2pmoa.messages import Proposal, RoundStart
from p2pmoa.moa import centrality

from ..common import RoundContext, Timer, TimerKind


@dataclass(frozen=True)
class Chosen:
    """The round chose candidate ``index`` (PBFT: in ``view``); ``note`` goes to the trace."""

    index: int
    view: int = 0
    note: str = ""


RATING_FLOOR = -50.0
"""Rating of an answer the model could not rate (mean log-probability per token; a real one is
rarely below -10)."""


class MemberRound:
    """Member-side state of one round (base class: judging only)."""

    method: ClassVar[str] = ""
    rates: ClassVar[bool] = True
    """With ``rate_candidates``, this method's members rate the candidates before judging."""
    timer_kinds: ClassVar[tuple[TimerKind, ...]] = ()

    def __init__(self, rs: RoundStart, origin: PeerId, cands: list[tuple[bytes, Proposal]],
                 question: str):
        self.rs = rs
        self.origin = origin
        self.cands = cands
        self.texts = [p.answer for _, p in cands]
        self.question = question
        self.vectors: np.ndarray | None = None  # set when judged
        self.unjudged: np.ndarray | None = None  # embedded, waiting for the own model's ratings
        self.rank: list[int] = []
        self.canon: list[str] = []
        self.clusters: list[agreement.Cluster] = []
        self.valid: set[int] = set()
        self.rated = False  # judged with this member's own model's ratings
        self.ratings: list[float] = []
        self.spoke: set[PeerId] = set()
        self.decision: Any = None  # the messages.Decision recorded for this round

    @property
    def query_id(self):
        return self.rs.query_id

    @property
    def proposers(self) -> list[PeerId]:
        return [p.proposer for _, p in self.cands]

    def canonical(self) -> list[str]:
        """Each candidate's canonical answer: the proposer's signed claim if its text states
        it, else this member's own extraction (computed once)."""
        if not self.canon:
            self.canon = [agreement.signed_canonical(p.canonical, p.answer, self.question)
                          for _, p in self.cands]
        return self.canon

    def judge(self, vectors: np.ndarray, is_quarantined, top_k: int,
              ratings: list[float | None] | None = None) -> None:
        """Order the bundle by answer agreement (see the module docstring); a proposer this
        node has quarantined weighs 0 and is never valid; an answer that states nothing
        (:func:`p2pmoa.agreement.states_answer`: an echo of the question) weighs 0.

        Args:
            ratings: this member's own model's rating of each canonical answer (higher = more
                likely; None for one it could not rate). Breaks ties between equally
                supported clusters; without ratings, embedding centrality does.
        """
        self.vectors = vectors
        qid = self.rs.query_id
        weight = dict(zip(self.rs.members, self.rs.weights))
        props = [p for _, p in self.cands]
        canon = self.canonical()
        fair = [hashlib.sha256(f"{qid}\x00{p.proposer}".encode()).digest() for p in props]
        bad = {i for i, p in enumerate(props) if is_quarantined(p.proposer)}
        w = agreement.answer_weights(canon, self.question, [
            0.0 if i in bad else float(weight.get(p.proposer, 0)) for i, p in enumerate(props)],
            canonical=False)
        if ratings is not None:
            tiebreak = [RATING_FLOOR if r is None else max(RATING_FLOOR, float(r)) for r in ratings]
            self.rated = True
            self.ratings = tiebreak
        else:
            tiebreak = list(centrality(vectors))
        rank, self.clusters = agreement.order_candidates(canon, self.question, w, tiebreak, fair)
        self.rank = [i for i in rank if i not in bad] + [i for i in rank if i in bad]
        if max(len(c.members) for c in self.clusters) > 1:
            self.valid = agreement.winning_members(self.clusters) - bad
        elif self.rated:
            # No two answers agree and members rate with different models: every stated answer
            # is acceptable (a top-k by one model's rating would differ between members and
            # stall PBFT); which one wins falls to the primary's / the voters' ratings.
            self.valid = {i for i, x in enumerate(w) if x > 0} - bad or set(self.rank[:1]) - bad
        else:
            k = top_k if top_k > 0 else max(1, math.ceil(len(self.cands) / 2))
            self.valid = set(self.rank[:k]) - bad

    def likelihood_shares(self) -> list[float]:
        """This member's ratings as shares of 1 (softmax of the mean log-probabilities per
        token): how much more likely its model finds one answer than another, not only which
        is first. Empty if the round was judged without ratings."""
        if not self.rated:
            return []
        top = max(self.ratings)
        ex = [math.exp(r - top) for r in self.ratings]
        total = math.fsum(ex)
        return [x / total for x in ex]

    def support(self) -> list[float]:
        """Each candidate's share of the judged weight (the weight of its cluster)."""
        total = sum(c.weight for c in self.clusters) or 1.0
        share = [0.0] * len(self.cands)
        for c in self.clusters:
            for i in c.members:
                share[i] = c.weight / total
        return share

    # --- what a method adds (the base class: nothing)

    def on_embedded(self, ctx: RoundContext) -> Any:
        """The candidates are embedded and judged: start the method. Returns an outcome."""
        return None

    def on_timer(self, ctx: RoundContext, t: Timer) -> Any:
        return None


__all__ = ["Chosen", "MemberRound"]
