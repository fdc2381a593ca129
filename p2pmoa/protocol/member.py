"""Taking part in a round: accepting a ``RoundStart``, verifying and embedding the bundle,
handing the method's messages to the round class (:mod:`.rounds`), recording decisions.

A member verifies every proposal of the bundle itself (signature, query, proposer in the
round, one per proposer), embeds the candidate answers with ITS OWN embedder, judges them
(:class:`~.rounds.base.MemberRound`) and starts the method. Decisions are recorded here for
every role (PBFT members decide themselves; for the other methods the originator sends a
signed :class:`~p2pmoa.messages.Decision`). One originator may hold at most
``member_rounds_per_origin_max`` undecided rounds at this node (``member_rounds_cap``).
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np

from p2pmoa import agreement, seats
from p2pmoa.buffer import QueryState
from p2pmoa.effects import PeerId, QueryId
from p2pmoa.identity import Envelope
from p2pmoa.messages import AvgVector, Decision, FrameError, PbftWire, Proposal, RoundStart, ScoreVote

from .common import Job, JobKind, Phase, Step, Timer, TimerKind, digest
from .core import Core
from .rounds import ROUND_CLASSES, AveragingRound, Chosen, MemberRound, PbftRound

log = logging.getLogger("p2pmoa.protocol")


class Member(Core):
    def _on_round_start(self, s: Step, env: Envelope, rs: RoundStart) -> None:
        qid = rs.query_id
        if env.sender not in rs.members or self.me not in rs.members:
            self._reject("not_member")
            return
        self._ack(s, env, env.sender)
        d = self._decisions.get(qid)
        if d is not None:
            # the originator restarted and runs the round again: tell it what we decided
            self._count("round_after_decision")
            if d.method == "pbft" and d.query_id == qid:
                self._send_reliable(s, env.sender, d)
            return
        old = self._members.get(qid)
        if old is not None:
            if old.rs == rs:
                self._count("round_duplicate")
                return
            self._count("round_restarted")
            self._drop_member(s, qid)
        if rs.method == "aggregate":
            self._reject("bad_round")
            return
        busy = sum(1 for m in self._members.values()
                   if m.origin == env.sender and m.decision is None)
        if busy >= self.cfg.member_rounds_per_origin_max:
            self._reject("member_rounds_cap")  # one originator may not tie up all our work
            return
        self._member_start(s, rs, env.sender)

    def _drop_member(self, s: Step, qid: QueryId) -> None:
        m = self._members.pop(qid, None)
        kinds = m.timer_kinds if m is not None else ()
        for t in [t for t in self._timers.values() if t.query_id == qid and t.kind in kinds]:
            self._cancel_timer(s, t)

    def _member_start(self, s: Step, rs: RoundStart, origin: PeerId) -> MemberRound | None:
        qid = rs.query_id
        cands: list[tuple[bytes, Proposal]] = []
        seen: set[PeerId] = set()
        for frame in rs.bundle:
            try:
                env, p = self.reader.read_embedded(frame)
            except FrameError as exc:
                self._reject(f"bundle_{exc.reason}")
                self.trust.bad(origin, "bad_bundle", s.now)
                return None
            if (not isinstance(p, Proposal) or p.query_id != qid or p.proposer != env.sender
                    or p.proposer not in rs.members or p.proposer in seen):
                self._reject("bad_bundle")
                self.trust.bad(origin, "bad_bundle", s.now)
                return None
            seen.add(p.proposer)
            cands.append((frame, p))
        if not cands:
            self._reject("bad_bundle")
            return None
        cls = ROUND_CLASSES[rs.method]
        kw: dict[str, Any] = {}
        if cls is PbftRound:
            kw = {"limits": self.cfg.limits,
                  "msgs_per_member_max": self.cfg.pbft_msgs_per_member_max}
        elif cls is AveragingRound:
            kw = {"alpha": self.cfg.avg_alpha}
        m = cls(rs, origin, cands, self._question(qid), **kw)
        self._members[qid] = m
        self._proposal_in_round(s, qid)
        job = Job(JobKind.MEMB, qid)
        self.judge.started(job.id, len(m.texts), s.now)
        self._embed(s, job, tuple(m.texts))
        if origin != self.me:
            self._set_timer(s, Timer(TimerKind.EXPIRE, qid), rs.round_timeout_s * 2 + 5.0)
        return m

    def _question(self, qid: QueryId) -> str:
        for src in (self._origins.get(qid), self._answers.get(qid)):
            if src is not None:
                return src.ann.prompt
        rec = self.buffer.get(qid)
        return rec.announce.prompt if rec is not None else ""

    def _on_member_embedding(self, s: Step, qid: QueryId, v: np.ndarray) -> None:
        m = self._members.get(qid)
        if m is None:
            return
        if v.ndim != 2 or v.shape[0] != len(m.cands) or not np.all(np.isfinite(v)):
            self._count("memb_failed")
            self._members.pop(qid, None)
            return
        if self.cfg.rate_candidates and m.rates and self.cfg.fault != "garbage":
            m.unjudged = v  # judged once the own model has rated the candidates
            self._rate(s, Job(JobKind.RATE, qid), m.question,
                       tuple(agreement.answer_core(c, m.question, canonical=False) for c in m.canonical()))
            return
        self._judge_member(s, m, v, None)

    def _on_member_rated(self, s: Step, qid: QueryId, scores: Any) -> None:
        m = self._members.get(qid)
        if m is None or m.unjudged is None:
            return
        v, m.unjudged = m.unjudged, None
        ratings = None
        if scores is not None:
            try:
                ratings = [None if x is None else float(x) for x in scores]
            except (TypeError, ValueError):
                ratings = None
            if ratings is None or len(ratings) != len(m.cands) or any(
                    x is not None and not np.isfinite(x) for x in ratings):
                self._count("rate_failed")
                ratings = None
        self._judge_member(s, m, v, ratings)

    def _judge_member(self, s: Step, m: MemberRound, v: np.ndarray, ratings) -> None:
        qid = m.rs.query_id
        m.judge(v, self.trust.is_quarantined, self.cfg.top_k, ratings)
        o = self._origins.get(qid)
        if o is not None and o.judging and o.phase is Phase.ROUND:
            o.notes.append(f"judged {len(m.cands)} candidates {s.now - o.round_at:.1f}s "
                           "after the round started")
            self._finish_by_rank(s, o)
            return
        self._round_outcome(s, m, m.on_embedded(self._ctx(s)))

    def _round_outcome(self, s: Step, m: MemberRound, outcome: Any) -> None:
        """What a round class returned: a choice, or this originator's own score vote."""
        qid = m.rs.query_id
        match outcome:
            case None:
                return
            case ScoreVote(scores=scores):
                s.query_id = qid
                self._on_vote(s, self.me, scores)
            case Chosen() if isinstance(m, PbftRound):
                p = m.cands[outcome.index][1]
                d = Decision(qid, "pbft", p.answer, digest(p.answer), p.proposer, len(m.cands),
                             self._expected(m), outcome.view)
                self._record_decision(s, qid, m, d)
                if m.origin != self.me:
                    self._send_reliable(s, m.origin, d)
                else:
                    o = self._origins.get(qid)
                    if o is not None and o.phase is Phase.ROUND:
                        self._finish_origin(s, o, d)
            case Chosen():
                o = self._origins.get(qid)
                if o is not None and o.phase is Phase.ROUND:
                    if outcome.note:
                        o.notes.append(outcome.note)
                    self._origin_decides(s, o, m, outcome.index, m.rs.method)

    def _expected(self, m: MemberRound) -> int:
        o = self._origins.get(m.rs.query_id)
        return o.ann.proposers_max if o is not None else len(m.rs.members) - 1

    def _on_pbft(self, s: Step, env: Envelope, w: PbftWire) -> None:
        m = self._members.get(w.query_id)
        inner = w.body
        if getattr(inner, "sender", None) != env.sender:
            self._reject("pbft_sender_mismatch")
            self.trust.bad(env.sender, "pbft_sender_mismatch", s.now)
            return
        if not isinstance(m, PbftRound):
            self._reject("unknown_round")
            return
        self._round_outcome(s, m, m.on_wire(self._ctx(s), env.sender, inner))

    def _on_avg(self, s: Step, sender: PeerId, v: AvgVector) -> None:
        m = self._members.get(v.query_id)
        if not isinstance(m, AveragingRound):
            self._reject("unexpected_avg")
            return
        self._round_outcome(s, m, m.on_vector(self._ctx(s), sender, v))

    def _on_member_timer(self, s: Step, t: Timer) -> None:
        m = self._members.get(t.query_id)
        if m is not None and t.kind in m.timer_kinds:
            self._round_outcome(s, m, m.on_timer(self._ctx(s), t))

    # ------------------------------------------------------------------ decisions

    def _record_decision(self, s: Step, qid: QueryId, m: MemberRound | None, d: Decision) -> None:
        if qid in self._decisions:
            if self._decisions[qid].digest != d.digest:
                self._count("decision_conflict")
                log.error("query %s: conflicting decisions recorded", qid)
            return
        self._decisions[qid] = d
        if self.mem is not None:
            for sender, share in self.mem.awaiting(qid):
                self._memory_share_check(s, sender, share)
        self._done_order.append(qid)
        if m is not None:
            m.decision = d
            if qid not in self._origins and m.vectors is not None:
                # members judge the round too: one trust model everyone computes (issue 12)
                seats.observe_round(self.trust, self.me, m.proposers, m.vectors, d.chosen,
                                    s.now, policy=self.seats)
        self._count("decisions")
        log.info("query %s: decided %s (%s, view %d)", qid, d.digest.hex()[:12], d.method, d.view)
        if qid not in self._origins:
            self._answers.pop(qid, None)
            self._buffer_state(s, qid, QueryState.DONE, answer=d.answer)
        while len(self._done_order) > self.cfg.remember_max:
            old = self._done_order.pop(0)
            self._decisions.pop(old, None)
            self._members.pop(old, None)

    def _on_decision(self, s: Step, env: Envelope, d: Decision) -> None:
        qid = d.query_id
        if d.digest != digest(d.answer):
            self._reject("bad_decision")
            self.trust.bad(env.sender, "bad_decision", s.now)
            return
        o = self._origins.get(qid)
        if o is not None:
            self._on_member_decision(s, o, env, d)
            return
        m = self._members.get(qid)
        st = self._answers.get(qid)
        origin = m.origin if m is not None else (st.ann.origin if st is not None else None)
        if origin is None or env.sender != origin:
            if qid in self._decisions:
                self._ack(s, env, env.sender)
                return
            self._reject("unexpected_decision")
            return
        self._ack(s, env, env.sender)
        if d.method == "pbft":
            return  # PBFT members decide themselves
        if (m is not None and d.method != "aggregate"
                and all(p.answer != d.answer for _, p in m.cands)):
            self._reject("bad_decision")
            return
        self._record_decision(s, qid, m, d)
        self._cancel_timer(s, Timer(TimerKind.EXPIRE, qid))


__all__ = ["Member"]
