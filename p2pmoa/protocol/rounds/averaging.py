"""The averaging round: one :class:`consensus.averaging.AveragingNode` per member.

Owns: the averaging node (robust coordinate-median aggregator, trust weights of the other
members as neighbours), :class:`~p2pmoa.messages.AvgVector` messages that arrived before the
candidates were judged. The member starts from the vector of the candidate it judges best (its
largest agreeing cluster, then its own model's ratings) and runs at most ``avg_rounds``
rounds, so the agreed vector averages the members' judgements. Starting from its own
proposal instead, the agreed vector followed wording (replayed on 315 graded questions: 129
right against 143).

Handles: ``AvgVector`` (``on_vector``), its step timer (``TimerKind.AVG``). Emits, through the
:class:`~..common.RoundContext`: ``AvgVector`` sends to the other members (the node's
``Broadcast(MEMBERS, …)``), the step timer. Returns :class:`~.base.Chosen` at the originator
when the node finished (the answer is the candidate of a winning cluster nearest the agreed
vector); other members learn the originator's signed Decision.
"""
from __future__ import annotations

import logging
from typing import Any, ClassVar

import numpy as np

from consensus import averaging
from consensus.effects import MEMBERS, Broadcast, CancelTimer, SetTimer
from p2pmoa.effects import PeerId
from p2pmoa.messages import AvgVector, f32_to_vector, vector_to_f32

from ..common import RoundContext, Timer, TimerKind
from .base import Chosen, MemberRound

log = logging.getLogger(__name__)


class AveragingRound(MemberRound):
    method: ClassVar[str] = "averaging"
    timer_kinds = (TimerKind.AVG,)

    def __init__(self, *a, alpha: float, **kw):
        super().__init__(*a, **kw)
        self.alpha = alpha
        self.node: averaging.AveragingNode | None = None
        self.pending: list[tuple[PeerId, AvgVector]] = []

    def pick(self, vec) -> int:
        """The candidate of a winning cluster nearest the agreed vector."""
        valid = sorted(self.valid) or list(range(len(self.cands)))
        x = np.asarray(vec, np.float64)
        return max(valid, key=lambda i: (round(float(self.vectors[i].astype(np.float64) @ x), 9), -i))

    def on_embedded(self, ctx: RoundContext) -> Chosen | None:
        x0 = self.vectors[self.rank[0]].astype(np.float64)  # the answer this member judges best
        x0 = x0 / max(float(np.linalg.norm(x0)), 1e-12)
        neighbours = {p: float(w) for p, w in zip(self.rs.members, self.rs.weights) if p != ctx.me}
        try:
            self.node = averaging.AveragingNode(ctx.me, x0, neighbours, alpha=self.alpha,
                                                rounds_max=max(1, self.rs.avg_rounds),
                                                aggregator="median",
                                                round_timeout_s=self.rs.view_timeout_s)
        except averaging.AveragingError as exc:
            ctx.count("avg_failed")
            log.warning("query %s: cannot start averaging: %s", self.rs.query_id, exc)
            return None
        chosen = self._effects(ctx, self.node.start())
        pending, self.pending = self.pending, []
        for sender, v in pending:
            if chosen is None and not self.node.finished:
                chosen = self._feed(ctx, sender, v)
        return chosen

    def on_vector(self, ctx: RoundContext, sender: PeerId, v: AvgVector) -> Chosen | None:
        if sender not in self.rs.members:
            ctx.reject("unexpected_avg")
            return None
        self.spoke.add(sender)
        if self.node is None:
            if len(self.pending) < 4 * len(self.rs.members) * max(1, self.rs.avg_rounds):
                self.pending.append((sender, v))
            return None
        if self.node.finished:
            return None
        before = self.node.statistics().rejected
        chosen = self._feed(ctx, sender, v)
        if self.node.statistics().rejected > before:
            ctx.reject("bad_avg")
        return chosen

    def on_timer(self, ctx: RoundContext, t: Timer) -> Chosen | None:
        if self.node is None or self.node.finished:
            return None
        return self._effects(ctx, self.node.handle(averaging.RoundTimeout(t.arg)))

    def _feed(self, ctx: RoundContext, sender: PeerId, v: AvgVector) -> Chosen | None:
        vm = averaging.VectorMsg(sender, v.step, f32_to_vector(v.vector_f32), v.settled, v.final)
        try:
            effects = self.node.handle(averaging.NeighbourVector(vm))
        except averaging.AveragingError:
            ctx.reject("bad_avg")
            return None
        return self._effects(ctx, effects)

    def _effects(self, ctx: RoundContext, effects: list[Any]) -> Chosen | None:
        qid = self.rs.query_id
        chosen = None
        for eff in effects:
            match eff:
                case Broadcast(topic=topic, msg=vm) if topic == MEMBERS:  # every other member
                    vec = np.asarray(vm.vector, np.float64)
                    if ctx.fault == "garbage":
                        vec = -vec
                    out = AvgVector(qid, vm.round, vector_to_f32(vec), vm.settled, vm.final)
                    for peer in self.rs.members:
                        if peer != ctx.me:
                            ctx.send(peer, out)
                case SetTimer(name=averaging.RoundTimeout(round=r), delay_s=d):
                    ctx.set_timer(Timer(TimerKind.AVG, qid, arg=r), d)
                case CancelTimer():
                    ctx.cancel_timer(Timer(TimerKind.AVG, qid))
                case averaging.Finished(round=r, vector=vec, converged=conv):
                    ctx.cancel_timer(Timer(TimerKind.AVG, qid))
                    if self.origin == ctx.me:
                        chosen = Chosen(self.pick(vec), 0, (
                            f"averaging: {r} rounds ({'converged' if conv else 'round limit'}),"
                            f" {len(self.spoke)} of {len(self.rs.members) - 1} peers heard"))
        return chosen


__all__ = ["AveragingRound"]
