"""Answering other nodes' queries (and the originator's own answer): announce intake,
admission, the generation, the signed proposal and its retransmission.

A peer that receives an announce (and is selected by ``select_ppm``) buffers it, generates with
the query's own parameters (``max_tokens`` bounded by this node's limit, ``temperature``, a seed
derived from the query's and this node's id) and sends a signed
:class:`~p2pmoa.messages.Proposal` to the originator, reliably. The proposal carries no
embedding: every member embeds every candidate itself, in its own embedder (issue 10 dropped
the proposer's self-embedding, one model call on the critical path for nothing).
"""
from __future__ import annotations

import hashlib
import logging

from p2pmoa import agreement
from p2pmoa.buffer import Busy, QueryState
from p2pmoa.effects import ChatMessage, GenParams, PeerId, QueryId
from p2pmoa.identity import Envelope, decode_envelope
from p2pmoa.messages import Nack, Proposal, QueryAnnounce

from .common import Job, JobKind, Step, Timer, TimerKind, clip_utf8, selected
from .core import Core
from .retransmit import RtxKey
from .state import Answer

log = logging.getLogger("p2pmoa.protocol")


class Proposer(Core):
    def _start_answer(self, s: Step, ann: QueryAnnounce) -> None:
        qid = ann.query_id
        self._answers[qid] = Answer(ann)
        self._buffer_state(s, qid, QueryState.GENERATING)
        if self.mem is not None and ann.origin != self.me and self.mem.wants_peer_lookup(qid):
            self._embed(s, Job(JobKind.QEMB, qid), (ann.prompt,))  # our memory first
        else:
            self._generate(s, ann)
        remote_deadline = ann.created_at + ann.deadline_s + self.cfg.round_timeout_s * 2
        if ann.origin != self.me:
            self._set_timer(s, Timer(TimerKind.EXPIRE, qid), max(1.0, remote_deadline - s.now))

    def _generate(self, s: Step, ann: QueryAnnounce) -> None:
        tokens = ann.max_tokens if ann.origin == self.me else min(
            ann.max_tokens, self.cfg.gen_params.max_tokens)  # bounded work for others
        # each node samples with its own seed derived from the query's: two nodes with the same
        # model must not produce the same sample, or their "agreement" is one vote counted twice
        node_seed = int.from_bytes(
            hashlib.sha256(f"{ann.seed}\x00{self.me}".encode()).digest()[:4], "big")
        params = GenParams(max_tokens=tokens, temperature=min(2.0, ann.temperature),
                           top_p=self.cfg.gen_params.top_p, seed=node_seed & 0x7FFFFFFF)
        msgs = (self.mem.messages(ann.query_id, self.cfg.role, ann.prompt) if self.mem is not None
                else (ChatMessage("system", self.cfg.role), ChatMessage("user", ann.prompt)))
        self._generate_job(s, Job(JobKind.GEN, ann.query_id), msgs, params)

    def _on_generation(self, s: Step, qid: QueryId, g) -> None:
        """This node's answer is generated: sign it and propose it."""
        st = self._answers.get(qid)
        if st is None:
            self._count("stale_job")
            return
        self.buffer.record_generation_time(float(getattr(g, "llm_s", 0.0) or 0.0), s.now)
        text = str(getattr(g, "text", ""))
        if self.cfg.fault == "garbage":
            text = f"garbage {self.rng.getrandbits(64):016x} zzz qqq"
        text = clip_utf8(text, self.cfg.limits.answer_bytes_max)
        st.generation = g
        self._buffer_state(s, qid, QueryState.VOTING)
        prop = Proposal(qid, self.me, text, str(getattr(g, "model_id", self.cfg.model_id))[:100],
                        clip_utf8(self.cfg.role, self.cfg.limits.text_bytes_max),
                        self.cfg.space_id, b"",
                        int(getattr(g, "prompt_tokens", 0) or 0),
                        int(getattr(g, "completion_tokens", 0) or 0),
                        min(float(getattr(g, "llm_s", 0.0) or 0.0), 3600.0),
                        canonical=clip_utf8(agreement.canonical_answer(text), 512))
        st.proposal = prop
        self._proposed[qid] = [prop, None]
        while len(self._proposed) > self.cfg.remember_max:
            self._proposed.pop(next(iter(self._proposed)))
        origin = st.ann.origin
        self._count("proposals_made")
        if origin == self.me:
            frame, _ = self._seal(s, prop)
            self.reader.remember_verified(frame, decode_envelope(frame, self.cfg.limits), prop)
            self._origin_add(s, self.me, frame, prop)
            return
        self._send_reliable(s, origin, prop)
        if self.cfg.fault == "equivocate":
            twin = Proposal(qid, self.me, text + " Actually, the opposite is true.",
                            prop.model_id, prop.role, prop.space_id, prop.embedding_f32,
                            prop.prompt_tokens, prop.completion_tokens, prop.llm_s)
            self._send(s, origin, twin)

    # ---- announce (peer side)

    def _on_announce(self, s: Step, env: Envelope, ann: QueryAnnounce) -> None:
        qid = ann.query_id
        if ann.origin != env.sender:
            self._reject("sender_mismatch")
            return
        if ann.created_at + ann.deadline_s < s.now:
            self._reject("expired")
            return
        if qid in self._parked:
            self._resume_parked(s, ann)
            return
        mine = self._proposed.get(qid)
        if mine is not None:
            prop, acked_at = mine
            if ann.origin != self.me and (acked_at is None or acked_at < ann.created_at):
                # not acknowledged yet, or acknowledged by an earlier life of the originator
                self._count("proposal_resent")
                self._send_reliable(s, ann.origin, prop)
            return
        if qid in self._answers or qid in self.buffer or qid in self._decisions:
            self._count("announce_duplicate")
            return
        if not selected(qid, self.me, ann.select_ppm):
            self._count("not_selected")
            return
        if ann.invited is not None and self.me not in ann.invited:
            self._count("not_invited")  # a capped query: the originator asked others
            return
        why = self.quota.refuse_remote(ann.origin, self.buffer.unfinished(), self.buffer.capacity,
                                       lambda o: self._stranger(s, o),
                                       self.trust.is_quarantined(ann.origin), self.cfg.roster)
        if why is not None:
            self._reject(why)
            self._send(s, ann.origin, Nack(qid, env.nonce, why, self.cfg.collect_timeout_s))
            return
        adm = self.buffer.admit(ann, local=False, now=s.now)
        if isinstance(adm, Busy):
            self._count("announce_refused")
            self._send(s, ann.origin, Nack(qid, env.nonce, adm.reason, adm.retry_after_s))
            return
        self._start_answer(s, ann)

    def _resume_parked(self, s: Step, ann: QueryAnnounce) -> None:
        """The originator of a query parked at restart announced it again: resume it if the
        admission rules still allow (else it fails now)."""
        qid = ann.query_id
        parked = self._parked.pop(qid)
        self._cancel_timer(s, Timer(TimerKind.PARKED, qid))
        others = [r for r in self.buffer.unfinished() if r.query_id != qid]
        why = self.quota.refuse_remote(parked.origin, others, self.buffer.capacity,
                                       lambda o: self._stranger(s, o),
                                       self.trust.is_quarantined(parked.origin), self.cfg.roster)
        if why is not None:
            self._reject(why)
            self.buffer.set_state(qid, QueryState.FAILED, s.now, detail=f"not resumed: {why}")
            return
        self._count("recovered_remote")
        self._start_answer(s, parked)

    def _stranger(self, s: Step, origin: PeerId) -> bool:
        """Neither a connected peer nor established here (see p2pmoa/quota.py)."""
        return origin not in self.peers and not self.seats.established(self.trust, origin, s.now)

    def _finish_answer(self, s: Step, qid: QueryId, state: QueryState, detail: str = "") -> None:
        self._answers.pop(qid, None)
        self._cancel_timer(s, Timer(TimerKind.EXPIRE, qid))
        if qid not in self._origins:
            self._buffer_state(s, qid, state, detail=detail)

    def _proposal_in_round(self, s: Step, qid: QueryId) -> None:
        """Our proposal made it into a round: stop retransmitting it."""
        st = self._answers.get(qid)
        if st is not None:
            self._stop_rtx(s, RtxKey(st.ann.origin, "proposal", qid))


__all__ = ["Proposer"]
