"""The score-voting rounds, ``vote`` and ``score``.

Member side (:class:`VoteRound`): once the candidates are judged, the member scores each one
0..1000 — 900 × the weight share of its cluster of equivalent answers, plus up to 99: 99 × the
answer's likelihood share under this member's own model when it rated the candidates
(``rate_candidates``), else by its place in this member's order — and sends a :class:`~p2pmoa.messages.ScoreVote` to the
originator (reliably; an originator returns its own vote to the machine instead). In fault
mode ``garbage`` it scores at random.

Originator side (:class:`VoteTally`): owns the votes received; decides with
:mod:`consensus.voting` once every member voted (or at the round deadline with what arrived):

* ``vote``: :func:`consensus.voting.score_vote`, ``S(r) = Σ w_i s_i(r)``, ties to the lower
  candidate index (candidates are in bundle order, sorted by proposer id);
* ``score`` (leaderless scoring): :func:`consensus.voting.median_score_vote`, the
  trust-weighted coordinate median, robust to voters holding less than half the weight.
"""
from __future__ import annotations

from typing import ClassVar

from consensus import voting
from p2pmoa.effects import PeerId
from p2pmoa.messages import RoundStart, ScoreVote

from ..common import RoundContext
from .base import MemberRound


class VoteRound(MemberRound):
    method: ClassVar[str] = "vote"  # and "score": the member side is the same

    def scores(self, ctx: RoundContext) -> tuple[int, ...]:
        n = len(self.cands)
        if ctx.fault == "garbage":
            return tuple(ctx.rng.randint(0, 1000) for _ in range(n))
        share = self.support()
        lik = self.likelihood_shares()
        if lik:  # the own model's likelihood shares: summed over members, the answers the
            # members' models find most likely win between equally supported clusters (a rank
            # position would lose how much more likely: a second place for every model won)
            return tuple(int(round(900 * share[i] + 99 * lik[i])) for i in range(n))
        pos = {i: r for r, i in enumerate(self.rank)}
        return tuple(int(round(900 * share[i] + 99 * (n - 1 - pos[i]) / max(1, n - 1)))
                     for i in range(n))

    def on_embedded(self, ctx: RoundContext) -> ScoreVote | None:
        vote = ScoreVote(self.rs.query_id, self.scores(ctx))
        if self.origin == ctx.me:
            return vote  # the machine counts its own originator's vote directly
        ctx.send_reliable(self.origin, vote)
        return None


class VoteTally:
    """The originator's ballot box for one round."""

    def __init__(self, rs: RoundStart):
        self.rs = rs
        self.votes: dict[PeerId, tuple[int, ...]] = {}

    def add(self, sender: PeerId, scores: tuple[int, ...]) -> str | None:
        """Record a vote; returns a reject reason, or None. Duplicates are ignored."""
        if sender not in self.rs.members or len(scores) != len(self.rs.bundle):
            return "bad_vote"
        self.votes.setdefault(sender, tuple(scores))
        return None

    @property
    def complete(self) -> bool:
        return len(self.votes) == len(self.rs.members)

    def decide(self) -> tuple[int, str] | None:
        """(winning candidate index, note for the trace); None if no vote carries weight."""
        weight = dict(zip(self.rs.members, self.rs.weights))
        voters = sorted(self.votes)
        if not voters:
            return None
        scores = [self.votes[v] for v in voters]
        w = [float(weight.get(v, 0)) for v in voters]
        try:
            if self.rs.method == "score":
                res = voting.median_score_vote(scores, w)
                return res.winner, (f"score: {len(voters)} of {len(self.rs.members)} members "
                                    f"scored; weighted medians {[round(t, 3) for t in res.totals]}")
            res = voting.score_vote(scores, w)
        except voting.VotingError:
            return None
        return res.winner, (f"score vote: {len(voters)} of {len(self.rs.members)} members "
                            f"voted; weighted totals {[int(t) for t in res.totals]}")


__all__ = ["VoteRound", "VoteTally"]
