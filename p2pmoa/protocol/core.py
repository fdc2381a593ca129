"""The machine's shared base: its state tables and the small helpers every part uses
(counters, sealing and sending, reliable sends, timers, the round context).

:class:`~.machine.PeerProtocol` is built from this base and four parts, each in its own file
and importing only this one: :mod:`.proposer` (answering others' queries),
:mod:`.originator` (a query asked here, from announce to decision), :mod:`.member` (taking part
in a round, through the round classes of :mod:`.rounds`) and :mod:`.memory_hooks`. Every
handler receives the current :class:`~.common.Step` (time, effects, frame) as an argument.
"""
from __future__ import annotations

import logging
import random
from collections import deque
from typing import Any

from p2pmoa import quota, seats
from p2pmoa.buffer import MemoryStore, PromptBuffer, QueryState
from p2pmoa.effects import CancelTimer, Embed, Generate, PeerId, QueryId, Rate, Send, SetTimer
from p2pmoa.identity import FrameReader, Signer, Verifier, seal
from p2pmoa.judging import JudgeBudget
from p2pmoa.messages import Ack, Decision

from .common import Job, JobKind, RoundContext, Step, Timer, TimerKind
from .config import ProtocolConfig
from .retransmit import Retransmitter, RtxKey
from .rounds import MemberRound
from .rounds.pbft import verify_member
from .state import Answer, Origin
from .trust import TrustBookPort, TrustPort

log = logging.getLogger("p2pmoa.protocol")


class Core:
    """State tables and helpers (see the module docstring)."""

    def __init__(self, signer: Signer, verifier: Verifier, config: ProtocolConfig | None,
                 rng: random.Random, buffer: PromptBuffer | None, trust: TrustPort | None):
        self.signer = signer
        self.me: PeerId = signer.peer_id
        self.cfg = config or ProtocolConfig()
        self.rng = rng
        self.buffer = buffer if buffer is not None else PromptBuffer(MemoryStore())
        self.trust: TrustPort = trust if trust is not None else TrustBookPort()
        self.seats = seats.SeatPolicy(self.cfg.seat_history_min, self.cfg.roster,
                                      seniority_s=self.cfg.seat_seniority_s)
        self.quota = quota.QuotaPolicy()
        self.reader = FrameReader(verifier, limits=self.cfg.limits, skew_s=self.cfg.skew_s)
        self._verifier = verifier
        self.peers: set[PeerId] = set()
        self._origins: dict[QueryId, Origin] = {}
        self._answers: dict[QueryId, Answer] = {}
        self._members: dict[QueryId, MemberRound] = {}
        self._jobs: dict[str, Job] = {}
        self._timers: dict[str, Timer] = {}
        self.rtx = Retransmitter(self.cfg.retransmit_s, self.cfg.retransmits_max)
        self._decisions: dict[QueryId, Decision] = {}
        self._proposed: dict[QueryId, list] = {}  # qid -> [Proposal, acked_at or None]
        self._parked: dict[QueryId, Any] = {}  # strangers' queries after a restart
        self._evidence: deque[dict] = deque(maxlen=64)
        self._done_order: list[QueryId] = []
        self._rejects: dict[str, int] = {}
        self._n: dict[str, int] = {}
        self.judge = JudgeBudget(default_s=self.cfg.round_timeout_s)

    # ------------------------------------------------------------------ counters

    def _count(self, name: str, n: int = 1) -> None:
        self._n[name] = self._n.get(name, 0) + n

    def _reject(self, reason: str) -> None:
        self._rejects[reason] = self._rejects.get(reason, 0) + 1

    def _keep_evidence(self, s: Step, member: str, qid: QueryId, what: str, first: bytes,
                       second: bytes) -> None:
        self._evidence.append({"member": member, "query_id": qid, "what": what,
                               "first": first, "second": second, "at": s.now})

    def _quarantine(self, s: Step, member: str, qid: QueryId, what: str, first: bytes,
                    second: bytes) -> None:
        """Equivocation with the two signed items as evidence: quarantine ``member``."""
        self._keep_evidence(s, member, qid, what, first, second)
        if self.trust.is_quarantined(member):
            return
        self._reject("equivocation")
        self.trust.quarantine(member, f"{what} in {qid}", s.now)
        log.warning("query %s: %s equivocated (%s): quarantined", qid, member, what)

    # ------------------------------------------------------------------ sending

    def _seal(self, s: Step, msg) -> tuple[bytes, bytes]:
        nonce = self.rng.getrandbits(128).to_bytes(16, "little")
        return seal(self.signer, msg, now=s.now, nonce=nonce), nonce

    def _send(self, s: Step, peer: PeerId, msg) -> bytes:
        frame, nonce = self._seal(s, msg)
        s.touched.add(msg.query_id)
        s.out.append(Send(peer, frame))
        return nonce

    def _send_reliable(self, s: Step, peer: PeerId, msg) -> None:
        """Send with application-level ack; retransmit (re-sealed, fresh nonce) on timeout."""
        key = RtxKey(peer, msg.kind, msg.query_id)
        nonce = self._send(s, peer, msg)
        delay = self.rtx.track(key, msg, nonce)
        self._set_timer(s, self._rtx_timer(key), delay)

    @staticmethod
    def _rtx_timer(key: RtxKey) -> Timer:
        return Timer(TimerKind.RTX, key.query_id, f"{key.kind}:{key.peer}", key)

    def _stop_rtx(self, s: Step, key: RtxKey) -> None:
        if self.rtx.stop(key):
            self._cancel_timer(s, self._rtx_timer(key))

    def _on_rtx(self, s: Step, key: RtxKey) -> None:
        msg, exhausted = self.rtx.due(key)
        if exhausted:
            self._count("retransmit_exhausted")
        if msg is None:
            return
        nonce = self._send(s, key.peer, msg)
        self._count("retransmits")
        self._set_timer(s, self._rtx_timer(key), self.rtx.resent(key, nonce))

    def _ack(self, s: Step, env, peer: PeerId) -> None:
        self._send(s, peer, Ack(env.query_id, env.nonce))

    # ------------------------------------------------------------------ timers, jobs

    def _set_timer(self, s: Step, t: Timer, delay_s: float) -> None:
        s.timer_undo.setdefault(t.name, self._timers.get(t.name))
        s.touched.add(t.query_id)
        self._timers[t.name] = t
        s.out.append(SetTimer(t.name, max(0.0, delay_s)))

    def _cancel_timer(self, s: Step, t: Timer) -> None:
        name = t.name
        if name in self._timers:
            s.timer_undo.setdefault(name, self._timers[name])
            s.touched.add(t.query_id)
            del self._timers[name]
            s.out.append(CancelTimer(name))

    def _embed(self, s: Step, job: Job, texts: tuple[str, ...]) -> None:
        if job.kind is not JobKind.MEMS:
            s.touched.add(job.key)
        self._jobs[job.id] = job
        s.out.append(Embed(job.id, texts))

    def _rate(self, s: Step, job: Job, question: str, answers: tuple[str, ...]) -> None:
        s.touched.add(job.key)
        self._jobs[job.id] = job
        s.out.append(Rate(job.id, question, answers))

    def _generate_job(self, s: Step, job: Job, messages, params) -> None:
        s.touched.add(job.key)
        self._jobs[job.id] = job
        s.out.append(Generate(job.id, tuple(messages), params))

    def _buffer_state(self, s: Step, qid: QueryId, state: QueryState, **kw) -> None:
        if qid in self.buffer:
            self.buffer.set_state(qid, state, s.now, **kw)

    # ------------------------------------------------------------------ round context

    def _ctx(self, s: Step) -> RoundContext:
        return RoundContext(
            me=self.me, now=s.now, rng=self.rng, fault=self.cfg.fault,
            send=lambda peer, msg: self._send(s, peer, msg),
            send_reliable=lambda peer, msg: self._send_reliable(s, peer, msg),
            set_timer=lambda t, d: self._set_timer(s, t, d),
            cancel_timer=lambda t: self._cancel_timer(s, t),
            count=self._count, reject=self._reject,
            quarantine=lambda who, qid, what, a, b: self._quarantine(s, who, qid, what, a, b),
            is_quarantined=self.trust.is_quarantined,
            sign=self.signer.sign,
            verify=lambda sender, data, sig: verify_member(self._verifier, sender, data, sig))


__all__ = ["Core"]
