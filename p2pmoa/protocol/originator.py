"""A query asked here: admission, the announce, collecting proposals, starting the round,
learning the decision, delivering the answer (or failing the query, always saying why).

Collection ends when every invited live peer answered or refused, when ``proposers_max``
proposals arrived, or at the collection deadline (:mod:`p2pmoa.round_start`). The round is
then sent to its members (``RoundStart`` with the bundle of signed proposal frames). The
decision comes from the round class of the method (:mod:`.rounds`); at the round deadline the
originator decides on its own ranking and says so in the trace.
"""
from __future__ import annotations

import logging

from p2pmoa import seats
from p2pmoa.buffer import Busy, QueryState
from p2pmoa.effects import Accepted, Broadcast, Deliver, Failed, PeerId, QueryId, Refused, Usage
from p2pmoa.identity import Envelope
from p2pmoa.messages import METHODS, Ack, Decision, Nack, Proposal, QueryAnnounce, RoundStart
from p2pmoa.round_start import invitees, proposers_for

from .common import Job, JobKind, Phase, Step, Timer, TimerKind, digest, selected
from .core import Core
from .events import UserQuery
from .rounds import AggregateRound, DecisionTally, MemberRound, VoteTally
from .state import Origin
from .trace import build_trace, usage_of

log = logging.getLogger("p2pmoa.protocol")

_ORIGIN_TIMERS = (TimerKind.ROUND, TimerKind.COLLECT, TimerKind.REANNOUNCE, TimerKind.JUDGE)


class Originator(Core):
    # ------------------------------------------------------------------ admission

    def _on_user_query(self, s: Step, e: UserQuery) -> None:
        method = e.method or self.cfg.method
        L = self.cfg.limits
        if (not isinstance(e.prompt, str) or not e.prompt.strip()
                or len(e.prompt.encode("utf-8", "surrogatepass")) > L.prompt_bytes_max
                or not isinstance(e.query_id, str) or not e.query_id
                or len(e.query_id.encode("utf-8", "surrogatepass")) > L.id_bytes_max):
            s.out.append(Refused(e.query_id, "invalid"))
            return
        if method not in METHODS:
            s.out.append(Refused(e.query_id, "invalid_method"))
            return
        ann = self._announce_of(e, method)
        if ann is None:
            s.out.append(Refused(e.query_id, "invalid_params"))
            return
        adm = self.buffer.admit(ann, local=True, now=e.now)
        if isinstance(adm, Busy):
            s.out.append(Refused(e.query_id, adm.reason, adm.retry_after_s))
            return
        s.out.append(Accepted(e.query_id))
        self._count("queries_accepted")
        if self.mem is not None and self.mem.wants_local_lookup(e.query_id, e.memory):
            self._mem_wait[e.query_id] = ann  # embed the query first: answer from memory?
            self._embed(s, Job(JobKind.QEMB, e.query_id), (e.prompt,))
            return
        self._start_origin(s, ann)

    def _announce_of(self, e: UserQuery, method: str) -> QueryAnnounce | None:
        """The signed announce's content: the query's generation parameters and deadline,
        clamped to this node's limits (None: a parameter of the wrong type)."""
        gp = self.cfg.gen_params
        try:
            tokens = gp.max_tokens if e.max_tokens is None else int(e.max_tokens)
            temp = gp.temperature if e.temperature is None else float(e.temperature)
            seed = gp.seed if e.seed is None else int(e.seed)
            deadline = (self.cfg.collect_timeout_s if e.deadline_s is None
                        else float(e.deadline_s))
            cap = (self.cfg.proposers_max if e.proposers_max is None
                   else max(1, min(int(e.proposers_max), self.cfg.proposers_max)))
        except (TypeError, ValueError):
            return None
        if not (temp == temp and deadline == deadline):  # NaN
            return None
        tokens = max(1, min(tokens, gp.max_tokens))
        temp = min(2.0, max(0.0, temp))
        seed = max(-(1 << 63), min(seed, (1 << 63) - 1))
        deadline = min(self.cfg.collect_timeout_s, max(0.1, deadline))
        pool = self._invitable(e.query_id, self.cfg.select_ppm)
        invited = None
        if e.proposers_max is not None and cap - 1 < len(pool):
            # a per-query cap: invite exactly cap - 1 peers, so only they generate
            invited = invitees(e.query_id, pool, cap - 1,
                               lambda p: self.seats.established(self.trust, p, e.now))
        n_max = proposers_for(len(pool if invited is None else invited), cap)
        return QueryAnnounce(e.query_id, self.me, e.prompt, method, e.now, deadline, n_max,
                             self.cfg.select_ppm, tokens, temp, seed, invited)

    def _start_origin(self, s: Step, ann: QueryAnnounce) -> None:
        frame, nonce = self._seal(s, ann)
        qid = ann.query_id
        o = self._origins[qid] = Origin(ann, nonce, s.now, self.me)
        o.att.invite(self._invited(ann))
        s.out.append(Broadcast(self.cfg.topic, frame))
        self._set_timer(s, Timer(TimerKind.COLLECT, qid), ann.deadline_s)
        if self.cfg.announce_repeats > 0:
            self._set_timer(s, Timer(TimerKind.REANNOUNCE, qid, arg=1),
                            ann.deadline_s / (self.cfg.announce_repeats + 1))
        log.info("query %s: announced (method %s)", qid, ann.method)
        self._start_answer(s, ann)

    def _invitable(self, qid: QueryId, select_ppm: int) -> set[PeerId]:
        """Live peers asked to answer ``qid`` (those the announce selects)."""
        return {p for p in self.peers if selected(qid, p, select_ppm)
                and not self.trust.is_quarantined(p)}

    def _invited(self, ann: QueryAnnounce) -> set[PeerId]:
        """Live peers the announce asks to answer: the selected ones, or its invitation
        list when the query was capped (``QueryAnnounce.invited``)."""
        pool = self._invitable(ann.query_id, ann.select_ppm)
        return pool if ann.invited is None else pool & set(ann.invited)

    # ------------------------------------------------------------------ collecting

    def _on_proposal(self, s: Step, env: Envelope, p: Proposal) -> None:
        qid = p.query_id
        if p.proposer != env.sender:
            self._reject("sender_mismatch")
            return
        o = self._origins.get(qid)
        if o is None:
            if qid in self._decisions:
                self._count("late_proposals")
                self._ack(s, env, env.sender)
                self._send(s, env.sender, Nack(qid, env.nonce, "decided"))
            else:
                self._reject("unknown_query")
            return
        self._ack(s, env, env.sender)
        if p.space_id != self.cfg.space_id:
            self._reject("space_mismatch")
            self.trust.bad(env.sender, "space_mismatch", s.now)
            return
        if o.phase is not Phase.COLLECT:
            have = o.proposals.get(p.proposer)
            if have is None:
                self._count("late_proposals")
                self._send(s, env.sender, Nack(qid, env.nonce, "late"))
            elif have[1] != p:
                self._quarantine(s, p.proposer, qid, "two proposals", have[0], s.frame)
                o.notes.append(f"{p.proposer} equivocated (two proposals): quarantined")
            return
        self.reader.remember_verified(s.frame, env, p)
        self._origin_add(s, env.sender, s.frame, p)

    def _origin_add(self, s: Step, sender: PeerId, frame: bytes, p: Proposal) -> None:
        o = self._origins.get(p.query_id)
        if o is None or o.phase is not Phase.COLLECT or sender in o.bad:
            return
        have = o.proposals.get(sender)
        if have is not None:
            if have[1] == p:
                self._count("proposal_duplicate")
                return
            # two different signed proposals from one key for one query: equivocation
            o.bad.add(sender)
            del o.proposals[sender]
            self._quarantine(s, sender, p.query_id, "two proposals", have[0], frame)
            o.notes.append(f"{sender} equivocated (two proposals): excluded and quarantined")
            return
        why = ("not_invited" if o.ann.invited is not None and sender != self.me
               and sender not in o.ann.invited else None)  # a capped query's seats are named
        why = why or self.seats.refuse(self.trust, self.me, sender, list(o.proposals),
                                       o.ann.proposers_max, self.peers, s.now)
        if why is not None:  # seats by trust, not by speed (p2pmoa/seats.py)
            self._reject(why)
            o.nacks.setdefault(sender, why)  # not "missing": it answered, it got no seat
            return
        o.proposals[sender] = (frame, p, s.now)
        self._count("proposals_received")
        o.att.answered.add(sender)
        self._maybe_start_round(s, o)

    def _maybe_start_round(self, s: Step, o: Origin) -> None:
        if o.phase is not Phase.COLLECT:
            return
        why = o.att.should_start(len(o.proposals), o.ann.proposers_max, self.peers)
        if why == "all_invited_answered" and not o.att.invited and o.ann.proposers_max > 1:
            # re-announced after a restart before any peer was seen: "everyone invited
            # answered" is vacuous; wait for the proposals the announce asked for (or the
            # deadline) instead of deciding on the own answer alone
            why = None
        if why is not None:
            o.att.close(why, self.peers)
            self._start_round(s, o)

    def _on_origin_timer(self, s: Step, t: Timer) -> None:
        o = self._origins.get(t.query_id)
        if o is None:
            return
        qid = t.query_id
        match t.kind:
            case TimerKind.COLLECT if o.phase is Phase.COLLECT:
                if not o.proposals and qid in self._answers and not o.collect_extended:
                    # nothing arrived, but the own answer is still being generated (a slow
                    # node alone): wait one more deadline for it rather than fail (issue 9)
                    o.collect_extended = True
                    o.notes.append("collection deadline with no proposal yet; own answer "
                                   f"still running: waiting {o.ann.deadline_s:.0f}s more")
                    self._set_timer(s, Timer(TimerKind.COLLECT, qid), o.ann.deadline_s)
                    return
                o.notes.append(f"collection deadline: {len(o.proposals)} of "
                               f"{o.ann.proposers_max} proposals arrived")
                o.att.close("deadline", self.peers)
                self._start_round(s, o, at_deadline=True)
            case TimerKind.REANNOUNCE if (o.phase is Phase.COLLECT
                                          and len(o.proposals) < o.ann.proposers_max):
                # gossip drops silently under load: say it again (peers de-duplicate)
                frame, o.ann_nonce = self._seal(s, o.ann)
                o.att.invite(self._invited(o.ann))
                s.out.append(Broadcast(self.cfg.topic, frame))
                self._count("reannounces")
                if t.arg < self.cfg.announce_repeats:
                    self._set_timer(s, Timer(TimerKind.REANNOUNCE, qid, arg=t.arg + 1),
                                    o.ann.deadline_s / (self.cfg.announce_repeats + 1))
            case TimerKind.ROUND if o.phase is Phase.ROUND:
                self._round_timeout(s, o)
            case TimerKind.JUDGE if o.phase is Phase.ROUND:
                self._finish_by_rank(s, o)

    # ------------------------------------------------------------------ the round

    def _start_round(self, s: Step, o: Origin, at_deadline: bool = False) -> None:
        qid = o.ann.query_id
        self._cancel_timer(s, Timer(TimerKind.COLLECT, qid))
        self._cancel_timer(s, Timer(TimerKind.REANNOUNCE, qid))
        props = {p: v for p, v in o.proposals.items() if p not in o.bad
                 and not self.trust.is_quarantined(p)}
        if not props:
            self._fail_origin(s, o, "no proposals arrived before the deadline")
            return
        o.phase = Phase.ROUND
        o.round_at = s.now
        # Only a peer silent until the deadline is penalised: when enough proposals arrived
        # early, a slower device (still generating) has done nothing wrong (issue 13).
        for peer in sorted(self.peers) if at_deadline else ():
            if (peer not in o.proposals and peer not in o.nacks
                    and selected(qid, peer, o.ann.select_ppm)
                    and (o.ann.invited is None or peer in o.ann.invited)):
                self.trust.bad(peer, "no_proposal", s.now)
                self._count("missing_proposals")
        members = tuple(sorted(set(props) | {self.me}))
        w = self.seats.weights(self.trust, self.me, members, self.trust.weights(list(members)),
                               s.now, self.peers)
        weights = tuple(max(0, int(w.get(m, 1))) for m in members)
        if sum(weights) <= 0:
            weights = tuple(1 for _ in members)
        bundle = tuple(props[p][0] for p in sorted(props))
        method = o.ann.method
        rs = RoundStart(qid, method, members, weights, bundle, self.cfg.round_timeout_s,
                        self.cfg.view_timeout_s, self.cfg.avg_rounds)
        o.round = rs
        if method in ("vote", "score"):
            o.ballots = VoteTally(rs)
        elif method == "pbft":
            o.reports = DecisionTally(rs)
        log.info("query %s: round %s with %d members, %d proposals", qid, method,
                 len(members), len(bundle))
        self._set_timer(s, Timer(TimerKind.ROUND, qid), self.cfg.round_timeout_s)
        if method == "aggregate":
            # the originator synthesises alone; members learn the decision afterwards
            m = self._member_start(s, rs, self.me)
            if isinstance(m, AggregateRound):
                msgs, params = m.request(o.ann, self.cfg.role, self.cfg.gen_params)
                self._generate_job(s, Job(JobKind.SYNTH, qid), msgs, params)
            return
        for peer in members:
            if peer != self.me:
                self._send_reliable(s, peer, rs)
        self._member_start(s, rs, self.me)

    def _on_vote(self, s: Step, sender: PeerId, scores: tuple[int, ...]) -> None:
        o = self._origins.get(s.query_id)
        if o is None or o.ballots is None or o.phase is not Phase.ROUND:
            self._reject("unexpected_vote")
            return
        if sender != self.me:
            self._send(s, sender, Ack(o.query_id, s.nonce))
        why = o.ballots.add(sender, scores)
        if why is not None:
            self._reject(why)
        elif o.ballots.complete:
            self._decide_vote(s, o)

    def _decide_vote(self, s: Step, o: Origin) -> None:
        m = self._members.get(o.query_id)
        got = o.ballots.decide() if m is not None else None
        if got is None:
            self._finish_by_rank(s, o)
            return
        idx, note = got
        o.notes.append(note)
        self._origin_decides(s, o, m, idx, o.round.method)

    def _on_member_decision(self, s: Step, o: Origin, env: Envelope, d: Decision) -> None:
        """A member reports its PBFT decision to us, the originator."""
        self._ack(s, env, env.sender)
        if o.round is None or env.sender not in o.round.members or d.method != "pbft":
            self._reject("unexpected_decision")
            return
        if o.phase is not Phase.ROUND or o.reports is None:
            return
        if all(p.answer != d.answer or p.proposer != d.chosen
               for _, p, _ in o.proposals.values()):
            self._reject("bad_decision")
            return
        n = o.reports.add(env.sender, d)
        if n is not None:
            o.notes.append(f"decision learned from members weighing > 1/3 ({n})")
            self._finish_origin(s, o, d)

    def _on_synthesis(self, s: Step, qid: QueryId, g) -> None:
        o = self._origins.get(qid)
        m = self._members.get(qid)
        if o is None or o.phase is not Phase.ROUND or not isinstance(m, AggregateRound):
            return
        self.buffer.record_generation_time(float(getattr(g, "llm_s", 0.0) or 0.0), s.now)
        d, note = m.decision_from(g, self.cfg.limits.answer_bytes_max, o.ann.proposers_max)
        o.notes.append(note)
        self._finish_origin(s, o, d, Usage(int(getattr(g, "prompt_tokens", 0) or 0),
                                           int(getattr(g, "completion_tokens", 0) or 0)))

    def _on_synthesis_failed(self, s: Step, qid: QueryId, err: str) -> None:
        o = self._origins.get(qid)
        if o is not None and o.phase is Phase.ROUND:
            o.notes.append(f"synthesis failed ({err[:80]}); fell back to medoid")
            self._finish_by_rank(s, o)

    # ------------------------------------------------------------------ ending

    def _origin_decides(self, s: Step, o: Origin, m: MemberRound, idx: int, method: str) -> None:
        p = m.cands[idx][1]
        d = Decision(o.query_id, method, p.answer, digest(p.answer), p.proposer,
                     len(m.cands), o.ann.proposers_max, 0)
        self._finish_origin(s, o, d)

    def _finish_by_rank(self, s: Step, o: Origin) -> None:
        qid = o.query_id
        m = self._members.get(qid)
        if m is not None and m.vectors is None and not o.judging:
            # still embedding the candidates (a busy CPU): wait a budget from measured
            # embedding times rather than fail a query the mesh is about to decide (issue 9)
            budget = self.judge.budget_s(len(m.cands))
            o.judging = True
            o.notes.append(f"still embedding {len(m.cands)} candidates: judging budget "
                           f"{budget:.1f}s (measured {self.judge.per_text_s:.2f}s per text)")
            self._count("judging_extended")
            self._set_timer(s, Timer(TimerKind.JUDGE, qid), budget)
            return
        if m is None or m.vectors is None:
            self._fail_origin(s, o, "the originator could not judge the candidates within its "
                                    "judging budget (embedding too slow or failed)")
            return
        self._origin_decides(s, o, m, m.rank[0], o.method())

    def _round_timeout(self, s: Step, o: Origin) -> None:
        o.notes.append(f"round timeout after {self.cfg.round_timeout_s:.1f}s: decided by the "
                       f"originator's own ranking (fallback)")
        self._count("round_timeouts")
        if o.ballots is not None and o.ballots.votes and o.query_id in self._members:
            self._decide_vote(s, o)
            return
        self._finish_by_rank(s, o)

    def _finish_origin(self, s: Step, o: Origin, d: Decision, usage: Usage | None = None) -> None:
        qid = o.query_id
        if o.phase is Phase.DONE:
            return
        o.phase = Phase.DONE
        m = self._members.get(qid)
        self._record_decision(s, qid, m, d)
        for kind in _ORIGIN_TIMERS:
            self._cancel_timer(s, Timer(kind, qid))
        if o.round is not None and d.method != "pbft":
            for peer in o.round.members:
                if peer != self.me:
                    self._send_reliable(s, peer, d)
        self._update_trust(s, o, m, d)
        trace = build_trace(o, m, d, self.me, s.now)
        if self.mem is not None:
            trace["memory"] = self._memory_decided(s, o, d)
        self._buffer_state(s, qid, QueryState.DONE, answer=d.answer)
        self._answers.pop(qid, None)
        self._origins.pop(qid, None)
        self._count("queries_decided")
        s.out.append(Deliver(qid, d.answer, trace, usage or usage_of(o, d)))

    def _fail_origin(self, s: Step, o: Origin, reason: str) -> None:
        qid = o.query_id
        o.phase = Phase.DONE
        for kind in _ORIGIN_TIMERS:
            self._cancel_timer(s, Timer(kind, qid))
        self._buffer_state(s, qid, QueryState.FAILED, detail=reason)
        self._origins.pop(qid, None)
        self._answers.pop(qid, None)
        if self.mem is not None:
            self.mem.forget_query(qid)
        self._count("queries_failed")
        log.info("query %s: failed: %s", qid, reason)
        s.out.append(Failed(qid, reason, {"query_id": qid, "notes": o.notes + [reason]}))

    def _update_trust(self, s: Step, o: Origin, m: MemberRound | None, d: Decision) -> None:
        if m is None or m.vectors is None:
            self.trust.end_round(s.now)
            return
        silent = ()
        if o.round is not None and o.round.method in ("pbft", "averaging"):
            silent = [p for p in o.round.members if p != self.me and p not in m.spoke]
        seats.observe_round(self.trust, self.me, m.proposers, m.vectors, d.chosen, s.now,
                            silent, self.seats)


__all__ = ["Originator"]
