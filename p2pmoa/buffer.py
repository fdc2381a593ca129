"""The prompt buffer: bounded, durable queue of the queries a node is working on.

After Distributed MoA (Mitra, Kaswan, Ulukus 2024): every node holds a prompt buffer; the
queries of its own users and the queries gossiped by peers wait there for the local model.

Durability: the buffer writes through an injected :class:`Store`. :class:`SQLiteStore` uses
SQLite in WAL mode with ``synchronous=FULL``, so ``put`` returns only after the WAL was
fsynced: a query is on disk *before* :meth:`PromptBuffer.admit` returns, hence before the
driver acknowledges it to the user, and it survives ``kill -9``. :class:`MemoryStore` is the
same interface without a disk, for the simulator and fast tests.

States of a query (see docs/protocol.md for the full diagram)::

    buffered -> generating -> voting -> done
        \\____________\\___________\\-> failed

A query's state only moves forward (:meth:`QueryState.can_move_to`; a backward move is
ignored and logged): ``done`` and ``failed`` are final, so ``GET /v1/queries/{id}`` never
shows ``failed`` and then ``done``; a query resumed after a restart says ``retrying``.

Admission control: a query is refused with :class:`Busy` (reason, ``retry_after_s``) when
the buffer already holds ``capacity`` unfinished queries, or when admitting it would break the
queue-stability bound of Distributed MoA, ``((k+1)·M + 1)·λ < 1/α_max``, where λ is the
arrival rate the node admitted over the last ``rate_window_s`` seconds (counting the new one),
α the node's expected generation time (seconds; the mean of its recent measured generation
times, passed in by the driver: in Distributed MoA α_i is the *expected* inference time, and a
window's maximum of exponential-like service times overestimates it several-fold, which
refused 21-33% of queries at a fifth of the bound in the simulator), M the MoA layers and k the
proposers per layer (the names of the issue and of Mitra et al.). Everything is pure: times
are arguments.

Rules that keep a node from locking itself out (issue 9: a node whose warm-up took 31 s
refused every query for ever, because nothing admitted meant nothing measured):

* **An idle node always admits.** With no unfinished query the node's queue is empty: the
  queue the bound protects has just drained, so one more arrival cannot make it unstable.
  The bound governs only while work is waiting (sustained load).
* **α is re-estimated over a time window.** Only generation times measured in the last
  ``alpha_window_s`` seconds count (at most ``alpha_window`` of them), so one slow generation
  ages out; with no recent measurement α is unknown (0) and the rate rule does not refuse.
  The driver feeds real query generations only, never the warm-up call.
* **The window fits the bound.** λ is counted over ``max(rate_window_s, 1/(slack·λ_max))``
  seconds, so the bound always allows at least one arrival per window while the long-run
  admitted rate stays at most ``slack·λ_max`` (a 60 s window cannot express "one per 62 s").
* ``slack`` (default 1.0) is the share of the bound admission runs at: 1.0 admits up to the
  bound itself; 0.8 keeps 20% headroom for error in the measured α.

Every refusal is logged once, at WARNING, with its reason and the figures behind it.
"""
from __future__ import annotations

import logging
import math
import os
import sqlite3
from collections import deque
from dataclasses import dataclass, replace
from enum import Enum
from typing import Protocol

from p2pmoa.effects import QueryId
from p2pmoa.messages import FrameError, QueryAnnounce, decode_body, encode_body, pack, unpack_bounded

log = logging.getLogger(__name__)


class BufferError_(Exception):
    """Base class of prompt-buffer errors."""


class UnknownQuery(BufferError_):
    """The query id is not in the buffer."""


class CorruptRecord(BufferError_):
    """A stored record could not be decoded (skipped on recovery and counted)."""


class QueryState(str, Enum):
    BUFFERED = "buffered"
    GENERATING = "generating"
    VOTING = "voting"
    DONE = "done"
    FAILED = "failed"
    RETRYING = "retrying"  # resumed after a restart: its work is being done again

    @property
    def finished(self) -> bool:
        return self in (QueryState.DONE, QueryState.FAILED)

    def can_move_to(self, new: "QueryState") -> bool:
        """States only move forward: buffered < generating < voting < done | failed, and a
        finished state is final. ``retrying`` (set when a restart resumes a query) may follow
        any unfinished state and be followed by any later one."""
        if self.finished:
            return False
        if new == QueryState.RETRYING or self == QueryState.RETRYING:
            return True
        return _RANK[new] > _RANK[self]


_RANK = {QueryState.BUFFERED: 0, QueryState.GENERATING: 1, QueryState.VOTING: 2,
         QueryState.DONE: 3, QueryState.FAILED: 3}


@dataclass(frozen=True)
class BufferedQuery:
    """One query in the buffer.

    Args:
        announce: the query as announced on the mesh (prompt, origin, method, deadline...).
        local: True if our own user asked it (we must deliver an answer or a failure).
        state: where it is in its life cycle.
        accepted_at: admission time, seconds (driver clock).
        updated_at: last state change, seconds.
        answer: the decided answer once ``done``.
        detail: why it ``failed`` (or a note).
    """

    announce: QueryAnnounce
    local: bool
    state: QueryState
    accepted_at: float
    updated_at: float
    answer: str = ""
    detail: str = ""

    @property
    def query_id(self) -> QueryId:
        return self.announce.query_id

    def to_bytes(self) -> bytes:
        return pack({"a": encode_body(self.announce), "l": self.local, "s": self.state.value,
                     "t0": self.accepted_at, "t": self.updated_at, "ans": self.answer,
                     "d": self.detail})

    @classmethod
    def from_bytes(cls, b: bytes) -> "BufferedQuery":
        try:
            d = unpack_bounded(b)
            ann = decode_body("announce", d["a"])
            return cls(ann, bool(d["l"]), QueryState(d["s"]), float(d["t0"]), float(d["t"]),
                       str(d["ans"]), str(d["d"]))
        except (FrameError, KeyError, ValueError, TypeError) as exc:
            raise CorruptRecord(str(exc)) from None


@dataclass(frozen=True)
class Busy:
    """Admission refused. ``retry_after_s`` is a hint in seconds for the client."""

    reason: str  # "full" | "unstable" | "deadline" | "duplicate"
    retry_after_s: float


@dataclass(frozen=True)
class Admitted:
    query: BufferedQuery


# --------------------------------------------------------------------------- stores


class Store(Protocol):
    """Durable key-value storage of buffer records plus a few metadata blobs."""

    def put(self, query_id: str, state: str, updated_at: float, record: bytes, *,
            durable: bool = True) -> None:
        """Write a record. ``durable=False`` may skip the fsync (the write still survives a
        crash of this process, not a power loss)."""

    def delete(self, query_id: str) -> None: ...

    def load_all(self) -> list[tuple[str, bytes]]: ...

    def put_meta(self, key: str, value: bytes) -> None: ...

    def get_meta(self, key: str) -> bytes | None: ...

    def close(self) -> None: ...


class MemoryStore:
    """In-memory :class:`Store` (simulator, tests). Survives only as long as the object."""

    def __init__(self):
        self.rows: dict[str, bytes] = {}
        self.meta: dict[str, bytes] = {}
        self.writes = 0

    def put(self, query_id, state, updated_at, record, *, durable: bool = True) -> None:
        self.rows[query_id] = record
        self.writes += 1

    def delete(self, query_id) -> None:
        self.rows.pop(query_id, None)

    def load_all(self):
        return list(self.rows.items())

    def put_meta(self, key, value) -> None:
        self.meta[key] = value

    def get_meta(self, key):
        return self.meta.get(key)

    def close(self) -> None:
        pass


class SQLiteStore:
    """SQLite :class:`Store` in WAL mode.

    Durable writes run with ``synchronous=FULL`` (fsync before the commit returns: survives
    power loss). Non-durable writes run with ``synchronous=NORMAL``: in WAL mode the commit is
    in the OS before it returns, so it survives ``kill -9`` of this process, only not a power
    loss. The buffer writes admissions and final answers durably and intermediate states
    (generating, voting) not: losing one of those to a power cut only makes the node redo work.
    Measured here: a FULL commit 3.3-3.6 ms, a NORMAL one 0.08-0.15 ms.

    Args:
        path: database file; its directory is created. One process should own it.
    """

    def __init__(self, path: str | os.PathLike):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._full = True
        self._db.execute("CREATE TABLE IF NOT EXISTS queries (query_id TEXT PRIMARY KEY, "
                         "state TEXT NOT NULL, updated_at REAL NOT NULL, record BLOB NOT NULL)")
        self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB)")

    def put(self, query_id, state, updated_at, record, *, durable: bool = True) -> None:
        if durable != self._full:
            self._db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            self._full = durable
        self._db.execute("INSERT OR REPLACE INTO queries VALUES (?, ?, ?, ?)",
                         (query_id, state, updated_at, record))

    def delete(self, query_id) -> None:
        self._db.execute("DELETE FROM queries WHERE query_id = ?", (query_id,))

    def load_all(self):
        return [(q, bytes(r)) for q, r in
                self._db.execute("SELECT query_id, record FROM queries ORDER BY updated_at")]

    def put_meta(self, key, value) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def get_meta(self, key):
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return bytes(row[0]) if row else None

    def close(self) -> None:
        self._db.close()


# --------------------------------------------------------------------------- admission


def stability_load(arrival_rate_per_s: float, alpha_max_s: float, layers_m: int,
                   proposers_k: int) -> float:
    """Left side of the Distributed-MoA bound times α_max: ``((k+1)M+1)·λ·α_max``.

    The queue is stable iff the result is < 1.
    """
    return ((proposers_k + 1) * layers_m + 1) * arrival_rate_per_s * alpha_max_s


def max_stable_rate_per_s(alpha_max_s: float, layers_m: int, proposers_k: int) -> float:
    """Largest arrival rate λ (queries/s) that keeps ``((k+1)M+1)·λ < 1/α_max``."""
    if alpha_max_s <= 0:
        return math.inf
    return 1.0 / (alpha_max_s * ((proposers_k + 1) * layers_m + 1))


@dataclass(frozen=True)
class BufferStatistics:
    capacity: int
    unfinished: int
    by_state: dict
    admitted: int
    refused_full: int
    refused_unstable: int
    refused_deadline: int
    refused_duplicate: int
    alpha_max_s: float
    arrival_rate_per_s: float
    max_stable_rate_per_s: float
    corrupt_records: int
    alpha_samples: int = 0
    admitted_idle: int = 0
    rate_window_s: float = 0.0
    slack: float = 1.0


class PromptBuffer:
    """Bounded, durable prompt buffer with admission control.

    Args:
        store: where records live (:class:`SQLiteStore` or :class:`MemoryStore`).
        capacity: maximum unfinished queries (default 64); beyond it ``admit`` says busy.
        finished_keep: finished records kept for de-duplication and late lookups (default
            1024); older ones are deleted from the store.
        layers_m: MoA layers M in the stability bound (default 1: one proposal round).
        proposers_k: proposers per layer k *besides this node's own answer* that load it
            (default 0: a node generates once per query; ``(k+1)M`` counts that generation and
            the ``+1`` of the bound covers the aggregation/embedding work).
        rate_window_s: shortest window over which λ is measured, seconds (default 60); it is
            stretched to ``1/(slack·λ_max)`` when the bound allows less than one arrival in it.
        alpha_window: most recent generation times whose mean is α (default 32).
        alpha_window_s: only generation times measured in the last this many seconds count
            (default 600): a slow spell is forgotten after it, and α is re-estimated from the
            next generations.
        slack: share of the Distributed-MoA bound admission may use, in (0, 1] (default 1.0).
        retry_after_min_s: smallest retry hint, seconds (default 1).
    """

    def __init__(self, store: Store, *, capacity: int = 64, finished_keep: int = 1024,
                 layers_m: int = 1, proposers_k: int = 0, rate_window_s: float = 60.0,
                 alpha_window: int = 32, alpha_window_s: float = 600.0, slack: float = 1.0,
                 retry_after_min_s: float = 1.0):
        assert capacity > 0, "capacity must be positive"
        assert 0 < slack <= 1.0, "slack is a share of the bound, in (0, 1]"
        assert rate_window_s > 0 and alpha_window_s > 0, "windows must be positive"
        self.store = store
        self.capacity = capacity
        self.finished_keep = finished_keep
        self.layers_m = layers_m
        self.proposers_k = proposers_k
        self.rate_window_s = rate_window_s
        self.alpha_window_s = alpha_window_s
        self.slack = slack
        self.retry_after_min_s = retry_after_min_s
        self._q: dict[QueryId, BufferedQuery] = {}
        self._finished: deque[QueryId] = deque()
        self._arrivals: deque[float] = deque()
        self._alphas: deque[tuple[float, float]] = deque(maxlen=alpha_window)  # (at, seconds)
        self._clock = 0.0  # latest time seen (for measurements reported without one)
        self._n = dict(admitted=0, full=0, unstable=0, deadline=0, duplicate=0, corrupt=0, idle=0)
        for qid, raw in store.load_all():
            try:
                rec = BufferedQuery.from_bytes(raw)
            except CorruptRecord:
                self._n["corrupt"] += 1
                log.warning("skipping corrupt buffer record %s", qid)
                continue
            self._q[rec.query_id] = rec
            if rec.state.finished:
                self._finished.append(rec.query_id)

    # ---- measurements (pure inputs)

    def record_generation_time(self, seconds: float, now: float | None = None) -> None:
        """Feed one measured generation time (seconds), taken at ``now`` (default: the latest
        time the buffer saw), into the α window. Feed real query generations only: a warm-up
        call pages weights in and is several times slower than the calls that follow."""
        if now is not None:
            self._clock = max(self._clock, now)
        if math.isfinite(seconds) and seconds >= 0:
            self._alphas.append((self._clock if now is None else now, seconds))

    def _recent_alphas(self, now: float) -> list[float]:
        return [s for at, s in self._alphas if at > now - self.alpha_window_s]

    def alpha_at(self, now: float) -> float:
        """α at ``now``: mean of the generation times measured in the last ``alpha_window_s``
        seconds (0 = unknown: nothing measured recently)."""
        xs = self._recent_alphas(now)
        return sum(xs) / len(xs) if xs else 0.0

    @property
    def alpha_max_s(self) -> float:
        """α of this node at the latest time seen (see :meth:`alpha_at`)."""
        return self.alpha_at(self._clock)

    def rate_window_at(self, alpha_s: float) -> float:
        """The window λ is counted over: ``rate_window_s``, stretched to ``1/(slack·λ_max)``."""
        lam_max = max_stable_rate_per_s(alpha_s, self.layers_m, self.proposers_k)
        if not math.isfinite(lam_max):
            return self.rate_window_s
        return max(self.rate_window_s, 1.0 / (self.slack * lam_max))

    def arrival_rate_per_s(self, now: float) -> float:
        w = self.rate_window_at(self.alpha_at(now))
        return sum(1 for t in self._arrivals if t > now - w) / w

    def _trim(self, now: float) -> None:
        # keep arrivals as long as the widest window could count them
        w = max(self.rate_window_s, self.rate_window_at(self.alpha_at(now)))
        while self._arrivals and self._arrivals[0] <= now - w:
            self._arrivals.popleft()

    # ---- queries

    def unfinished(self) -> list[BufferedQuery]:
        """Unfinished queries, oldest first (what recovery must resume)."""
        return sorted((r for r in self._q.values() if not r.state.finished),
                      key=lambda r: (r.accepted_at, r.query_id))

    def get(self, query_id: QueryId) -> BufferedQuery | None:
        return self._q.get(query_id)

    def __contains__(self, query_id) -> bool:
        return query_id in self._q

    def admit(self, announce: QueryAnnounce, *, local: bool, now: float) -> Admitted | Busy:
        """Admit a query, writing it durably before returning ``Admitted``.

        Returns ``Busy`` (nothing written) if the id is known, the buffer is full, the
        stability bound would be violated, or the query could not start before its deadline:
        the node's model serves one call at a time, so a new query waits for the ``n`` open
        queries ahead of it, about ``n·α`` seconds, and needs ``α`` itself. Accepting it anyway
        would only turn an honest 429 now into a timeout later (reason ``deadline``).
        An idle node (no unfinished query) always admits a new id: see the module docstring.
        """
        self._clock = max(self._clock, now)
        if announce.query_id in self._q:
            self._n["duplicate"] += 1
            return Busy("duplicate", 0.0)
        n_open = sum(1 for r in self._q.values() if not r.state.finished)
        alpha = self.alpha_at(now)
        self._trim(now)
        busy = None if n_open == 0 else self._refusal(announce, n_open, alpha, now)
        if busy is not None:
            self._n[busy.reason] += 1
            w = self.rate_window_at(alpha)
            log.warning("buffer: refused %s (%s, %s): open %d/%d, alpha %.2f s from %d "
                        "generations, admitted %d in the last %.0f s (max stable rate %.4f/s "
                        "x slack %.2f), retry after %.0f s", announce.query_id, busy.reason,
                        "local" if local else "remote", n_open, self.capacity, alpha,
                        len(self._recent_alphas(now)), self._count_in(now, w), w,
                        max_stable_rate_per_s(alpha, self.layers_m, self.proposers_k),
                        self.slack, busy.retry_after_s)
            return busy
        rec = BufferedQuery(announce, local, QueryState.BUFFERED, now, now)
        self._write(rec)
        self._arrivals.append(now)
        self._n["admitted"] += 1
        if n_open == 0:
            self._n["idle"] += 1
        log.info("buffer: admitted %s (local=%s, open=%d)", rec.query_id, local, n_open + 1)
        return Admitted(rec)

    def _count_in(self, now: float, window_s: float) -> int:
        return sum(1 for t in self._arrivals if t > now - window_s)

    def _refusal(self, announce: QueryAnnounce, n_open: int, alpha: float,
                 now: float) -> Busy | None:
        """Why a busy node must refuse ``announce`` now (None: admit). Pure decision."""
        if n_open >= self.capacity:
            return Busy("full", max(self.retry_after_min_s, alpha))
        if alpha > 0:
            wait_s = n_open * alpha
            if now + wait_s + alpha > announce.created_at + announce.deadline_s:
                return Busy("deadline", max(self.retry_after_min_s, wait_s))
        lam_max = max_stable_rate_per_s(alpha, self.layers_m, self.proposers_k)
        if not math.isfinite(lam_max):
            return None
        w = self.rate_window_at(alpha)
        allowed = self.slack * lam_max * w  # arrivals allowed per window (>= 1 by the stretch)
        recent = [t for t in self._arrivals if t > now - w]
        if len(recent) + 1 <= allowed + 1e-9:
            return None
        # wait until enough old arrivals leave the window
        excess = len(recent) + 1 - int(allowed + 1e-9)
        idx = min(max(excess - 1, 0), len(recent) - 1)
        wait = (recent[idx] + w - now) if recent else alpha
        return Busy("unstable", max(self.retry_after_min_s, wait))

    def set_state(self, query_id: QueryId, state: QueryState, now: float, *, answer: str = "",
                  detail: str = "") -> BufferedQuery:
        """Move a query to ``state`` (durably). Finished states may carry answer/detail."""
        self._clock = max(self._clock, now)
        rec = self._q.get(query_id)
        if rec is None:
            raise UnknownQuery(query_id)
        if state != rec.state and not rec.state.can_move_to(state):
            # a finished query is final: never resurrected, and a failure reported to the user
            # is not turned into "done" by a decision that arrives later (issue 9)
            log.info("buffer: %s stays %s (ignored a move to %s)", query_id, rec.state.value,
                     state.value)
            return rec
        if rec.state == state and not answer and not detail:
            return rec
        new = replace(rec, state=state, updated_at=now, answer=answer or rec.answer,
                      detail=detail or rec.detail)
        self._write(new)
        if state.finished and not rec.state.finished:
            self._finished.append(query_id)
            self._prune()
        log.info("buffer: %s %s -> %s", query_id, rec.state.value, state.value)
        return new

    def _write(self, rec: BufferedQuery) -> None:
        # admissions and final states are fsynced; intermediate states need only survive kill -9
        durable = rec.state in (QueryState.BUFFERED,) or rec.state.finished
        self.store.put(rec.query_id, rec.state.value, rec.updated_at, rec.to_bytes(), durable=durable)
        self._q[rec.query_id] = rec

    def _prune(self) -> None:
        while len(self._finished) > self.finished_keep:
            old = self._finished.popleft()
            self._q.pop(old, None)
            self.store.delete(old)

    def statistics(self, now: float | None = None) -> BufferStatistics:
        by_state: dict[str, int] = {s.value: 0 for s in QueryState}
        for r in self._q.values():
            by_state[r.state.value] += 1
        now = self._clock if now is None else now
        rate = self.arrival_rate_per_s(now)
        alpha = self.alpha_at(now)
        return BufferStatistics(
            capacity=self.capacity,
            unfinished=sum(1 for r in self._q.values() if not r.state.finished),
            by_state=by_state, admitted=self._n["admitted"], refused_full=self._n["full"],
            refused_unstable=self._n["unstable"], refused_deadline=self._n["deadline"], refused_duplicate=self._n["duplicate"],
            alpha_max_s=alpha, arrival_rate_per_s=rate,
            max_stable_rate_per_s=max_stable_rate_per_s(alpha, self.layers_m, self.proposers_k),
            corrupt_records=self._n["corrupt"], alpha_samples=len(self._recent_alphas(now)),
            admitted_idle=self._n["idle"], rate_window_s=self.rate_window_at(alpha),
            slack=self.slack)


__all__ = ["Admitted", "BufferStatistics", "BufferedQuery", "Busy", "CorruptRecord",
           "MemoryStore", "PromptBuffer", "QueryState", "SQLiteStore", "Store", "UnknownQuery",
           "max_stable_rate_per_s", "stability_load"]
