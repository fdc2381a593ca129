"""The peer protocol: one sans-I/O state machine per node, ``handle(event) -> list[Effect]``.

The daemon (node/) and the simulator (simulations/) both drive this class; nothing in it does
I/O, reads a clock or uses global randomness. Time comes in every event (``now``, seconds),
randomness from the ``random.Random`` passed at construction (nonces, garbage in fault mode).

Query path (Distributed MoA, Mitra et al. 2024; see docs/protocol.md for the diagram):

1. ``UserQuery`` at the *originator*: admitted to the prompt buffer (durably, before
   ``Accepted`` is returned), then ``Broadcast(QUERY_TOPIC, QueryAnnounce)``; the originator
   also answers the query itself.
2. Every peer that receives the announce (and is selected by ``select_ppm``) buffers it,
   emits ``Generate`` (system message = its role), then ``Embed`` of its answer, and sends a
   signed :class:`~p2pmoa.messages.Proposal` to the originator (acknowledged, retransmitted
   with back-off up to ``retransmits_max`` times, de-duplicated at the receiver).
3. When every invited live peer has answered (or refused), or ``proposers_max`` proposals
   arrived, or at the collection deadline with what arrived (:mod:`p2pmoa.round_start`;
   ``proposers_max`` of a query = the live invited peers + 1, capped), the originator starts the aggregation round: ``RoundStart`` carries the bundle of signed
   proposal frames to every member (originator + proposers). Each member verifies every
   proposal itself, embeds the candidate answers with ITS OWN embedder, ranks them by
   centrality, and then, by method:

   * ``pbft``: one :class:`consensus.pbft.Replica` per query (``seq_max=1``), weights fixed
     by the originator from its trust book; value = ``msgpack([query_id, proposer,
     sha256(answer)])``; validity = "this candidate is in the bundle and among my top-k by my
     own centrality". A primary proposing anything else is voted down by a view change.
   * ``vote``: each member sends a :class:`ScoreVote`; the originator sums trust-weighted
     scores ``S(r) = Σ w_i s_i(r)``.
   * ``score`` (leaderless scoring): the same score vectors, aggregated by the trust-weighted
     coordinate median over members (robust to members holding < 1/2 of the weight).
   * ``averaging``: each member runs a :class:`consensus.averaging.AveragingNode` (robust
     coordinate-median aggregator, trust weights) over :class:`AvgVector` messages for at
     most ``avg_rounds`` rounds; the answer is the candidate nearest the agreed vector.
   * ``aggregate``: the originator's model synthesises an answer from the bundle.

4. The decision is recorded by every member (PBFT members decide themselves; for the other
   methods the originator sends a signed :class:`Decision`), the originator emits
   ``Deliver(query_id, answer, trace)``; the trace says how many proposals arrived in time.

Robustness: every frame goes through :class:`~p2pmoa.identity.FrameReader` (size, dedupe,
bounded decode, replay window, signature, schema). Every reject is counted by reason in
:meth:`PeerProtocol.statistics`; no input a peer can send raises out of :meth:`handle`.
A bad signature is blamed on the *transport* peer (``FrameIn.peer``, authenticated by Noise
or gossipsub's signed source), never on the key the frame claims, so nobody can get an
honest peer quarantined by forging its name. Equivocation (two different signed proposals,
or two conflicting PBFT messages for one slot) quarantines the signer.

Fault injection (tests and simulator only, off by default): ``fault="silent"`` sends
nothing; ``"garbage"`` proposes garbage answers, votes at random and as PBFT primary
proposes a value outside the bundle; ``"equivocate"`` sends two different proposals and a
conflicting twin of every PBFT message it sends.
"""
from __future__ import annotations

import hashlib
import logging
import math
import random
from collections import deque
from dataclasses import KW_ONLY, dataclass, field
from typing import Any, Protocol, Sequence, Union

import numpy as np

from consensus import averaging, pbft, voting
from consensus.quorum import ONE_THIRD, Quorum, Won
from consensus.trust import TrustBook
from p2pmoa import quota, seats
from p2pmoa.buffer import Busy, MemoryStore, PromptBuffer, QueryState
from p2pmoa.effects import (
    Accepted,
    Failed,
    Refused,
    Broadcast,
    CancelTimer,
    ChatMessage,
    Deliver,
    Embed,
    GenParams,
    Generate,
    PeerId,
    QueryId,
    Send,
    SetTimer,
)
from p2pmoa.memory_share import MemoryAgent, MemoryHooks
from p2pmoa import agreement
from p2pmoa.moa import aggregate_messages, centrality
from p2pmoa.judging import JudgeBudget
from p2pmoa.round_start import Attendance, proposers_for
from p2pmoa.identity import (
    Envelope,
    FrameReader,
    Signer,
    Verifier,
    decode_envelope,
    public_key_from_peer_id,
    seal,
)
from p2pmoa.messages import (
    DEFAULT_LIMITS,
    METHODS,
    QUERY_TOPIC,
    Ack,
    AvgVector,
    BadSignature,
    Decision,
    Duplicate,
    FrameError,
    MemoryShare,
    Limits,
    Nack,
    PbftWire,
    Proposal,
    QueryAnnounce,
    Replayed,
    RoundStart,
    ScoreVote,
    StaleFrame,
    encode_body,
    f32_to_vector,
    pack,
    unpack_bounded,
    vector_to_f32,
)

log = logging.getLogger(__name__)

FAULTS = (None, "silent", "garbage", "equivocate")


class _UnknownEvent(TypeError):
    """The driver passed something that is not an Event (a driver bug: raised, not hidden)."""


# --------------------------------------------------------------------------- events


@dataclass(frozen=True)
class UserQuery:
    """A local user asks ``prompt`` (the API or CLI chose ``query_id``, unique per node).
    ``memory=False``: the client forbids memory for this query (``"p2pmoa": {"memory": "off"}``):
    no answer from memory, no retrieved notes, nothing stored or shared."""

    query_id: QueryId
    prompt: str
    method: str | None = None
    _: KW_ONLY
    now: float
    memory: bool = True


@dataclass(frozen=True)
class FrameIn:
    """Bytes from ``peer`` (the transport-authenticated sender: stream remote peer, or the
    gossipsub message source). ``topic`` is the gossip topic, or None for a direct stream."""

    peer: PeerId
    topic: str | None
    data: bytes
    _: KW_ONLY
    now: float


@dataclass(frozen=True)
class TimerFired:
    name: str
    _: KW_ONLY
    now: float


@dataclass(frozen=True)
class GenerateDone:
    """Result of ``Generate(job_id)``: a ``p2pmoa.llm.Generation`` (text, prompt_tokens,
    completion_tokens, llm_s, model_id)."""

    job_id: str
    generation: Any
    _: KW_ONLY
    now: float


@dataclass(frozen=True)
class GenerateFailed:
    job_id: str
    error: str
    _: KW_ONLY
    now: float


@dataclass(frozen=True, eq=False)
class EmbedDone:
    """Result of ``Embed(job_id)``: (n, dim) float32 array, rows L2-normalised."""

    job_id: str
    vectors: Any
    _: KW_ONLY
    now: float


@dataclass(frozen=True)
class EmbedFailed:
    job_id: str
    error: str
    _: KW_ONLY
    now: float


@dataclass(frozen=True)
class PeerUp:
    peer: PeerId
    _: KW_ONLY
    now: float


@dataclass(frozen=True)
class PeerDown:
    peer: PeerId
    _: KW_ONLY
    now: float


@dataclass(frozen=True)
class Started:
    """The driver (re)started the machine: unfinished buffered queries are resumed."""

    _: KW_ONLY
    now: float


Event = Union[UserQuery, FrameIn, TimerFired, GenerateDone, GenerateFailed, EmbedDone,
              EmbedFailed, PeerUp, PeerDown, Started]


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class ProtocolConfig:
    """Everything a node decides about its own protocol behaviour.

    Args:
        role: system message this node's model answers in (its MoA role).
        model_id: the local model's id (goes into proposals and traces).
        space_id: the mesh embedding space; proposals in another space are refused.
        method: default aggregation method for local queries (pbft/averaging/vote/aggregate).
        topic: gossip topic of query announcements.
        collect_timeout_s: how long the originator waits for proposals (default 20 s).
        round_timeout_s: how long the aggregation round may take before the originator
            decides on its own judgement and says so in the trace (default 15 s).
        view_timeout_s: PBFT view-change timeout (default 2 s, doubles per view change).
        proposers_max: cap on the proposals collected per query, own included (default 8);
            a query asks for ``min(cap, 1 + live invited peers)`` (p2pmoa/round_start.py).
        select_ppm: share of peers asked to answer, parts per million (default all).
        retransmit_s: first retransmission delay of unacknowledged frames (default 1 s,
            doubling each time).
        retransmits_max: retransmissions before giving up (default 4).
        skew_s: accepted clock skew / replay window (default 30 s).
        gen_params: sampling parameters for this node's generations.
        top_k: PBFT validity: a candidate is acceptable if among the top-k by the replica's
            own centrality (0 = half of the candidates, rounded up).
        avg_rounds: most averaging rounds (default 6); avg_alpha: step size α (default 0.5).
        limits: wire limits.
        fault: fault-injection mode (None = honest; "silent", "garbage", "equivocate").
        remember_max: finished queries remembered in memory for de-duplication (default 1024).
        pbft_msgs_per_member_max: PBFT messages accepted from one member in one round
            (default 256; more is a flood and is dropped).
        announce_repeats: times the originator re-broadcasts its announce while proposals
            are missing, evenly spread over the collection window (default 2).
        seat_history_min: rounds a peer's answers must have been judged before it is
            established; until then it holds one of at most ``(k-1)//3`` new seats and weight
            0 (see p2pmoa/seats.py; default 3).
        seat_seniority_s: a node connected to a peer this long is out of seat bootstrap
            even without history (default 600 s; see p2pmoa/seats.py).
        roster: peer ids allowed to hold seats (None: open mesh; see p2pmoa/roster.py).
    """

    role: str = "You are a helpful assistant. Answer briefly."
    model_id: str = "unknown"
    space_id: str = "unknown"
    method: str = "pbft"
    topic: str = QUERY_TOPIC
    collect_timeout_s: float = 20.0
    round_timeout_s: float = 15.0
    view_timeout_s: float = 2.0
    proposers_max: int = 8
    select_ppm: int = 1_000_000
    retransmit_s: float = 1.0
    retransmits_max: int = 4
    skew_s: float = 30.0
    gen_params: GenParams = field(default_factory=GenParams)
    top_k: int = 0
    avg_rounds: int = 6
    avg_alpha: float = 0.5
    limits: Limits = DEFAULT_LIMITS
    fault: str | None = None
    remember_max: int = 1024
    pbft_msgs_per_member_max: int = 256
    announce_repeats: int = 2
    seat_history_min: int = seats.HISTORY_MIN
    seat_seniority_s: float = seats.SENIORITY_S
    roster: frozenset | None = None

    def __post_init__(self):
        assert self.method in METHODS, f"method must be one of {METHODS}"
        assert self.fault in FAULTS, f"fault must be one of {FAULTS}"
        assert 1 <= self.proposers_max < self.limits.members_max, "proposers_max out of range"
        assert self.retransmits_max >= 0 and self.retransmit_s > 0


# --------------------------------------------------------------------------- trust


class TrustPort(Protocol):
    """What the protocol needs from a trust book (consensus.trust.TrustBook via an adapter)."""

    def good(self, member: str, now: float) -> None: ...

    def bad(self, member: str, reason: str, now: float) -> None: ...

    def quality(self, member: str, score: float, now: float) -> None: ...

    def quarantine(self, member: str, evidence: str, now: float) -> None: ...

    def is_quarantined(self, member: str) -> bool: ...

    def weights(self, members: Sequence[str]) -> dict[str, int]: ...

    def score(self, member: str) -> float: ...

    def end_round(self, now: float) -> None: ...


class TrustBookPort:
    """:class:`consensus.trust.TrustBook` behind :class:`TrustPort` (the default).

    Events go to the book as they happen; the book's epoch is closed after every round this
    node decided as originator, so weights move once per round (down at once, up slowly, capped
    share; see consensus.trust). Evidence (equivocation, forged signature) blocks the member
    locally at once, drops its frames and zeroes its weight in rounds started from now on; the
    book quarantines it for good at the next epoch.

    Args:
        book: an existing book (e.g. ``TrustBook.from_dict`` of the persisted state).
    """

    def __init__(self, book: TrustBook | None = None):
        self.book = book if book is not None else TrustBook()
        self.blocked: dict[str, str] = {}

    def good(self, member, now):
        self.book.record_good(member)

    def bad(self, member, reason, now):
        self.book.record_bad(member)

    def quality(self, member, score, now):
        self.book.record_quality(member, min(1.0, max(0.0, float(score))))

    def quarantine(self, member, evidence, now):
        self.blocked.setdefault(member, str(evidence)[:200])
        self.book.record_evidence(member, evidence)

    def is_quarantined(self, member):
        return member in self.blocked or self.book.is_quarantined(member)

    def weights(self, members):
        w = self.book.weights(members)
        for m in w:
            if m in self.blocked:
                w[m] = 0
        if w and not any(w.values()):
            return {m: 1 for m in w}
        return w

    def score(self, member):
        return 0.0 if member in self.blocked else self.book.score(member)

    def history(self, member) -> int:
        """Rounds in which ``member``'s answers were judged here (see p2pmoa/seats.py)."""
        return self.book.history(member)

    def answer_quality(self, member) -> float:
        """``member``'s answer-quality average in [0, 1] (see p2pmoa/seats.py)."""
        return self.book.quality(member)

    def members(self) -> list[str]:
        """Every peer this node holds trust state for (sorted)."""
        return sorted(set(self.book.members()) | set(self.blocked))

    def judged(self, history_min: int) -> list[str]:
        """Members judged in at least ``history_min`` rounds (see p2pmoa/seats.py)."""
        return self.book.judged(history_min)

    def end_round(self, now):
        self.book.close_epoch()

    @property
    def quarantined(self) -> dict[str, str]:
        q = {m: e.reason for m, e in self.book._m.items() if e.quarantined}  # noqa: SLF001
        q.update(self.blocked)
        return q

    def to_dict(self) -> dict:
        """Persistable state (JSON/msgpack-able)."""
        return {"book": self.book.to_dict(), "blocked": dict(self.blocked)}

    @classmethod
    def from_dict(cls, d: dict) -> "TrustBookPort":
        port = cls(TrustBook.from_dict(d["book"]))
        port.blocked.update({str(k): str(v) for k, v in dict(d.get("blocked", {})).items()})
        return port


# --------------------------------------------------------------------------- statistics


@dataclass(frozen=True)
class ProtocolStatistics:
    """Frozen snapshot of a node's protocol counters.

    ``rejects`` counts dropped inputs by reason (metric label); ``counters`` counts protocol
    events; ``decisions`` maps query id -> (digest hex, answer) recorded by this node.
    """

    peer_id: PeerId
    rejects: dict
    counters: dict
    active_queries: int
    quarantined: tuple
    verifications: int
    decisions: dict


# --------------------------------------------------------------------------- internal state


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


def _clip_utf8(text: str, max_bytes: int) -> str:
    b = text.encode("utf-8", "surrogatepass")
    if len(b) <= max_bytes:
        return text
    return b[:max_bytes].decode("utf-8", "ignore")


def selected(query_id: str, peer: str, select_ppm: int) -> bool:
    """Deterministic sampling of proposers: does ``peer`` answer ``query_id``?"""
    if select_ppm >= 1_000_000:
        return True
    h = hashlib.sha256(f"{query_id}\x00{peer}".encode()).digest()
    return int.from_bytes(h[:8], "big") % 1_000_000 < select_ppm


def ranking(vectors: np.ndarray) -> list[int]:
    """Candidate indices by decreasing centrality; ties to the lower index."""
    c = centrality(vectors)
    return sorted(range(len(c)), key=lambda i: (-round(float(c[i]), 6), i))


class _Origin:
    """Originator-side state of one local query."""

    def __init__(self, ann: QueryAnnounce, ann_nonce: bytes, now: float):
        self.ann = ann
        self.ann_nonce = ann_nonce
        self.started = now
        self.proposals: dict[PeerId, tuple[bytes, Proposal, float]] = {}
        self.bad: set[PeerId] = set()
        self.nacks: dict[PeerId, str] = {}
        self.phase = "collect"  # collect -> round -> done
        self.round: RoundStart | None = None
        self.round_at = 0.0
        self.votes: dict[PeerId, tuple[int, ...]] = {}
        self.tally: dict[bytes, dict[PeerId, Decision]] = {}
        self.synth_job: str | None = None
        self.notes: list[str] = []
        self.att: Attendance | None = None
        self.judging = False  # round timer fired while the own embedding was still running
        self.collect_extended = False  # deadline passed with only the own answer running


class _Answer:
    """Proposer-side state of one query this node answers."""

    def __init__(self, ann: QueryAnnounce):
        self.ann = ann
        self.generation: Any = None
        self.text = ""
        self.proposal: Proposal | None = None


class _Member:
    """Member-side state of one aggregation round."""

    def __init__(self, rs: RoundStart, origin: PeerId, cands: list[tuple[bytes, Proposal]]):
        self.rs = rs
        self.origin = origin
        self.cands = cands
        self.texts = [p.answer for _, p in cands]
        self.vectors: np.ndarray | None = None
        self.rank: list[int] = []
        self.replica: pbft.Replica | None = None
        self.pending: list[tuple[PeerId, Any]] = []
        self.slots: dict[tuple, Any] = {}
        self.decision: Decision | None = None
        self.avg: averaging.AveragingNode | None = None
        self.avg_choice: int | None = None
        self.spoke: set[PeerId] = set()
        self.inbound: dict[PeerId, int] = {}
        self.domain: bytes | None = None
        self.sent: dict[tuple, Any] = {}
        self.helped: dict[PeerId, int] = {}
        self.question = ""
        self.canon: list[str] = []
        self.clusters: list[agreement.Cluster] = []
        self.valid: set[int] = set()


# --------------------------------------------------------------------------- the machine


class PeerProtocol(MemoryHooks):
    """The peer state machine of one node.

    Args:
        signer: this node's identity (Ed25519Identity, or InsecureSimSigner in the simulator).
        verifier: signature checker matching the mesh's signers.
        config: protocol behaviour (see :class:`ProtocolConfig`).
        rng: source of nonces and fault-mode randomness (``random.SystemRandom()`` in the
            daemon, a seeded ``random.Random`` in the simulator and tests).
        buffer: the prompt buffer (default: 64 slots over a :class:`MemoryStore`).
        trust: trust book port (default :class:`TrustBookPort` over a fresh TrustBook).

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
        self._origins: dict[QueryId, _Origin] = {}
        self._answers: dict[QueryId, _Answer] = {}
        self._members: dict[QueryId, _Member] = {}
        self._jobs: dict[str, tuple[str, QueryId]] = {}
        self._timers: dict[str, tuple] = {}
        self._rtx: dict[tuple, list] = {}  # (peer, kind, qid) -> [msg, tries, nonces]
        self._rtx_nonce: dict[bytes, tuple] = {}
        self._decisions: dict[QueryId, Decision] = {}
        self._proposed: dict[QueryId, list] = {}  # qid -> [Proposal, acked_at or None]
        self._parked: dict[QueryId, QueryAnnounce] = {}  # strangers' queries after a restart
        self._evidence: deque[dict] = deque(maxlen=64)
        self._done_order: list[QueryId] = []
        self._rejects: dict[str, int] = {}
        self._n: dict[str, int] = {}
        self._out: list = []
        self._now = 0.0
        # collaborative memory (p2pmoa/memory_share.py); None = no memory at all
        self.mem = MemoryAgent(memory, self.me) if memory is not None else None
        self._mem_wait: dict[QueryId, QueryAnnounce] = {}
        self.judge = JudgeBudget(default_s=self.cfg.round_timeout_s)
        log.info("peer %s ready (model %s, method %s%s)", self.me, self.cfg.model_id,
                 self.cfg.method, f", FAULT MODE {self.cfg.fault}" if self.cfg.fault else "")

    # ------------------------------------------------------------------ public API

    def handle(self, event: Event) -> list:
        """Apply one event; return the effects to execute, in order. Never raises on input."""
        self._out = []
        self._now = event.now
        try:
            match event:
                case FrameIn():
                    self._on_frame(event)
                case TimerFired(name=name):
                    self._on_timer(name)
                case UserQuery():
                    self._on_user_query(event)
                case GenerateDone(job_id=job, generation=g):
                    self._on_generate_done(job, g)
                case GenerateFailed(job_id=job, error=err):
                    self._on_job_failed(job, f"generate: {err}")
                case EmbedDone(job_id=job, vectors=v):
                    self._on_embed_done(job, v)
                case EmbedFailed(job_id=job, error=err):
                    self._on_job_failed(job, f"embed: {err}")
                case PeerUp(peer=p):
                    self.peers.add(p)
                    self.seats.connected(p, event.now)
                case PeerDown(peer=p):
                    self._on_peer_down(p)
                case Started():
                    self._on_started()
                case _:
                    raise _UnknownEvent(f"unknown event {type(event).__name__}")
        except _UnknownEvent:
            raise
        except Exception:
            # A bug, not a peer's fault; keep the node alive and make it visible.
            log.exception("internal error on %s", type(event).__name__)
            self._reject("internal_error")
        out = self._out
        self._out = []
        if self.cfg.fault == "silent":
            out = [e for e in out if not isinstance(e, (Send, Broadcast))]
        return out

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

    def _keep_evidence(self, member: str, qid: QueryId, what: str, first: bytes,
                       second: bytes) -> None:
        self._evidence.append({"member": member, "query_id": qid, "what": what,
                               "first": first, "second": second, "at": self._now})

    def is_open(self, query_id: QueryId) -> bool:
        """True while this node, as originator, still works on ``query_id`` (its timers
        guarantee a ``Deliver`` or ``Failed`` later)."""
        return query_id in self._origins

    def decision(self, query_id: QueryId) -> Decision | None:
        """The decision this node recorded for ``query_id`` (None if none yet)."""
        return self._decisions.get(query_id)

    def progress(self, query_id: QueryId) -> dict | None:
        """The live, partial trace of a query asked HERE while it is undecided (None once it
        is decided or unknown): phase, proposals so far (peer, model, role, time, no answer
        text), round members and weights, votes so far, this node's PBFT view (and whether a
        view change is under way). Read by the node's web page."""
        o = self._origins.get(query_id)
        if o is None:
            return None
        rs = o.round
        m = self._members.get(query_id)
        rep = m.replica if m is not None else None
        return {
            "query_id": query_id, "phase": o.phase, "method": o.ann.method,
            "pbft": None if rep is None else {"view": rep.view, "view_change": not rep.active},
            "n_expected": o.ann.proposers_max, "elapsed_s": round(self._now - o.started, 6),
            "proposals": [{"peer": s, "model_id": p.model_id, "role": p.role,
                           "llm_s": p.llm_s, "arrived_s": round(at - o.started, 6)}
                          for s, (_, p, at) in sorted(o.proposals.items(), key=lambda x: x[1][2])],
            "members": list(rs.members) if rs else [],
            "weights": dict(zip(rs.members, rs.weights)) if rs else {},
            "votes": {k: list(v) for k, v in o.votes.items()},
            "notes": list(o.notes),
        }

    # ------------------------------------------------------------------ small helpers

    def _emit(self, effect) -> None:
        self._out.append(effect)

    def _count(self, name: str, n: int = 1) -> None:
        self._n[name] = self._n.get(name, 0) + n

    def _reject(self, reason: str) -> None:
        self._rejects[reason] = self._rejects.get(reason, 0) + 1

    def _seal(self, msg) -> tuple[bytes, bytes]:
        nonce = self.rng.getrandbits(128).to_bytes(16, "little")
        return seal(self.signer, msg, now=self._now, nonce=nonce), nonce

    def _send(self, peer: PeerId, msg) -> bytes:
        frame, nonce = self._seal(msg)
        self._emit(Send(peer, frame))
        return nonce

    def _send_reliable(self, peer: PeerId, msg) -> None:
        """Send with application-level ack; retransmit (re-sealed, fresh nonce) on timeout."""
        key = (peer, msg.kind, msg.query_id)
        old = self._rtx.get(key)
        if old is not None:
            for n in old[2]:
                self._rtx_nonce.pop(n, None)
        nonce = self._send(peer, msg)
        self._rtx[key] = [msg, 0, [nonce]]
        self._rtx_nonce[nonce] = key
        self._set_timer(f"rtx:{msg.kind}:{peer}:{msg.query_id}", self.cfg.retransmit_s,
                        ("rtx", key))

    def _stop_rtx(self, key: tuple) -> None:
        entry = self._rtx.pop(key, None)
        if entry is None:
            return
        for n in entry[2]:
            self._rtx_nonce.pop(n, None)
        self._cancel_timer(f"rtx:{key[1]}:{key[0]}:{key[2]}")

    def _set_timer(self, name: str, delay_s: float, owner: tuple) -> None:
        self._timers[name] = owner
        self._emit(SetTimer(name, max(0.0, delay_s)))

    def _cancel_timer(self, name: str) -> None:
        if self._timers.pop(name, None) is not None:
            self._emit(CancelTimer(name))

    def _buffer_state(self, qid: QueryId, state: QueryState, **kw) -> None:
        if qid in self.buffer:
            self.buffer.set_state(qid, state, self._now, **kw)

    # ------------------------------------------------------------------ user queries

    def _on_user_query(self, e: UserQuery) -> None:
        method = e.method or self.cfg.method
        L = self.cfg.limits
        if (not isinstance(e.prompt, str) or not e.prompt.strip()
                or len(e.prompt.encode("utf-8", "surrogatepass")) > L.prompt_bytes_max
                or not isinstance(e.query_id, str) or not e.query_id
                or len(e.query_id.encode("utf-8", "surrogatepass")) > L.id_bytes_max):
            self._emit(Refused(e.query_id, "invalid"))
            return
        if method not in METHODS:
            self._emit(Refused(e.query_id, "invalid_method"))
            return
        gp = self.cfg.gen_params
        n_max = proposers_for(len(self._invitable(e.query_id, self.cfg.select_ppm)),
                              self.cfg.proposers_max)
        ann = QueryAnnounce(e.query_id, self.me, e.prompt, method, e.now,
                            self.cfg.collect_timeout_s, n_max,
                            self.cfg.select_ppm, gp.max_tokens, gp.temperature, gp.seed)
        adm = self.buffer.admit(ann, local=True, now=e.now)
        if isinstance(adm, Busy):
            self._emit(Refused(e.query_id, adm.reason, adm.retry_after_s))
            return
        self._emit(Accepted(e.query_id))
        self._count("queries_accepted")
        if self.mem is not None and self.mem.wants_local_lookup(e.query_id, e.memory):
            self._mem_wait[e.query_id] = ann  # embed the query first: answer from memory?
            self._jobs[f"qemb:{e.query_id}"] = ("qemb", e.query_id)
            self._emit(Embed(f"qemb:{e.query_id}", (e.prompt,)))
            return
        self._start_origin(ann)

    def _start_origin(self, ann: QueryAnnounce) -> None:
        frame, nonce = self._seal(ann)
        o = self._origins[ann.query_id] = _Origin(ann, nonce, self._now)
        o.att = Attendance(self.me)
        o.att.invite(self._invitable(ann.query_id, ann.select_ppm))
        self._emit(Broadcast(self.cfg.topic, frame))
        self._set_timer(f"collect:{ann.query_id}", ann.deadline_s, ("collect", ann.query_id))
        if self.cfg.announce_repeats > 0:
            self._set_timer(f"reannounce:{ann.query_id}",
                            ann.deadline_s / (self.cfg.announce_repeats + 1),
                            ("reannounce", ann.query_id, 1))
        log.info("query %s: announced (method %s)", ann.query_id, ann.method)
        self._start_answer(ann)

    def _on_started(self) -> None:
        """Resume unfinished buffered queries after a restart."""
        for rec in self.buffer.unfinished():
            qid = rec.query_id
            if qid in self._origins or qid in self._answers:
                continue
            if rec.local:
                a = rec.announce
                ann = QueryAnnounce(qid, self.me, a.prompt, a.method, self._now, a.deadline_s,
                                    a.proposers_max, a.select_ppm, a.max_tokens, a.temperature,
                                    a.seed)
                self._count("recovered_local")
                log.info("query %s: recovered after restart, re-announcing", qid)
                self._buffer_state(qid, QueryState.RETRYING)
                self._start_origin(ann)
            elif self.trust.is_quarantined(rec.announce.origin):
                self.buffer.set_state(qid, QueryState.FAILED, self._now,
                                      detail="not resumed: originator quarantined")
                self._count("recovered_remote_refused")
            elif (self._stranger(rec.announce.origin)
                  and rec.announce.created_at + rec.announce.deadline_s > self._now):
                # a stranger's query is not resumed by itself: only if its originator
                # announces it again, through the admission rules (p2pmoa/quota.py)
                self._parked[qid] = rec.announce
                self._set_timer(f"parked:{qid}", rec.announce.created_at
                                + rec.announce.deadline_s - self._now, ("parked", qid))
                self._count("recovered_remote_parked")
            elif rec.announce.created_at + rec.announce.deadline_s > self._now:
                self._count("recovered_remote")
                self._buffer_state(qid, QueryState.RETRYING)
                self._start_answer(rec.announce)
            else:
                self.buffer.set_state(qid, QueryState.FAILED, self._now, detail="expired")

    # ------------------------------------------------------------------ answering

    def _start_answer(self, ann: QueryAnnounce) -> None:
        qid = ann.query_id
        st = _Answer(ann)
        self._answers[qid] = st
        job = f"gen:{qid}"
        self._jobs[job] = ("gen", qid)
        self._buffer_state(qid, QueryState.GENERATING)
        if self.mem is not None and ann.origin != self.me and self.mem.wants_peer_lookup(qid):
            self._jobs[f"qemb:{qid}"] = ("qemb", qid)  # retrieve from our memory first
            self._emit(Embed(f"qemb:{qid}", (ann.prompt,)))
        else:
            self._generate(job, ann)
        remote_deadline = ann.created_at + ann.deadline_s + self.cfg.round_timeout_s * 2
        if ann.origin != self.me:
            self._set_timer(f"expire:{qid}", max(1.0, remote_deadline - self._now),
                            ("expire", qid))

    def _generate(self, job: str, ann: QueryAnnounce) -> None:
        tokens = ann.max_tokens if ann.origin == self.me else min(
            ann.max_tokens, self.cfg.gen_params.max_tokens)  # bounded work for others
        # each node samples with its own seed derived from the query's: two nodes with the same
        # model must not produce the same sample, or their "agreement" is one vote counted twice
        node_seed = int.from_bytes(hashlib.sha256(f"{ann.seed}\x00{self.me}".encode()).digest()[:4], "big")
        params = GenParams(max_tokens=tokens, temperature=ann.temperature,
                           top_p=self.cfg.gen_params.top_p, seed=node_seed & 0x7FFFFFFF)
        msgs = (self.mem.messages(ann.query_id, self.cfg.role, ann.prompt) if self.mem is not None
                else (ChatMessage("system", self.cfg.role), ChatMessage("user", ann.prompt)))
        self._emit(Generate(job, msgs, params))

    def _on_generate_done(self, job: str, g: Any) -> None:
        kind, qid = self._jobs.pop(job, (None, None))
        if kind == "synth":
            self._on_synth_done(qid, g)
            return
        st = self._answers.get(qid) if kind == "gen" else None
        if st is None:
            self._count("stale_job")
            return
        llm_s = float(getattr(g, "llm_s", 0.0) or 0.0)
        self.buffer.record_generation_time(llm_s, self._now)
        text = str(getattr(g, "text", ""))
        if self.cfg.fault == "garbage":
            text = f"garbage {self.rng.getrandbits(64):016x} zzz qqq"
        st.generation = g
        st.text = _clip_utf8(text, self.cfg.limits.answer_bytes_max)
        ejob = f"emb:{qid}"
        self._jobs[ejob] = ("emb", qid)
        self._buffer_state(qid, QueryState.VOTING)
        self.judge.started(ejob, 1, self._now)
        self._emit(Embed(ejob, (st.text,)))

    def _on_job_failed(self, job: str, err: str) -> None:
        self.judge.finished(job, self._now, ok=False)
        kind, qid = self._jobs.pop(job, (None, None))
        if kind is None:
            return
        log.warning("query %s: %s job failed: %s", qid, kind, err)
        self._count(f"{kind}_failed")
        if kind in ("gen", "emb"):
            self._answers.pop(qid, None)
            if qid not in self._origins:
                self._buffer_state(qid, QueryState.FAILED, detail=err[:200])
        elif kind == "memb":
            self._members.pop(qid, None)
        elif kind in ("qemb", "mems"):
            self._memory_vector(kind, qid, np.zeros((0, 0), np.float32))
        elif kind == "synth" and qid in self._origins:
            o = self._origins[qid]
            o.notes.append(f"synthesis failed ({err[:80]}); fell back to medoid")
            self._finish_by_rank(o, "aggregate")

    def _on_embed_done(self, job: str, vectors: Any) -> None:
        self.judge.finished(job, self._now)
        kind, qid = self._jobs.pop(job, (None, None))
        try:
            v = np.asarray(vectors, dtype=np.float32)
        except Exception:
            v = np.zeros((0, 0), np.float32)
        if kind == "emb":
            self._on_own_embedding(qid, v)
        elif kind == "memb":
            self._on_member_embedding(qid, v)
        elif kind in ("qemb", "mems"):
            self._memory_vector(kind, qid, v)
        else:
            self._count("stale_job")

    def _on_own_embedding(self, qid: QueryId, v: np.ndarray) -> None:
        st = self._answers.get(qid)
        if st is None:
            return
        if v.ndim != 2 or v.shape[0] < 1 or not np.all(np.isfinite(v[0])) \
                or v.shape[1] > self.cfg.limits.dim_max or v.shape[1] == 0:
            self._count("emb_failed")
            self._answers.pop(qid, None)
            if qid not in self._origins:
                self._buffer_state(qid, QueryState.FAILED, detail="bad embedding")
            return
        vec = v[0]
        if self.cfg.fault == "garbage":
            r = np.array([self.rng.uniform(-1, 1) for _ in range(len(vec))], np.float32)
            vec = r / max(float(np.linalg.norm(r)), 1e-9)
        g = st.generation
        prop = Proposal(qid, self.me, st.text, str(getattr(g, "model_id", self.cfg.model_id))[:100],
                        _clip_utf8(self.cfg.role, self.cfg.limits.text_bytes_max),
                        self.cfg.space_id, vector_to_f32(vec),
                        int(getattr(g, "prompt_tokens", 0) or 0),
                        int(getattr(g, "completion_tokens", 0) or 0),
                        min(float(getattr(g, "llm_s", 0.0) or 0.0), 3600.0),
                        canonical=_clip_utf8(agreement.canonical_answer(st.text), 512))
        st.proposal = prop
        self._proposed[qid] = [prop, None]
        while len(self._proposed) > self.cfg.remember_max:
            self._proposed.pop(next(iter(self._proposed)))
        origin = st.ann.origin
        self._count("proposals_made")
        if origin == self.me:
            frame, _ = self._seal(prop)
            self.reader.remember_verified(frame, decode_envelope(frame, self.cfg.limits), prop)
            self._origin_add(self.me, frame, prop)
            return
        self._send_reliable(origin, prop)
        if self.cfg.fault == "equivocate":
            twin = Proposal(qid, self.me, st.text + " Actually, the opposite is true.",
                            prop.model_id, prop.role, prop.space_id, prop.embedding_f32,
                            prop.prompt_tokens, prop.completion_tokens, prop.llm_s)
            self._send(origin, twin)

    # ------------------------------------------------------------------ frames in

    def _on_frame(self, e: FrameIn) -> None:
        # Blame for undecodable or forged bytes goes to the transport peer only on a direct
        # stream, where it is certainly the author; a gossip frame may have been relayed by an
        # honest neighbour (drivers differ in what they report as the gossip peer).
        direct = e.topic is None
        if direct and e.peer != self.me and self.trust.is_quarantined(e.peer):
            # no parsing, no crypto for a peer that already forged or equivocated
            self._reject("quarantined")
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
        self._last_frame = e.data
        self._last_nonce = env.nonce
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
                self._on_announce(env, msg)
            case Proposal():
                self._on_proposal(env, msg)
            case Ack():
                self._on_ack(sender, msg)
            case Nack():
                self._on_nack(sender, msg)
            case RoundStart():
                self._on_round_start(env, msg)
            case PbftWire():
                self._on_pbft(env, msg)
            case ScoreVote():
                self._on_vote(sender, msg)
            case AvgVector():
                self._on_avg(sender, msg)
            case Decision():
                self._on_decision(env, msg)
            case MemoryShare():
                self._on_memory_share(env, msg)

    def _on_ack(self, sender: PeerId, msg: Ack) -> None:
        key = self._rtx_nonce.get(msg.ref)
        if key is None or key[0] != sender:
            self._count("ack_unmatched")
            return
        if key[1] == "proposal" and key[2] in self._proposed:
            self._proposed[key[2]][1] = self._now
        self._stop_rtx(key)

    def _on_nack(self, sender: PeerId, msg: Nack) -> None:
        key = self._rtx_nonce.get(msg.ref)
        if key is not None and key[0] == sender:
            self._stop_rtx(key)
            if key[1] == "proposal":
                self._finish_answer(msg.query_id, QueryState.DONE, f"origin said {msg.reason}")
            return
        st = self._answers.get(msg.query_id)
        if st is not None and st.ann.origin == sender and msg.reason in ("late", "decided"):
            self._stop_rtx((sender, "proposal", msg.query_id))
            self._finish_answer(msg.query_id, QueryState.DONE, f"origin said {msg.reason}")
            return
        o = self._origins.get(msg.query_id)
        if o is not None and msg.ref == o.ann_nonce:
            o.nacks[sender] = msg.reason
            if o.att is not None and o.phase == "collect":
                o.att.refused[sender] = msg.reason
                self._maybe_start_round(o)
            return
        self._count("nack_unmatched")

    def _ack(self, env: Envelope, peer: PeerId) -> None:
        self._send(peer, Ack(env.query_id, env.nonce))

    # ---- announce (peer side)

    def _on_announce(self, env: Envelope, ann: QueryAnnounce) -> None:
        qid = ann.query_id
        if ann.origin != env.sender:
            self._reject("sender_mismatch")
            return
        if ann.created_at + ann.deadline_s < self._now:
            self._reject("expired")
            return
        if qid in self._parked:
            self._resume_parked(env, ann)
            return
        mine = self._proposed.get(qid)
        if mine is not None:
            prop, acked_at = mine
            if ann.origin != self.me and (acked_at is None or acked_at < ann.created_at):
                # not acknowledged yet, or acknowledged by an earlier life of the originator
                self._count("proposal_resent")
                self._send_reliable(ann.origin, prop)
            return
        if qid in self._answers or qid in self.buffer or qid in self._decisions:
            self._count("announce_duplicate")
            return
        if not selected(qid, self.me, ann.select_ppm):
            self._count("not_selected")
            return
        why = self.quota.refuse_remote(ann.origin, self.buffer.unfinished(), self.buffer.capacity,
                                       self._stranger, self.trust.is_quarantined(ann.origin),
                                       self.cfg.roster)
        if why is not None:
            self._reject(why)
            self._send(ann.origin, Nack(qid, env.nonce, why, self.cfg.collect_timeout_s))
            return
        adm = self.buffer.admit(ann, local=False, now=self._now)
        if isinstance(adm, Busy):
            self._count("announce_refused")
            self._send(ann.origin, Nack(qid, env.nonce, adm.reason, adm.retry_after_s))
            return
        self._start_answer(ann)

    def _resume_parked(self, env: Envelope, ann: QueryAnnounce) -> None:
        """The originator of a query parked at restart announced it again: resume it if the
        admission rules still allow (else it fails now)."""
        qid = ann.query_id
        parked = self._parked.pop(qid)
        self._cancel_timer(f"parked:{qid}")
        others = [r for r in self.buffer.unfinished() if r.query_id != qid]
        why = self.quota.refuse_remote(parked.origin, others, self.buffer.capacity,
                                       self._stranger, self.trust.is_quarantined(parked.origin),
                                       self.cfg.roster)
        if why is not None:
            self._reject(why)
            self.buffer.set_state(qid, QueryState.FAILED, self._now, detail=f"not resumed: {why}")
            return
        self._count("recovered_remote")
        self._start_answer(parked)

    def _stranger(self, origin: PeerId) -> bool:
        """Neither a connected peer nor established here (see p2pmoa/quota.py)."""
        return origin not in self.peers and not self.seats.established(self.trust, origin,
                                                                       self._now)

    def _finish_answer(self, qid: QueryId, state: QueryState, detail: str = "") -> None:
        self._answers.pop(qid, None)
        self._cancel_timer(f"expire:{qid}")
        if qid not in self._origins:
            self._buffer_state(qid, state, detail=detail)

    # ---- proposals (originator side)

    def _on_proposal(self, env: Envelope, p: Proposal) -> None:
        qid = p.query_id
        if p.proposer != env.sender:
            self._reject("sender_mismatch")
            return
        o = self._origins.get(qid)
        if o is None:
            if qid in self._decisions:
                self._count("late_proposals")
                self._ack(env, env.sender)
                self._send(env.sender, Nack(qid, env.nonce, "decided"))
            else:
                self._reject("unknown_query")
            return
        self._ack(env, env.sender)
        if p.space_id != self.cfg.space_id:
            self._reject("space_mismatch")
            self.trust.bad(env.sender, "space_mismatch", self._now)
            return
        if o.phase != "collect":
            have = o.proposals.get(p.proposer)
            if have is None:
                self._count("late_proposals")
                self._send(env.sender, Nack(qid, env.nonce, "late"))
            elif have[1] != p:
                self._keep_evidence(p.proposer, qid, "two proposals", have[0], self._last_frame)
                self._reject("equivocation")
                self.trust.quarantine(p.proposer, f"two proposals for {qid}", self._now)
                o.notes.append(f"{p.proposer} equivocated (two proposals): quarantined")
            return
        frame = self._last_frame
        self.reader.remember_verified(frame, env, p)
        self._origin_add(env.sender, frame, p)

    def _origin_add(self, sender: PeerId, frame: bytes, p: Proposal) -> None:
        o = self._origins.get(p.query_id)
        if o is None or o.phase != "collect":
            return
        if sender in o.bad:
            return
        have = o.proposals.get(sender)
        if have is not None:
            if have[1] == p:
                self._count("proposal_duplicate")
                return
            # two different signed proposals from one key for one query: equivocation
            self._keep_evidence(sender, p.query_id, "two proposals", have[0], frame)
            self._reject("equivocation")
            o.bad.add(sender)
            del o.proposals[sender]
            self.trust.quarantine(sender, f"two proposals for {p.query_id}", self._now)
            o.notes.append(f"{sender} equivocated (two proposals): excluded and quarantined")
            log.warning("query %s: %s equivocated, quarantined", p.query_id, sender)
            return
        why = self.seats.refuse(self.trust, self.me, sender, list(o.proposals),
                                o.ann.proposers_max, self.peers, self._now)
        if why is not None:  # seats by trust, not by speed (p2pmoa/seats.py)
            self._reject(why)
            o.nacks.setdefault(sender, why)  # not "missing": it answered, it got no seat
            return
        if own_dim := len(p.embedding_f32) // 4:
            dims = {len(x[1].embedding_f32) // 4 for x in o.proposals.values()}
            if dims and own_dim not in dims:
                self._reject("dim_mismatch")
                return
        o.proposals[sender] = (frame, p, self._now)
        self._count("proposals_received")
        if o.att is not None:
            o.att.answered.add(sender)
        self._maybe_start_round(o)

    # ---- when the round starts (the rule lives in p2pmoa/round_start.py)

    def _invitable(self, qid: QueryId, select_ppm: int) -> set[PeerId]:
        """Live peers asked to answer ``qid`` (those the announce selects)."""
        return {p for p in self.peers if selected(qid, p, select_ppm)
                and not self.trust.is_quarantined(p)}

    def _maybe_start_round(self, o: _Origin) -> None:
        if o.phase != "collect" or o.att is None:
            return
        why = o.att.should_start(len(o.proposals), o.ann.proposers_max, self.peers)
        if why is not None:
            o.att.close(why, self.peers)
            self._start_round(o)

    def _on_peer_down(self, peer: PeerId) -> None:
        self.peers.discard(peer)
        for o in list(self._origins.values()):
            self._maybe_start_round(o)  # the peer we still waited for may be the one gone

    # ------------------------------------------------------------------ timers

    def _on_timer(self, name: str) -> None:
        owner = self._timers.pop(name, None)
        if owner is None:
            self._count("stale_timer")
            return
        match owner:
            case ("collect", qid):
                o = self._origins.get(qid)
                if (o is not None and o.phase == "collect" and not o.proposals
                        and qid in self._answers and not o.collect_extended):
                    # nothing arrived, but the own answer is still being generated (a slow
                    # node alone): wait one more deadline for it rather than fail (issue 9)
                    o.collect_extended = True
                    o.notes.append("collection deadline with no proposal yet; own answer "
                                   f"still running: waiting {o.ann.deadline_s:.0f}s more")
                    self._set_timer(f"collect:{qid}", o.ann.deadline_s, ("collect", qid))
                elif o is not None and o.phase == "collect":
                    o.notes.append(f"collection deadline: {len(o.proposals)} of "
                                   f"{o.ann.proposers_max} proposals arrived")
                    if o.att is not None:
                        o.att.close("deadline", self.peers)
                    self._start_round(o, at_deadline=True)
            case ("round", qid):
                o = self._origins.get(qid)
                if o is not None and o.phase == "round":
                    self._round_timeout(o)
            case ("reannounce", qid, k):
                o = self._origins.get(qid)
                if (o is not None and o.phase == "collect"
                        and len(o.proposals) < o.ann.proposers_max):
                    # gossip drops silently under load: say it again (peers de-duplicate)
                    frame, o.ann_nonce = self._seal(o.ann)
                    if o.att is not None:
                        o.att.invite(self._invitable(qid, o.ann.select_ppm))
                    self._emit(Broadcast(self.cfg.topic, frame))
                    self._count("reannounces")
                    if k < self.cfg.announce_repeats:
                        self._set_timer(f"reannounce:{qid}",
                                        o.ann.deadline_s / (self.cfg.announce_repeats + 1),
                                        ("reannounce", qid, k + 1))
            case ("judge", qid):
                o = self._origins.get(qid)
                if o is not None and o.phase == "round":
                    self._finish_by_rank(o, o.round.method if o.round else o.ann.method)
            case ("pbft-resend", qid):
                m = self._members.get(qid)
                if m is not None and m.replica is not None and m.decision is None:
                    self._pbft_resend(qid, m)
            case ("rtx", key):
                self._on_rtx(key)
            case ("parked", qid):
                if self._parked.pop(qid, None) is not None:
                    self.buffer.set_state(qid, QueryState.FAILED, self._now,
                                          detail="not resumed: originator did not ask again")
            case ("expire", qid):
                self._count("rounds_closed" if qid in self._decisions else "answers_expired")
                self._members.pop(qid, None)
                self._finish_answer(qid, QueryState.DONE, "no decision seen")
            case ("pbft", qid, inner):
                m = self._members.get(qid)
                if m is not None and m.replica is not None:
                    self._run_pbft(qid, m, pbft.TimerExpired(inner))
            case ("avg", qid, step):
                m = self._members.get(qid)
                if m is not None and m.avg is not None and not m.avg.finished:
                    self._avg_effects(qid, m, m.avg.handle(averaging.RoundTimeout(step)))

    def _on_rtx(self, key: tuple) -> None:
        entry = self._rtx.get(key)
        if entry is None:
            return
        msg, tries, nonces = entry
        if tries >= self.cfg.retransmits_max:
            self._count("retransmit_exhausted")
            self._stop_rtx(key)
            return
        nonce = self._send(key[0], msg)
        nonces.append(nonce)
        entry[1] = tries + 1
        self._rtx_nonce[nonce] = key
        self._count("retransmits")
        self._set_timer(f"rtx:{key[1]}:{key[0]}:{key[2]}",
                        self.cfg.retransmit_s * (2 ** (tries + 1)), ("rtx", key))

    # ------------------------------------------------------------------ round start

    def _start_round(self, o: _Origin, at_deadline: bool = False) -> None:
        qid = o.ann.query_id
        self._cancel_timer(f"collect:{qid}")
        self._cancel_timer(f"reannounce:{qid}")
        props = {s: v for s, v in o.proposals.items() if s not in o.bad
                 and not self.trust.is_quarantined(s)}
        if not props:
            o.phase = "done"
            self._fail_origin(o, "no proposals arrived before the deadline")
            return
        o.phase = "round"
        o.round_at = self._now
        # Only a peer silent until the deadline is penalised: when enough proposals arrived
        # early, a slower device (still generating) has done nothing wrong (issue 13).
        for peer in sorted(self.peers) if at_deadline else ():
            if (peer not in o.proposals and peer not in o.nacks
                    and selected(qid, peer, o.ann.select_ppm)):
                self.trust.bad(peer, "no_proposal", self._now)
                self._count("missing_proposals")
        members = tuple(sorted(set(props) | {self.me}))
        w = self.seats.weights(self.trust, self.me, members, self.trust.weights(list(members)),
                               self._now, self.peers)
        weights = tuple(max(0, int(w.get(m, 1))) for m in members)
        if sum(weights) <= 0:
            weights = tuple(1 for _ in members)
        bundle = tuple(props[s][0] for s in sorted(props))
        method = o.ann.method
        rs = RoundStart(qid, method, members, weights, bundle, self.cfg.round_timeout_s,
                        self.cfg.view_timeout_s, self.cfg.avg_rounds)
        o.round = rs
        log.info("query %s: round %s with %d members, %d proposals", qid, method,
                 len(members), len(bundle))
        self._set_timer(f"round:{qid}", self.cfg.round_timeout_s, ("round", qid))
        if method == "aggregate":
            # the originator synthesises alone; members learn the decision afterwards
            texts = [props[s][1].answer for s in sorted(props)]
            job = f"synth:{qid}"
            self._jobs[job] = ("synth", qid)
            o.synth_job = job
            gp = self.cfg.gen_params
            self._emit(Generate(job, aggregate_messages(o.ann.prompt, texts, self.cfg.role),
                                GenParams(o.ann.max_tokens, gp.temperature, gp.top_p, o.ann.seed)))
            self._member_start(rs, self.me, needs_embedding=True)
            return
        for m in members:
            if m != self.me:
                self._send_reliable(m, rs)
        self._member_start(rs, self.me)

    def _on_round_start(self, env: Envelope, rs: RoundStart) -> None:
        qid = rs.query_id
        if env.sender not in rs.members or self.me not in rs.members:
            self._reject("not_member")
            return
        self._ack(env, env.sender)
        d = self._decisions.get(qid)
        if d is not None:
            # the originator restarted and runs the round again: tell it what we decided
            self._count("round_after_decision")
            if d.method == "pbft" and d.query_id == qid:
                self._send_reliable(env.sender, d)
            return
        old = self._members.get(qid)
        if old is not None:
            if old.rs == rs:
                self._count("round_duplicate")
                return
            self._count("round_restarted")
            self._drop_member(qid, old)
        if rs.method == "aggregate":
            self._reject("bad_round")
            return
        self._member_start(rs, env.sender)

    def _drop_member(self, qid: QueryId, m: _Member) -> None:
        self._members.pop(qid, None)
        mine = {("pbft", qid), ("avg", qid), ("pbft-resend", qid)}
        for name in [n for n, o in self._timers.items() if o[:2] in mine]:
            self._cancel_timer(name)

    def _member_start(self, rs: RoundStart, origin: PeerId, needs_embedding: bool = True) -> None:
        qid = rs.query_id
        cands: list[tuple[bytes, Proposal]] = []
        seen: set[PeerId] = set()
        for frame in rs.bundle:
            try:
                env, p = self.reader.read_embedded(frame)
            except FrameError as exc:
                self._reject(f"bundle_{exc.reason}")
                self.trust.bad(origin, "bad_bundle", self._now)
                return
            if (not isinstance(p, Proposal) or p.query_id != qid or p.proposer != env.sender
                    or p.proposer not in rs.members or p.proposer in seen):
                self._reject("bad_bundle")
                self.trust.bad(origin, "bad_bundle", self._now)
                return
            seen.add(p.proposer)
            cands.append((frame, p))
        if not cands:
            self._reject("bad_bundle")
            return
        m = _Member(rs, origin, cands)
        m.question = self._question(qid)
        self._members[qid] = m
        self._finish_answer_soft(qid)
        job = f"memb:{qid}"
        self._jobs[job] = ("memb", qid)
        self.judge.started(job, len(m.texts), self._now)
        self._emit(Embed(job, tuple(m.texts)))
        if origin != self.me:
            self._set_timer(f"expire:{qid}", rs.round_timeout_s * 2 + 5.0, ("expire", qid))

    def _finish_answer_soft(self, qid: QueryId) -> None:
        """Our proposal made it into a round: stop retransmitting it."""
        st = self._answers.get(qid)
        if st is not None:
            self._stop_rtx((st.ann.origin, "proposal", qid))

    def _on_member_embedding(self, qid: QueryId, v: np.ndarray) -> None:
        m = self._members.get(qid)
        if m is None:
            return
        if v.ndim != 2 or v.shape[0] != len(m.cands) or not np.all(np.isfinite(v)):
            self._count("memb_failed")
            self._members.pop(qid, None)
            return
        m.vectors = v
        self._judge_candidates(m, v)
        method = m.rs.method
        o = self._origins.get(qid)
        if o is not None and o.judging and o.phase == "round":
            o.notes.append(f"judged {len(m.cands)} candidates {self._now - o.round_at:.1f}s "
                           "after the round started")
            self._finish_by_rank(o, method)
            return
        if method == "pbft":
            self._pbft_start(qid, m)
        elif method in ("vote", "score"):
            self._vote_send(qid, m)
        elif method == "averaging":
            self._avg_start(qid, m)
        elif method == "aggregate":
            pass  # originator-only; the ranking serves the fallback and the trace

    # ------------------------------------------------------------------ answer agreement

    def _question(self, qid: QueryId) -> str:
        for src in (self._origins.get(qid), self._answers.get(qid)):
            if src is not None:
                return src.ann.prompt
        rec = self.buffer.get(qid)
        return rec.announce.prompt if rec is not None else ""

    def _judge_candidates(self, m: _Member, v: np.ndarray) -> None:
        """Order the bundle by answer agreement (p2pmoa.agreement): heaviest cluster of
        equivalent canonical answers first (trust weights of the proposers); centrality only
        breaks ties between equally heavy clusters; inside a cluster a hash of (query,
        proposer) decides, so no proposer wins ties by where its peer id sorts. ``m.valid``:
        the candidates PBFT accepts (the winning clusters; top-k by that order if no two
        answers agree at all); a proposer this node has quarantined weighs 0 and is never valid."""
        qid = m.rs.query_id
        weight = dict(zip(m.rs.members, m.rs.weights))
        props = [p for _, p in m.cands]
        m.canon = [agreement.signed_canonical(p.canonical, p.answer, m.question) for p in props]
        fair = [hashlib.sha256(f"{qid}\x00{p.proposer}".encode()).digest() for p in props]
        bad = {i for i, p in enumerate(props) if self.trust.is_quarantined(p.proposer)}
        m.rank, m.clusters = agreement.order_candidates(
            m.canon, m.question, [0.0 if i in bad else float(weight.get(p.proposer, 0))
                                  for i, p in enumerate(props)], centrality(v), fair)
        m.rank = [i for i in m.rank if i not in bad] + [i for i in m.rank if i in bad]
        if max(len(c.members) for c in m.clusters) > 1:
            m.valid = agreement.winning_members(m.clusters) - bad
        else:
            m.valid = set(m.rank[: self._top_k(len(m.cands))]) - bad

    def _support(self, m: _Member) -> list[float]:
        total = sum(c.weight for c in m.clusters) or 1.0
        share = [0.0] * len(m.cands)
        for c in m.clusters:
            for i in c.members:
                share[i] = c.weight / total
        return share

    def _avg_pick(self, m: _Member, vec: np.ndarray) -> int:
        """Averaging's answer: the candidate of a winning cluster nearest the agreed vector."""
        valid = sorted(m.valid) or list(range(len(m.cands)))
        x = np.asarray(vec, np.float64)
        return max(valid, key=lambda i: (round(float(m.vectors[i].astype(np.float64) @ x), 9), -i))

    # ------------------------------------------------------------------ PBFT

    def _value_of(self, qid: QueryId, idx: int) -> bytes:
        p = self._candidate(qid, idx)
        return pack([qid, p.proposer, _digest(p.answer)])

    def _candidate(self, qid: QueryId, idx: int) -> Proposal:
        return self._members[qid].cands[idx][1]

    def _index_of_value(self, m: _Member, value: bytes) -> int | None:
        try:
            obj = unpack_bounded(value, self.cfg.limits)
        except FrameError:
            return None
        if not isinstance(obj, list) or len(obj) != 3:
            return None
        q, proposer, dg = obj
        if q != m.rs.query_id:
            return None
        for i, (_, p) in enumerate(m.cands):
            if p.proposer == proposer and _digest(p.answer) == dg:
                return i
        return None

    def _top_k(self, n: int) -> int:
        return self.cfg.top_k if self.cfg.top_k > 0 else max(1, math.ceil(n / 2))

    def _pbft_start(self, qid: QueryId, m: _Member) -> None:
        rs = m.rs
        weights = {pbft.MemberId(p): w for p, w in zip(rs.members, rs.weights)}
        top = m.valid

        def validity(value: bytes) -> bool:
            i = self._index_of_value(m, value)
            return i is not None and i in top

        domain = self._pbft_domain(m)

        def sign(data: bytes) -> bytes:
            return self.signer.sign(domain + data)

        def verify(sender: str, data: bytes, sig: bytes) -> bool:
            try:
                pk = public_key_from_peer_id(sender)
            except ValueError:
                return False
            return self._verifier.verify(pk, sig, domain + data)

        m.replica = pbft.Replica(pbft.MemberId(self.me), weights, validity=validity,
                                 view_timeout_s=rs.view_timeout_s, seq_max=1,
                                 sign=sign, verify=verify, order_seed=domain)
        value = self._value_of(qid, m.rank[0])
        if self.cfg.fault == "garbage":
            value = pack([qid, self.me, _digest(f"garbage {self.rng.getrandbits(64)}")])
        self._run_pbft(qid, m, pbft.Request(value))
        self._set_timer(f"pbft-resend:{qid}", m.rs.view_timeout_s / 2, ("pbft-resend", qid))
        pending, m.pending = m.pending, []
        for sender, inner in pending:
            if m.decision is None:
                self._run_pbft(qid, m, pbft.Receive(inner))

    @staticmethod
    def _pbft_domain(m: _Member) -> bytes:
        """Signature domain of the PBFT messages of one round: binds query and round content,
        so a message can be replayed neither into another query nor into a re-run round."""
        if m.domain is None:
            rid = hashlib.sha256(encode_body(m.rs)).digest()[:16]
            m.domain = b"p2pmoa/pbft/v1\x00" + rid
        return m.domain

    def _on_pbft(self, env: Envelope, w: PbftWire) -> None:
        qid = w.query_id
        m = self._members.get(qid)
        inner = w.body
        if getattr(inner, "sender", None) != env.sender:
            self._reject("pbft_sender_mismatch")
            self.trust.bad(env.sender, "pbft_sender_mismatch", self._now)
            return
        if m is None:
            self._reject("unknown_round")
            return
        if env.sender not in m.rs.members:
            self._reject("not_member")
            return
        m.spoke.add(env.sender)
        n_in = m.inbound.get(env.sender, 0) + 1
        m.inbound[env.sender] = n_in
        if n_in > self.cfg.pbft_msgs_per_member_max:
            self._reject("pbft_flood")
            return
        self._check_twin(qid, m, env, inner)
        if m.decision is not None:
            # after deciding, only help laggards a little (their view changes get our proofs)
            helped = m.helped.get(env.sender, 0)
            if not isinstance(inner, pbft.ViewChange) or helped >= 8:
                return
            m.helped[env.sender] = helped + 1
        if m.replica is None:
            if len(m.pending) < 16 * len(m.rs.members) ** 2:
                m.pending.append((env.sender, inner))
            else:
                self._reject("pbft_backlog")
            return
        self._run_pbft(qid, m, pbft.Receive(inner))

    def _check_twin(self, qid: QueryId, m: _Member, env: Envelope, inner: Any) -> None:
        """Keep the signed envelope of each (sender, type, view, seq) as equivocation evidence."""
        view = getattr(inner, "view", getattr(inner, "new_view", None))
        key = (env.sender, type(inner).__name__, view, getattr(inner, "seq", None))
        prev = m.slots.get(key)
        if prev is None:
            if len(m.slots) < 64 * len(m.rs.members):
                m.slots[key] = inner
            return
        if prev != inner and isinstance(inner, (pbft.PrePrepare, pbft.Prepare, pbft.Commit)):
            self._keep_evidence(env.sender, qid, "conflicting PBFT messages",
                                pack(pbft.encode(prev)), pack(pbft.encode(inner)))
            self._equivocation(qid, m, env.sender, "conflicting PBFT messages")

    def _equivocation(self, qid: QueryId, m: _Member, member: str, what: str) -> None:
        if self.trust.is_quarantined(member):
            return
        self._reject("equivocation")
        self.trust.quarantine(member, f"{what} in {qid}", self._now)
        log.warning("query %s: %s equivocated (%s): quarantined", qid, member, what)

    def _run_pbft(self, qid: QueryId, m: _Member, ev: Any) -> None:
        try:
            effects = m.replica.handle(ev)
        except pbft.PbftError as exc:
            self._reject("pbft_error")
            log.warning("query %s: pbft rejected input: %s", qid, exc)
            return
        for eff in effects:
            match eff:
                case pbft.Broadcast(msg=msg):
                    for peer in m.rs.members:
                        if peer != self.me:
                            self._pbft_out(qid, m, peer, msg)
                case pbft.Send(peer=peer, msg=msg):
                    self._pbft_out(qid, m, PeerId(peer), msg)
                case pbft.SetTimer(name=name, delay_s=d):
                    self._set_timer(f"pbft:{qid}:{name}", d, ("pbft", qid, name))
                case pbft.CancelTimer(name=name):
                    self._cancel_timer(f"pbft:{qid}:{name}")
                case pbft.Decided(seq=_, view=view, value=value, digest=_):
                    self._pbft_decided(qid, m, view, value)
                case pbft.EquivocationDetected(member=who, first=a, second=b):
                    self._keep_evidence(who, qid, "conflicting PBFT messages",
                                        pack(pbft.encode(a)), pack(pbft.encode(b)))
                    self._equivocation(qid, m, who, "equivocation seen by PBFT")
                case _:
                    self._count("pbft_other_effect")

    def _pbft_resend(self, qid: QueryId, m: _Member) -> None:
        """Re-send this member's messages of the current view (lossy links: PBFT itself only
        recovers by view change); receivers treat identical PBFT messages idempotently."""
        view = m.replica.view
        for (peer, _kind, v), msg in list(m.sent.items()):
            if v >= view:
                self._send(peer, PbftWire(qid, msg))
                self._count("pbft_resent")
        self._set_timer(f"pbft-resend:{qid}", m.rs.view_timeout_s / 2, ("pbft-resend", qid))

    def _pbft_out(self, qid: QueryId, m: _Member, peer: PeerId, msg: Any) -> None:
        view = getattr(msg, "view", getattr(msg, "new_view", 0))
        if len(m.sent) < 64 * len(m.rs.members):
            m.sent[(peer, type(msg).__name__, view)] = msg
        self._send(peer, PbftWire(qid, msg))
        if self.cfg.fault == "equivocate" and isinstance(msg, (pbft.PrePrepare, pbft.Prepare,
                                                                 pbft.Commit)):
            fake_value = pack([qid, self.me, _digest(f"twin {msg.view}")])
            fake = pbft.PrePrepare(msg.view, msg.seq, pbft.digest_of(fake_value), fake_value,
                                   msg.sender) if isinstance(msg, pbft.PrePrepare) else \
                type(msg)(msg.view, msg.seq, pbft.digest_of(fake_value), msg.sender)
            domain = self._pbft_domain(m)
            fake = pbft.with_signature(fake, self.signer.sign(domain + pbft.signing_bytes(fake)))
            self._send(peer, PbftWire(qid, fake))

    def _pbft_decided(self, qid: QueryId, m: _Member, view: int, value: bytes) -> None:
        idx = self._index_of_value(m, value)
        if idx is None:
            # a decided value we cannot map to a candidate: should be impossible with an
            # honest quorum, so make it loud
            self._count("pbft_decided_unknown_value")
            log.error("query %s: PBFT decided a value outside the bundle", qid)
            return
        p = m.cands[idx][1]
        d = Decision(qid, "pbft", p.answer, _digest(p.answer), p.proposer, len(m.cands),
                     self._expected(m), view)
        self._record_decision(qid, m, d)
        self._cancel_timer(f"pbft-resend:{qid}")
        if m.origin != self.me:
            self._send_reliable(m.origin, d)
        else:
            o = self._origins.get(qid)
            if o is not None and o.phase == "round":
                self._finish_origin(o, d)

    def _expected(self, m: _Member) -> int:
        o = self._origins.get(m.rs.query_id)
        return o.ann.proposers_max if o is not None else len(m.rs.members) - 1

    # ------------------------------------------------------------------ score voting

    def _scores(self, m: _Member) -> tuple[int, ...]:
        """0..1000 per candidate: 900 × the weight share of its cluster of equivalent answers,
        plus up to 99 by its place in this member's order (ties inside a cluster: fair hash)."""
        n = len(m.cands)
        if self.cfg.fault == "garbage":
            return tuple(self.rng.randint(0, 1000) for _ in range(n))
        share = self._support(m)
        pos = {i: r for r, i in enumerate(m.rank)}
        return tuple(int(round(900 * share[i] + 99 * (n - 1 - pos[i]) / max(1, n - 1)))
                     for i in range(n))

    def _vote_send(self, qid: QueryId, m: _Member) -> None:
        vote = ScoreVote(qid, self._scores(m))
        if m.origin == self.me:
            self._on_vote(self.me, vote)
        else:
            self._send_reliable(m.origin, vote)

    def _on_vote(self, sender: PeerId, v: ScoreVote) -> None:
        o = self._origins.get(v.query_id)
        if o is None or o.round is None or o.phase != "round" or o.round.method not in ("vote", "score"):
            self._reject("unexpected_vote")
            return
        if sender != self.me:
            self._send(sender, Ack(v.query_id, self._last_nonce))
        if sender not in o.round.members or len(v.scores) != len(o.round.bundle):
            self._reject("bad_vote")
            return
        if sender in o.votes:
            return
        o.votes[sender] = v.scores
        if len(o.votes) == len(o.round.members):
            self._decide_vote(o)

    def _decide_vote(self, o: _Origin) -> None:
        rs = o.round
        m = self._members.get(rs.query_id)
        if m is None:
            self._fail_origin(o, "originator could not judge the bundle")
            return
        weight = dict(zip(rs.members, rs.weights))
        if rs.method == "score":
            # leaderless scoring: trust-weighted coordinate median over the members' score
            # vectors, robust to members holding less than half the weight
            voters = sorted(o.votes)
            res = voting.median_score_vote([o.votes[v] for v in voters],
                                           [float(weight.get(v, 0)) for v in voters])
            totals = [round(t, 3) for t in res.totals]
            best = res.winner
            o.notes.append(f"score: {len(o.votes)} of {len(rs.members)} members scored; "
                           f"weighted medians {totals}")
            self._origin_decides(o, m, best, "score")
            return
        totals = [0] * len(rs.bundle)
        for voter, scores in o.votes.items():
            for i, s in enumerate(scores):
                totals[i] += weight.get(voter, 0) * s
        best = max(range(len(totals)), key=lambda i: (totals[i], -i))
        o.notes.append(f"score vote: {len(o.votes)} of {len(rs.members)} members voted; "
                       f"weighted totals {totals}")
        self._origin_decides(o, m, best, "vote")

    # ------------------------------------------------------------------ averaging

    def _avg_start(self, qid: QueryId, m: _Member) -> None:
        """Start this member's :class:`consensus.averaging.AveragingNode` on its own answer's
        vector (as embedded by itself); neighbours = the other members, weighted by trust."""
        mine = next((i for i, (_, p) in enumerate(m.cands) if p.proposer == self.me), None)
        x0 = m.vectors[mine if mine is not None else m.rank[0]].astype(np.float64)
        x0 = x0 / max(float(np.linalg.norm(x0)), 1e-12)
        neighbours = {p: float(w) for p, w in zip(m.rs.members, m.rs.weights) if p != self.me}
        try:
            m.avg = averaging.AveragingNode(self.me, x0, neighbours, alpha=self.cfg.avg_alpha,
                                            rounds_max=max(1, m.rs.avg_rounds),
                                            aggregator="median",
                                            round_timeout_s=m.rs.view_timeout_s)
        except averaging.AveragingError as exc:
            self._count("avg_failed")
            log.warning("query %s: cannot start averaging: %s", qid, exc)
            return
        self._avg_effects(qid, m, m.avg.start())
        pending, m.pending = m.pending, []
        for sender, v in pending:
            if m.avg is not None and not m.avg.finished:
                self._avg_feed(qid, m, sender, v)

    def _avg_effects(self, qid: QueryId, m: _Member, effects: list) -> None:
        for eff in effects:
            match eff:
                case Broadcast(msg=vm):  # topic MEMBERS: every other member of the round
                    vec = np.asarray(vm.vector, np.float64)
                    if self.cfg.fault == "garbage":
                        vec = -vec
                    out = AvgVector(qid, vm.round, vector_to_f32(vec), vm.settled, vm.final)
                    for peer in m.rs.members:
                        if peer != self.me:
                            self._send(peer, out)
                case SetTimer(name=averaging.RoundTimeout(round=r), delay_s=d):
                    self._set_timer(f"avg:{qid}", d, ("avg", qid, r))
                case CancelTimer():
                    self._cancel_timer(f"avg:{qid}")
                case averaging.Finished(round=r, vector=vec, converged=conv):
                    best = self._avg_pick(m, vec)
                    m.avg_choice = best
                    if m.origin == self.me:
                        o = self._origins.get(qid)
                        if o is not None and o.phase == "round":
                            o.notes.append(
                                f"averaging: {r} rounds ({'converged' if conv else 'round limit'}),"
                                f" {len(m.spoke)} of {len(m.rs.members) - 1} peers heard")
                            self._origin_decides(o, m, best, "averaging")

    def _avg_feed(self, qid: QueryId, m: _Member, sender: PeerId, v: AvgVector) -> None:
        vm = averaging.VectorMsg(sender, v.step, f32_to_vector(v.vector_f32), v.settled, v.final)
        try:
            effects = m.avg.handle(averaging.NeighbourVector(vm))
        except averaging.AveragingError:
            self._reject("bad_avg")
            return
        self._avg_effects(qid, m, effects)

    def _on_avg(self, sender: PeerId, v: AvgVector) -> None:
        m = self._members.get(v.query_id)
        if m is None or m.rs.method != "averaging" or sender not in m.rs.members:
            self._reject("unexpected_avg")
            return
        m.spoke.add(sender)
        if m.avg is None:
            if len(m.pending) < 4 * len(m.rs.members) * max(1, m.rs.avg_rounds):
                m.pending.append((sender, v))
            return
        if m.avg.finished:
            return
        before = m.avg.statistics().rejected
        self._avg_feed(v.query_id, m, sender, v)
        if m.avg is not None and m.avg.statistics().rejected > before:
            self._reject("bad_avg")

    # ------------------------------------------------------------------ aggregate

    def _on_synth_done(self, qid: QueryId, g: Any) -> None:
        o = self._origins.get(qid)
        if o is None or o.phase != "round":
            return
        text = _clip_utf8(str(getattr(g, "text", "")), self.cfg.limits.answer_bytes_max)
        self.buffer.record_generation_time(float(getattr(g, "llm_s", 0.0) or 0.0), self._now)
        d = Decision(qid, "aggregate", text, _digest(text), PeerId(""), len(o.round.bundle),
                     o.ann.proposers_max, 0)
        m = self._members.get(qid)
        o.notes.append(f"aggregate: synthesised by {getattr(g, 'model_id', '?')} from "
                       f"{len(o.round.bundle)} proposals")
        self._finish_origin(o, d, m)

    # ------------------------------------------------------------------ decisions

    def _record_decision(self, qid: QueryId, m: _Member | None, d: Decision) -> None:
        if qid in self._decisions:
            if self._decisions[qid].digest != d.digest:
                self._count("decision_conflict")
                log.error("query %s: conflicting decisions recorded", qid)
            return
        self._decisions[qid] = d
        if self.mem is not None:
            for sender, share in self.mem.awaiting(qid):
                self._memory_share_check(sender, share)
        self._done_order.append(qid)
        if m is not None:
            m.decision = d
            if qid not in self._origins and m.vectors is not None:
                # members judge the round too: one trust model everyone computes (issue 12)
                seats.observe_round(self.trust, self.me, [p.proposer for _, p in m.cands],
                                    m.vectors, d.chosen, self._now, policy=self.seats)
        self._count("decisions")
        log.info("query %s: decided %s (%s, view %d)", qid, d.digest.hex()[:12], d.method, d.view)
        if qid not in self._origins:
            self._answers.pop(qid, None)
            self._buffer_state(qid, QueryState.DONE, answer=d.answer)
        while len(self._done_order) > self.cfg.remember_max:
            old = self._done_order.pop(0)
            self._decisions.pop(old, None)
            self._members.pop(old, None)

    def _on_decision(self, env: Envelope, d: Decision) -> None:
        qid = d.query_id
        if d.digest != _digest(d.answer):
            self._reject("bad_decision")
            self.trust.bad(env.sender, "bad_decision", self._now)
            return
        o = self._origins.get(qid)
        if o is not None:
            # a member reports its PBFT decision to us, the originator
            self._ack(env, env.sender)
            if o.round is None or env.sender not in o.round.members or d.method != "pbft":
                self._reject("unexpected_decision")
                return
            if o.phase != "round":
                return
            m = self._members.get(qid)
            if all(p.answer != d.answer or p.proposer != d.chosen
                   for _, p, _ in o.proposals.values()):
                self._reject("bad_decision")
                return
            votes = o.tally.setdefault(d.digest, {})
            votes[env.sender] = d
            weak = Quorum(dict(zip(o.round.members, o.round.weights)), ONE_THIRD)
            if weak.vote_result(votes) is Won:
                o.notes.append(f"decision learned from members weighing > 1/3 ({len(votes)})")
                self._record_decision(qid, m, d)
                self._finish_origin(o, d)
            return
        m = self._members.get(qid)
        st = self._answers.get(qid)
        origin = m.origin if m is not None else (st.ann.origin if st is not None else None)
        if origin is None or env.sender != origin:
            if qid in self._decisions:
                self._ack(env, env.sender)
                return
            self._reject("unexpected_decision")
            return
        self._ack(env, env.sender)
        if d.method == "pbft":
            return  # PBFT members decide themselves
        if (m is not None and d.method != "aggregate"
                and all(p.answer != d.answer for _, p in m.cands)):
            self._reject("bad_decision")
            return
        self._record_decision(qid, m, d)
        self._cancel_timer(f"expire:{qid}")

    def _origin_decides(self, o: _Origin, m: _Member, idx: int, method: str) -> None:
        p = m.cands[idx][1]
        d = Decision(o.ann.query_id, method, p.answer, _digest(p.answer), p.proposer,
                     len(m.cands), o.ann.proposers_max, 0)
        self._finish_origin(o, d, m)

    def _finish_by_rank(self, o: _Origin, method: str) -> None:
        qid = o.ann.query_id
        m = self._members.get(qid)
        if m is not None and m.vectors is None and not o.judging:
            # still embedding the candidates (a busy CPU): wait a budget from measured
            # embedding times rather than fail a query the mesh is about to decide (issue 9)
            budget = self.judge.budget_s(len(m.cands))
            o.judging = True
            o.notes.append(f"still embedding {len(m.cands)} candidates: judging budget "
                           f"{budget:.1f}s (measured {self.judge.per_text_s:.2f}s per text)")
            self._count("judging_extended")
            self._set_timer(f"judge:{qid}", budget, ("judge", qid))
            return
        if m is None or m.vectors is None:
            self._fail_origin(o, "the originator could not judge the candidates within its "
                                 "judging budget (embedding too slow or failed)")
            return
        self._origin_decides(o, m, m.rank[0], method)

    def _round_timeout(self, o: _Origin) -> None:
        method = o.round.method if o.round else o.ann.method
        o.notes.append(f"round timeout after {self.cfg.round_timeout_s:.1f}s: decided by the "
                       f"originator's own ranking (fallback)")
        self._count("round_timeouts")
        if method in ("vote", "score") and o.votes:
            m = self._members.get(o.ann.query_id)
            if m is not None:
                self._decide_vote(o)
                return
        self._finish_by_rank(o, method)

    def _finish_origin(self, o: _Origin, d: Decision, m: _Member | None = None) -> None:
        qid = o.ann.query_id
        if o.phase == "done":
            return
        o.phase = "done"
        m = m or self._members.get(qid)
        self._record_decision(qid, m, d)
        for name in (f"round:{qid}", f"collect:{qid}", f"reannounce:{qid}", f"judge:{qid}"):
            self._cancel_timer(name)
        if o.round is not None and d.method != "pbft":
            for peer in o.round.members:
                if peer != self.me:
                    self._send_reliable(peer, d)
        self._update_trust(o, m, d)
        trace = self._trace(o, m, d)
        if self.mem is not None:
            trace["memory"] = self._memory_decided(o, d)
        self._buffer_state(qid, QueryState.DONE, answer=d.answer)
        self._answers.pop(qid, None)
        self._origins.pop(qid, None)
        self._count("queries_decided")
        self._emit(Deliver(qid, d.answer, trace))

    def _fail_origin(self, o: _Origin, reason: str) -> None:
        qid = o.ann.query_id
        o.phase = "done"
        for name in (f"round:{qid}", f"collect:{qid}", f"reannounce:{qid}", f"judge:{qid}"):
            self._cancel_timer(name)
        self._buffer_state(qid, QueryState.FAILED, detail=reason)
        self._origins.pop(qid, None)
        self._answers.pop(qid, None)
        if self.mem is not None:
            self.mem.forget_query(qid)
        self._count("queries_failed")
        log.info("query %s: failed: %s", qid, reason)
        self._emit(Failed(qid, reason, {"query_id": qid, "notes": o.notes + [reason]}))

    def _update_trust(self, o: _Origin, m: _Member | None, d: Decision) -> None:
        if m is None or m.vectors is None:
            self.trust.end_round(self._now)
            return
        silent = ()
        if o.round is not None and o.round.method in ("pbft", "averaging"):
            silent = [p for p in o.round.members if p != self.me and p not in m.spoke]
        seats.observe_round(self.trust, self.me, [p.proposer for _, p in m.cands], m.vectors,
                            d.chosen, self._now, silent, self.seats)

    def _trace(self, o: _Origin, m: _Member | None, d: Decision) -> dict:
        rs = o.round
        cent = centrality(m.vectors) if m is not None and m.vectors is not None else None
        proposals = []
        for i, (sender, (frame, p, at)) in enumerate(sorted(o.proposals.items())):
            idx = next((j for j, (_, q) in enumerate(m.cands) if q.proposer == sender), None) \
                if m is not None else None
            proposals.append({
                "peer": sender, "model_id": p.model_id, "role": p.role, "answer": p.answer,
                "llm_s": p.llm_s, "completion_tokens": p.completion_tokens,
                "arrived_s": round(at - o.started, 6),
                "centrality": None if cent is None or idx is None else round(float(cent[idx]), 6),
                "canonical": m.canon[idx] if m is not None and idx is not None and m.canon else p.canonical,
                "in_round": idx is not None,
            })
        return {
            "query_id": o.ann.query_id, "method": d.method, "originator": self.me,
            "n_proposals": len(rs.bundle) if rs else 0, "n_expected": o.ann.proposers_max,
            "proposals": proposals,
            "members": list(rs.members) if rs else [],
            "weights": dict(zip(rs.members, rs.weights)) if rs else {},
            "votes": {k: list(v) for k, v in o.votes.items()},
            "decision": {"proposer": d.chosen, "digest": d.digest.hex(), "view": d.view},
            "clusters": [[m.cands[i][1].proposer for i in c.members] for c in m.clusters] if m else [],
            "nacks": dict(o.nacks),
            "timings": {"collect_s": round((o.round_at or self._now) - o.started, 6),
                        "round_s": round(self._now - (o.round_at or self._now), 6),
                        "total_s": round(self._now - o.started, 6)},
            "notes": list(o.notes),
            "attendance": o.att.report() if o.att is not None else None,
        }

    # the two attributes below are set by _on_frame for handlers that need the raw frame
    _last_frame: bytes = b""
    _last_nonce: bytes = b""


__all__ = [
    "Accepted", "EmbedDone", "EmbedFailed", "Event", "Failed", "FrameIn", "GenerateDone",
    "GenerateFailed", "TrustBookPort", "PeerDown", "PeerProtocol", "PeerUp", "ProtocolConfig",
    "ProtocolStatistics", "Refused", "Started", "TimerFired", "TrustPort", "UserQuery",
    "centrality", "ranking", "selected",
]
