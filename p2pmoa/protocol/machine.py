"""The peer state machine of one node: intake, dispatch and the query lifecycle.

``PeerProtocol.handle(event) -> list[Effect]``. The daemon (node/) and the simulator
(simulations/) both drive this class; nothing in it does I/O, reads a clock or uses global
randomness. Time comes in every event (``now``), randomness from the ``random.Random`` passed
at construction. Each call builds a :class:`~.common.Step` (its time, its effects, the frame it
reads) that is passed down as an argument; nothing of one call stays on ``self``.

Where things live (see docs/protocol.md): events in :mod:`.events`, configuration in
:mod:`.config`, trust in :mod:`.trust`, acknowledgements and retries in :mod:`.retransmit`,
one class per aggregation method in :mod:`.rounds`, the trace in :mod:`.trace`, and the
machine's parts in :mod:`.proposer`, :mod:`.originator`, :mod:`.member`,
:mod:`.memory_hooks` (over :mod:`.core`).

Robustness: every frame goes through :class:`~p2pmoa.identity.FrameReader` (size, dedupe,
bounded decode, replay window, signature, schema). Every reject is counted by reason in
:meth:`PeerProtocol.statistics`; no input a peer can send raises out of :meth:`handle`.
A bad signature is blamed on the *transport* peer of a direct stream (authenticated by
Noise), never on the key the frame claims. Equivocation quarantines the signer.

Internal errors (bugs): with ``ProtocolConfig.strict`` (default; tests, simulator) they raise
out of ``handle``. Without it (the daemon) they are logged and counted as ``internal_error``;
the effects of the failed step are dropped, timer bookkeeping is rolled back, and only the query
the event concerned is failed cleanly (``Failed`` to a local asker, its state and timers gone).

Fault injection (tests and simulator only, off by default): ``fault="silent"`` sends
nothing; ``"garbage"`` proposes garbage answers, votes at random and as PBFT primary
proposes a value outside the bundle; ``"equivocate"`` sends two different proposals and a
conflicting twin of every PBFT message it sends.
"""
from __future__ import annotations

import logging
import random
from typing import Any

import numpy as np

from p2pmoa.buffer import PromptBuffer, QueryState
from p2pmoa.effects import Broadcast, Failed, QueryId, Send
from p2pmoa.identity import BadSignature, FrameError, Signer, Verifier
from p2pmoa.memory_share import MemoryAgent
from p2pmoa.messages import (Ack, AvgVector, Decision, Duplicate, MemoryShare, Nack, PbftWire,
                             Proposal, QueryAnnounce, Replayed, RoundStart, ScoreVote, StaleFrame)

from .common import JobKind, Phase, ProtocolStatistics, Step, Timer, TimerKind
from .config import ProtocolConfig
from .events import (EmbedDone, EmbedFailed, Event, FrameIn, GenerateDone, GenerateFailed,
                     PeerDown, PeerUp, RateDone, RateFailed, Started, TimerFired, UserQuery)
from .member import Member
from .memory_hooks import MemoryHooks
from .originator import Originator
from .proposer import Proposer
from .retransmit import RtxKey
from .trace import progress
from .trust import TrustPort

log = logging.getLogger("p2pmoa.protocol")

_ORIGIN_TIMER_KINDS = (TimerKind.COLLECT, TimerKind.REANNOUNCE, TimerKind.ROUND, TimerKind.JUDGE)
_MEMBER_TIMER_KINDS = (TimerKind.PBFT, TimerKind.PBFT_RESEND, TimerKind.AVG)


class _UnknownEvent(TypeError):
    """The driver passed something that is not an Event (a driver bug: raised, not hidden)."""


class PeerProtocol(Originator, Proposer, Member, MemoryHooks):
    """The peer state machine of one node.

    Args:
        signer: this node's identity (Ed25519Identity, or InsecureSimSigner in the simulator).
        verifier: signature checker matching the mesh's signers.
        config: protocol behaviour (see :class:`ProtocolConfig`).
        rng: source of nonces and fault-mode randomness (``random.SystemRandom()`` in the
            daemon, a seeded ``random.Random`` in the simulator and tests).
        buffer: the prompt buffer (default: 64 slots over a :class:`MemoryStore`).
        trust: trust book port (default :class:`TrustBookPort` over a fresh TrustBook).
        memory: a :class:`p2pmoa.memory.Memory` (None: no memory at all).

    Driving it: call :meth:`handle` with one event at a time, in the order the driver
    observes them, and execute the returned effects in order. ``Send``/``Broadcast`` carry
    ready signed frames (bytes). ``SetTimer(name, delay_s)`` replaces a pending timer of the
    same name; deliver ``TimerFired(name)`` when it expires unless cancelled. Results of
    ``Generate``/``Embed`` come back as ``GenerateDone``/``GenerateFailed``/``EmbedDone``/
    ``EmbedFailed`` with the same ``job_id``. Call ``Started`` once after (re)start.
    """

    def __init__(self, signer: Signer, verifier: Verifier, config: ProtocolConfig | None = None,
                 *, rng: random.Random, buffer: PromptBuffer | None = None,
                 trust: TrustPort | None = None, memory: Any = None):
        super().__init__(signer, verifier, config, rng, buffer, trust)
        self.mem = MemoryAgent(memory, self.me) if memory is not None else None
        self._mem_wait: dict[QueryId, QueryAnnounce] = {}
        log.info("peer %s ready (model %s, method %s%s)", self.me, self.cfg.model_id,
                 self.cfg.method, f", FAULT MODE {self.cfg.fault}" if self.cfg.fault else "")

    # ------------------------------------------------------------------ public API

    def handle(self, event: Event) -> list:
        """Apply one event; return the effects to execute, in order. Never raises on input;
        on an internal error raises (``strict``) or fails only the query concerned."""
        s = Step(event.now)
        try:
            self._dispatch(s, event)
        except _UnknownEvent:
            raise
        except Exception:
            if self.cfg.strict:
                raise
            log.exception("internal error on %s (query %s)", type(event).__name__, s.query_id)
            self._reject("internal_error")
            return self._recover(s)
        out = s.out
        if self.cfg.fault == "silent":
            out = [e for e in out if not isinstance(e, (Send, Broadcast))]
        return out

    def _dispatch(self, s: Step, event: Event) -> None:
        match event:
            case FrameIn():
                self._on_frame(s, event)
            case TimerFired(name=name):
                self._on_timer(s, name)
            case UserQuery():
                s.query_id = event.query_id
                self._on_user_query(s, event)
            case GenerateDone(job_id=job, generation=g):
                self._on_generate_done(s, job, g)
            case GenerateFailed(job_id=job, error=err):
                self._on_job_failed(s, job, f"generate: {err}")
            case EmbedDone(job_id=job, vectors=v):
                self._on_embed_done(s, job, v)
            case EmbedFailed(job_id=job, error=err):
                self._on_job_failed(s, job, f"embed: {err}")
            case RateDone(job_id=job, scores=sc):
                self._on_rate_done(s, job, sc)
            case RateFailed(job_id=job, error=err):
                self._on_rate_done(s, job, None, err)
            case PeerUp(peer=p):
                self.peers.add(p)
                self.seats.connected(p, event.now)
            case PeerDown(peer=p):
                self.peers.discard(p)
                for o in list(self._origins.values()):
                    s.query_id = o.query_id  # the query being worked on, if a bug strikes
                    self._maybe_start_round(s, o)  # the peer we waited for may be the one gone
            case Started():
                self._on_started(s)
            case _:
                raise _UnknownEvent(f"unknown event {type(event).__name__}")

    def _recover(self, s: Step) -> list:
        """After an internal error: drop the step's effects, undo its timer bookkeeping (the
        driver never saw those SetTimer/CancelTimer), then fail cleanly the query the event
        concerned and every query the step had emitted effects for (their dropped effects
        would otherwise leave them waiting for sends and timers that never happen)."""
        for name, owner in s.timer_undo.items():
            if owner is None:
                self._timers.pop(name, None)
            else:
                self._timers[name] = owner
        clean = Step(s.now)
        for qid in sorted(q for q in s.touched | {s.query_id} if q is not None):
            try:
                self._abandon(clean, qid)
            except Exception:  # noqa: BLE001 - the recovery must not take the node down
                log.exception("query %s: could not fail cleanly", qid)
        return clean.out

    def _abandon(self, s: Step, qid: QueryId) -> None:
        """Forget every piece of state of ``qid``; a local asker gets ``Failed``."""
        o = self._origins.pop(qid, None)
        rec = self.buffer.get(qid)
        asked_here = (o is not None or self._mem_wait.pop(qid, None) is not None
                      or (rec is not None and rec.local))
        self._answers.pop(qid, None)
        self._members.pop(qid, None)
        for name in [j for j, job in self._jobs.items() if job.key == qid]:
            del self._jobs[name]
        for t in [t for t in self._timers.values() if t.query_id == qid]:
            self._cancel_timer(s, t)
        for key in self.rtx.pending_for(qid):
            self.rtx.stop(key)
        if qid in self.buffer:
            self.buffer.set_state(qid, QueryState.FAILED, s.now, detail="internal error")
        if asked_here:  # the local asker must hear of it, whatever step the bug hit
            self._count("queries_failed")
            notes = (o.notes if o is not None else []) + ["internal error"]
            s.out.append(Failed(qid, "internal error", {"query_id": qid, "notes": notes}))

    def statistics(self) -> ProtocolStatistics:
        return ProtocolStatistics(
            peer_id=self.me, rejects=dict(self._rejects), counters=dict(self._n),
            active_queries=len(self._origins) + len(self._answers) + len(self._members),
            quarantined=tuple(sorted(getattr(self.trust, "quarantined", {}))),
            verifications=self.reader.verifications,
            decisions={q: (d.digest.hex(), d.answer) for q, d in self._decisions.items()})

    def evidence(self) -> list[dict]:
        """Recent equivocation evidence (newest last, at most 64): each entry names the
        member and query and holds the two conflicting *signed* items (whole proposal frames,
        or msgpack of the two PBFT messages with their round-bound signatures), so a third
        party can check the accusation."""
        return list(self._evidence)

    def is_open(self, query_id: QueryId) -> bool:
        """True while this node, as originator, still works on ``query_id`` (its timers
        guarantee a ``Deliver`` or ``Failed`` later)."""
        return query_id in self._origins

    def decision(self, query_id: QueryId) -> Decision | None:
        """The decision this node recorded for ``query_id`` (None if none yet)."""
        return self._decisions.get(query_id)

    def progress(self, query_id: QueryId, now: float | None = None) -> dict | None:
        """The live, partial trace of a query asked HERE while it is undecided (None once it
        is decided or unknown): phase, proposals so far (no answer text), round members and
        weights, votes so far, this node's PBFT view. ``now``: the driver's clock (default:
        the time of the query's latest proposal or round start). Read by the web page."""
        o = self._origins.get(query_id)
        if o is None:
            return None
        return progress(o, self._members.get(query_id), now)

    # ------------------------------------------------------------------ restart

    def _on_started(self, s: Step) -> None:
        """Resume unfinished buffered queries after a restart."""
        for rec in self.buffer.unfinished():
            qid = rec.query_id
            if qid in self._origins or qid in self._answers:
                continue
            a = rec.announce
            if rec.local:
                ann = QueryAnnounce(qid, self.me, a.prompt, a.method, s.now, a.deadline_s,
                                    a.proposers_max, a.select_ppm, a.max_tokens, a.temperature,
                                    a.seed, a.invited)
                self._count("recovered_local")
                log.info("query %s: recovered after restart, re-announcing", qid)
                self._buffer_state(s, qid, QueryState.RETRYING)
                self._start_origin(s, ann)
            elif self.trust.is_quarantined(a.origin):
                self.buffer.set_state(qid, QueryState.FAILED, s.now,
                                      detail="not resumed: originator quarantined")
                self._count("recovered_remote_refused")
            elif self._stranger(s, a.origin) and a.created_at + a.deadline_s > s.now:
                # a stranger's query is not resumed by itself: only if its originator
                # announces it again, through the admission rules (p2pmoa/quota.py)
                self._parked[qid] = a
                self._set_timer(s, Timer(TimerKind.PARKED, qid), a.created_at + a.deadline_s - s.now)
                self._count("recovered_remote_parked")
            elif a.created_at + a.deadline_s > s.now:
                self._count("recovered_remote")
                self._buffer_state(s, qid, QueryState.RETRYING)
                self._start_answer(s, a)
            else:
                self.buffer.set_state(qid, QueryState.FAILED, s.now, detail="expired")

    # ------------------------------------------------------------------ jobs

    def _on_generate_done(self, s: Step, job_id: str, g: Any) -> None:
        job = self._jobs.pop(job_id, None)
        s.query_id = job.key if job is not None else None
        if job is not None and job.kind is JobKind.SYNTH:
            self._on_synthesis(s, job.key, g)
        elif job is not None and job.kind is JobKind.GEN:
            self._on_generation(s, job.key, g)
        else:
            self._count("stale_job")

    def _on_rate_done(self, s: Step, job_id: str, scores: Any, err: str = "") -> None:
        """A member's ratings of its round's candidates (None, with ``err``, when its model could
        not rate them: the round is judged without ratings, never dropped)."""
        job = self._jobs.pop(job_id, None)
        if job is None or job.kind is not JobKind.RATE:
            self._count("stale_job")
            return
        s.query_id = job.key
        if scores is None:
            self._count("rate_failed")
            log.info("query %s: rating failed (%s); judged without ratings", job.key, err)
        self._on_member_rated(s, job.key, scores)

    def _on_embed_done(self, s: Step, job_id: str, vectors: Any) -> None:
        self.judge.finished(job_id, s.now)
        job = self._jobs.pop(job_id, None)
        try:
            v = np.asarray(vectors, dtype=np.float32)
        except Exception:  # noqa: BLE001 - a driver's garbage is a failed embedding
            v = np.zeros((0, 0), np.float32)
        if job is None:
            self._count("stale_job")
            return
        s.query_id = job.key if job.kind is not JobKind.MEMS else None
        if job.kind is JobKind.MEMB:
            self._on_member_embedding(s, job.key, v)
        elif job.kind in (JobKind.QEMB, JobKind.MEMS):
            self._memory_vector(s, job, v)
        else:
            self._count("stale_job")

    def _on_job_failed(self, s: Step, job_id: str, err: str) -> None:
        self.judge.finished(job_id, s.now, ok=False)
        job = self._jobs.pop(job_id, None)
        if job is None:
            return
        qid = job.key
        s.query_id = qid if job.kind is not JobKind.MEMS else None
        log.warning("query %s: %s job failed: %s", qid, job.kind.value, err)
        self._count(f"{job.kind.value}_failed")
        if job.kind is JobKind.GEN:
            self._answers.pop(qid, None)
            if qid not in self._origins:
                self._buffer_state(s, qid, QueryState.FAILED, detail=err[:200])
        elif job.kind is JobKind.MEMB:
            self._members.pop(qid, None)
        elif job.kind in (JobKind.QEMB, JobKind.MEMS):
            self._memory_vector(s, job, np.zeros((0, 0), np.float32))
        elif job.kind is JobKind.SYNTH:
            self._on_synthesis_failed(s, qid, err)

    # ------------------------------------------------------------------ frames in

    def _on_frame(self, s: Step, e: FrameIn) -> None:
        # Blame for undecodable or forged bytes goes to the transport peer only on a direct
        # stream, where it is certainly the author; a gossip frame may have been relayed by an
        # honest neighbour (drivers differ in what they report as the gossip peer).
        direct = e.topic is None
        if direct and e.peer != self.me and self.trust.is_quarantined(e.peer):
            self._reject("quarantined")  # no parsing, no crypto for a known forger
            return
        try:
            env, msg = self.reader.read(e.data, e.now)
        except FrameError as exc:
            self._reject(exc.reason)
            if not direct:
                return
            if isinstance(exc, BadSignature):
                self.trust.quarantine(e.peer, "forged signature", e.now)
                log.warning("peer %s sent a forged signature: quarantined", e.peer)
            elif not isinstance(exc, (Duplicate, Replayed, StaleFrame)):
                self.trust.bad(e.peer, exc.reason, e.now)
            return
        s.frame, s.nonce, s.query_id = e.data, env.nonce, msg.query_id
        sender = env.sender
        if sender == self.me:
            self._count("own_frames")
            return
        if (msg.kind == "announce") != (e.topic is not None):
            self._reject("wrong_channel")
            return
        if e.topic is not None and e.peer != sender:
            # gossip names its publisher (libp2p's signed ``from``): a relay may not inject
            # announces signed by other keys (p2pmoa/quota.py)
            self._reject("announce_publisher_mismatch")
            return
        if e.topic is not None and e.topic != self.cfg.topic:
            self._reject("wrong_topic")
            return
        if self.trust.is_quarantined(sender) and msg.kind not in ("pbft", "ack"):
            self._reject("quarantined")
            return
        self._count(f"in_{msg.kind}")
        match msg:
            case QueryAnnounce():
                self._on_announce(s, env, msg)
            case Proposal():
                self._on_proposal(s, env, msg)
            case Ack():
                self._on_ack(s, sender, msg)
            case Nack():
                self._on_nack(s, sender, msg)
            case RoundStart():
                self._on_round_start(s, env, msg)
            case PbftWire():
                self._on_pbft(s, env, msg)
            case ScoreVote():
                self._on_vote(s, sender, msg.scores)
            case AvgVector():
                self._on_avg(s, sender, msg)
            case Decision():
                self._on_decision(s, env, msg)
            case MemoryShare():
                s.query_id = None  # a share is about a finished query: nothing to fail
                self._on_memory_share(s, env, msg)

    def _on_ack(self, s: Step, sender, msg: Ack) -> None:
        key = self.rtx.key_of(msg.ref)
        if key is None or key.peer != sender:
            self._count("ack_unmatched")
            return
        if key.kind == "proposal" and key.query_id in self._proposed:
            self._proposed[key.query_id][1] = s.now
        self._stop_rtx(s, key)

    def _on_nack(self, s: Step, sender, msg: Nack) -> None:
        key = self.rtx.key_of(msg.ref)
        if key is not None and key.peer == sender:
            self._stop_rtx(s, key)
            if key.kind == "proposal":
                self._finish_answer(s, msg.query_id, QueryState.DONE, f"origin said {msg.reason}")
            return
        st = self._answers.get(msg.query_id)
        if st is not None and st.ann.origin == sender and msg.reason in ("late", "decided"):
            self._stop_rtx(s, RtxKey(sender, "proposal", msg.query_id))
            self._finish_answer(s, msg.query_id, QueryState.DONE, f"origin said {msg.reason}")
            return
        o = self._origins.get(msg.query_id)
        if o is not None and msg.ref == o.ann_nonce:
            o.nacks[sender] = msg.reason
            if o.phase is Phase.COLLECT:
                o.att.refused[sender] = msg.reason
                self._maybe_start_round(s, o)
            return
        self._count("nack_unmatched")

    # ------------------------------------------------------------------ timers

    def _on_timer(self, s: Step, name: str) -> None:
        t = self._timers.pop(name, None)
        if t is None:
            self._count("stale_timer")
            return
        s.query_id = t.query_id
        if t.kind in _ORIGIN_TIMER_KINDS:
            self._on_origin_timer(s, t)
        elif t.kind in _MEMBER_TIMER_KINDS:
            self._on_member_timer(s, t)
        elif t.kind is TimerKind.RTX:
            self._on_rtx(s, t.arg)
        elif t.kind is TimerKind.PARKED:
            if self._parked.pop(t.query_id, None) is not None:
                self.buffer.set_state(t.query_id, QueryState.FAILED, s.now,
                                      detail="not resumed: originator did not ask again")
        elif t.kind is TimerKind.EXPIRE:
            qid = t.query_id
            self._count("rounds_closed" if qid in self._decisions else "answers_expired")
            self._drop_member(s, qid)
            self._finish_answer(s, qid, QueryState.DONE, "no decision seen")


__all__ = ["PeerProtocol"]
