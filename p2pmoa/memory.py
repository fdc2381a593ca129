"""Collaborative memory: a node's private memory and the mesh's shared memory (pure, sans-I/O).

After the collaborative-memory model of the multi-LLM edge survey (Luo et al. 2025), every node
keeps two tiers:

* **private** ``M_priv``: the queries its own users asked and the answers the mesh decided for
  them. Persisted by the driver (node/: SQLite in the data dir, :mod:`p2pmoa.memory_store`),
  never sent to any peer.
* **shared** ``M_shared``: decided (query, consensus answer) pairs that were judged useful to
  others; replicated over the mesh with verification (:mod:`p2pmoa.memory_share`). Bounded:
  ``|M_shared| <= C``; at capacity the entry with the lowest
  ``Score = alpha * AccessCount + beta / (t_now - t_added)`` is evicted.

On a new query q the node retrieves ``E_priv = TopK(M_priv, q, k_priv)`` and
``E_shared = TopK(M_shared, q, k_shared)`` by cosine similarity in the mesh's one embedding
space and builds the prompt ``[q, E_priv, E_shared]`` for its local model
(:func:`build_messages`). If q is a *near-duplicate* of a shared entry (:func:`near_duplicate`:
cosine above ``near_dup_cos`` AND the same distinguishing content, see
:func:`question_keys`), the node may answer from memory at once.

Sharing rule: after the round for q decided answer r, share (q, r) when
``Utility(q) = (1/|M_shared|) * sum_{(q', r') in M_shared} cos(q, q') > tau_share``.
Two edge cases, documented because the formula does not cover them:

* **empty shared memory**: the mean over no entries is undefined; :meth:`Memory.utility`
  returns ``None`` and the entry IS shared (bootstrap: otherwise nothing would ever be shared).
* **near-duplicate already shared**: the existing entry is refreshed (its access count grows)
  instead of storing a second copy, which would only crowd out other entries.

What is shared is always the *decided consensus answer* of the round (the Decision every member
recorded), never one node's own proposal: that is what lets receivers check it.

Every parameter lives in :class:`MemoryConfig`; ``k_priv``, ``k_shared``, ``tau_share``, ``C``
(``capacity``), ``alpha``, ``beta``, ``private_max``, ``near_dup_cos`` and ``retrieve_min_cos``
are node configuration keys (``memory_<name>``). The defaults were chosen by measurement
(docs/memory.md; ``bench/memory.py``, ``p2pmoa sim memory``). Time is an input everywhere (``now``, seconds); nothing here reads a
clock, does I/O or draws random numbers.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Iterable

import numpy as np

from p2pmoa.effects import ChatMessage
from p2pmoa.memory_guard import QuestionKeys, near_duplicate, question_keys, same_question

log = logging.getLogger(__name__)

PRIVATE = "private"
SHARED = "shared"
TIERS = (PRIVATE, SHARED)


class MemoryError_(Exception):
    """Base class of memory errors (named with a trailing underscore: MemoryError is built in)."""


class SpaceMismatch(MemoryError_):
    """A vector of another dimension/space than the tier's was offered."""


@dataclass(frozen=True)
class MemoryConfig:
    """Memory parameters (all in the node config as ``memory_<name>``; defaults measured).

    Args:
        enabled: use memory at all (default True). Off: no retrieval, no storing, no sharing.
        k_priv: private entries retrieved into the prompt (default 1).
        k_shared: shared entries retrieved into the prompt (default 1). Kept on because they
            measurably help the real model (bench/memory_notes.py, SmolLM2-135M, greedy,
            graded against reference answers): on 15 questions whose earlier answer is in
            memory 0.60 correct with the note vs 0.20 without; on 15 questions with the notes
            the production retrieval actually picks (mostly look-alikes, e.g. "capital of
            France" for "capital of Italy": they show the short answer format) 0.47 vs 0.33
            (4 answers fixed, 2 spoiled: a small sample). They cost tokens: bench/memory.py
            total tokens memory on / off 0.707 with k=1 vs 0.685 with k=0 (both within the
            0.75 target). ``k_priv = k_shared = 0`` spends nothing on them.
        retrieve_min_cos: an entry goes into the prompt only if its cosine to the query is at
            least this (default 0.8). Every note costs prompt tokens on every generating node
            (first-guard measurements: 0.787 with k=1 at 0.8, 0.793 with k=2 at 0.8, 0.795 with
            k=1 at 0.7), and the packaged embedders rank look-alikes above paraphrases, so only
            close entries go in (of 102 rounds that got a note in the workload replay, 3 notes
            held the query's own answer).
        tau_share: share a decided answer when Utility(q) > tau_share (default -1.0, i.e.
            share every decided query that is not already there: in ``p2pmoa sim memory`` on
            the shipped workload every higher threshold lowered the hit rate (0.054 at -1,
            0.027-0.035 at 0..0.2) and none changed answer agreement (1.0); docs/memory.md).
        capacity: C, most shared entries (default 1024; the simulated hit rate stopped
            growing between C = 128 and 1024).
        private_max: most private entries (default 10000; oldest least-used go first, by the
            same score as the shared tier).
        alpha: eviction weight of the access count (default 1.0 per access).
        beta: eviction weight of recency, access-seconds (default 600: a new entry outranks an
            entry used once for its first 10 minutes). The simulator's comparison at C = 16
            did NOT separate (alpha, beta) settings beyond seed noise (two runs ranked them
            differently), so this is a design choice, not a measured optimum.
        age_floor_s: the age in ``beta / (t_now - t_added)`` is at least this (default 1 s), so
            an entry added "now" has a finite score.
        near_dup_cos: answer-from-memory threshold on the cosine (default 0.45: the 5th
            percentile of the paraphrase pairs of the shipped workload with the real embedder).
            The cosine only screens out unrelated text; what separates a paraphrase from a
            look-alike is the content guard :func:`same_question` (look-alikes have HIGHER
            cosines than paraphrases with the packaged models). Measured in docs/memory.md.
        near_dup_candidates: the most similar shared entries checked by the guard (default 16).
        answer_from_memory: allow answering near-duplicates from shared memory (default True;
            a client can still refuse it per query with ``"p2pmoa": {"memory": "off"}``).
        endorse_fanout_max: peers a node sends a shared entry (or its endorsement) to
            (default 16).
        endorse_quorum: fraction of the claimed round's member weight (weighed by the
            receiver's own trust) that vouched endorsers must exceed before a non-member
            accepts an entry (default 1/3). It stops a trusted minority of a REAL round from
            pushing another answer under that round's name; it cannot stop a coalition that
            claims a round of its own members (the member list is the sender's claim), which
            is what ``endorse_vouched_min`` bounds. A 2/3 rule would demand that a non-member
            vouch for nearly every member of a round before it accepts, at no gain in safety.
        endorse_trust_min: a member vouches for an entry to a non-member only if the
            non-member's trust score of it is strictly above this (default 0.5, the score of
            a stranger: trust must have been earned in rounds this node saw).
        endorse_vouched_min: vouched endorsers a non-member needs at least (default 3: two
            colluders can never plant an entry in a round they invent, even after earning
            trust; see docs/memory.md for the bound).
        pending_max: entries awaiting endorsements kept at most (default 256).
    """

    enabled: bool = True
    k_priv: int = 1
    k_shared: int = 1
    retrieve_min_cos: float = 0.8
    tau_share: float = -1.0
    capacity: int = 1024
    private_max: int = 10_000
    alpha: float = 1.0
    beta: float = 600.0
    age_floor_s: float = 1.0
    near_dup_cos: float = 0.45
    near_dup_candidates: int = 16
    answer_from_memory: bool = True
    endorse_fanout_max: int = 16
    endorse_quorum: float = 1 / 3
    endorse_trust_min: float = 0.5
    endorse_vouched_min: int = 3
    pending_max: int = 256

    def __post_init__(self):
        assert self.k_priv >= 0 and self.k_shared >= 0, "k_priv and k_shared must be >= 0"
        assert self.capacity >= 1 and self.private_max >= 1, "capacities must be >= 1"
        assert self.alpha >= 0 and self.beta >= 0, "alpha and beta must be >= 0"
        assert self.age_floor_s > 0, "age_floor_s must be > 0"
        assert -1.0 <= self.near_dup_cos <= 1.0, "near_dup_cos is a cosine"
        assert 0.0 < self.endorse_quorum < 1.0, "endorse_quorum is a fraction"


@dataclass(frozen=True)
class MemoryEntry:
    """One remembered (query, decided answer) pair.

    Args:
        entry_id: unique per tier (the query id for private entries; ``origin/query_id`` for
            shared ones).
        tier: ``private`` or ``shared``.
        query, answer: the text of the question and of the decided answer.
        vector: the query's embedding (float32, L2-normalised) in the mesh space.
        t_added: when it was stored, seconds (driver clock).
        access_count: times it was retrieved into a prompt or answered a query.
        digest: sha256 of the answer as decided (shared entries: the round's decision digest).
        members: the round's members (shared entries).
        method: the round's aggregation method.
        origin: the node that asked the query and decided the round.
        query_id: the round's query id.
        endorsers: the members whose signed endorsement this node checked (shared entries).
    """

    entry_id: str
    tier: str
    query: str
    answer: str
    vector: np.ndarray = field(compare=False, repr=False)
    t_added: float
    access_count: int = 0
    digest: bytes = b""
    members: tuple[str, ...] = ()
    method: str = ""
    origin: str = ""
    query_id: str = ""
    endorsers: tuple[str, ...] = ()

    def summary(self) -> dict:
        """JSON-friendly view (no vector) for the CLI and ``GET /v1/memory``."""
        return {"id": self.entry_id, "tier": self.tier, "query": self.query,
                "answer": self.answer, "t_added": self.t_added,
                "access_count": self.access_count, "digest": self.digest.hex(),
                "members": list(self.members), "method": self.method, "origin": self.origin,
                "query_id": self.query_id, "endorsers": list(self.endorsers)}


def eviction_score(entry: MemoryEntry, now: float, alpha: float, beta: float,
                   age_floor_s: float = 1.0) -> float:
    """``alpha * AccessCount + beta / (t_now - t_added)``; the age is floored at ``age_floor_s``
    (an entry added at ``now``, or with a clock that went backwards, still has a finite score).
    The lowest score is evicted first."""
    age = max(now - entry.t_added, age_floor_s)
    return alpha * entry.access_count + beta / age


# --------------------------------------------------------------------------- one tier


class MemoryTier:
    """A bounded set of entries with a matrix of their vectors for top-k by one product.

    Args:
        name: ``private`` or ``shared``.
        capacity: most entries; adding one more evicts the lowest :func:`eviction_score`.
        alpha, beta, age_floor_s: the eviction score's parameters.
    """

    def __init__(self, name: str, capacity: int, *, alpha: float = 1.0, beta: float = 600.0,
                 age_floor_s: float = 1.0):
        assert name in TIERS, f"tier must be one of {TIERS}"
        assert capacity >= 1, "capacity must be >= 1"
        self.name = name
        self.capacity = capacity
        self.alpha, self.beta, self.age_floor_s = alpha, beta, age_floor_s
        self._ids: list[str] = []
        self._pos: dict[str, int] = {}
        self._entries: dict[str, MemoryEntry] = {}
        self._mat = np.zeros((0, 0), np.float32)
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, entry_id: str) -> bool:
        return entry_id in self._pos

    @property
    def dim(self) -> int:
        return self._mat.shape[1]

    def get(self, entry_id: str) -> MemoryEntry | None:
        return self._entries.get(entry_id)

    def entries(self) -> list[MemoryEntry]:
        """Entries, oldest first."""
        return sorted(self._entries.values(), key=lambda e: (e.t_added, e.entry_id))

    def _check_vec(self, v: np.ndarray) -> np.ndarray:
        v = np.asarray(v, np.float32).reshape(-1)
        if v.size == 0 or not np.all(np.isfinite(v)):
            raise SpaceMismatch("empty or non-finite vector")
        if len(self) and v.shape[0] != self.dim:
            raise SpaceMismatch(f"vector of dim {v.shape[0]} offered to a tier of dim {self.dim}")
        n = float(np.linalg.norm(v))
        return v / n if n > 0 else v

    def add(self, entry: MemoryEntry, now: float) -> list[MemoryEntry]:
        """Store ``entry`` (replacing one with the same id); returns the entries evicted."""
        assert entry.tier == self.name, f"a {entry.tier} entry offered to the {self.name} tier"
        v = self._check_vec(entry.vector)
        entry = replace(entry, vector=v)
        if entry.entry_id in self._pos:
            i = self._pos[entry.entry_id]
            self._mat[i] = v
            self._entries[entry.entry_id] = entry
            return []
        evicted = []
        while len(self) >= self.capacity:
            victim = min(self._entries.values(),
                         key=lambda e: (eviction_score(e, now, self.alpha, self.beta,
                                                       self.age_floor_s), e.t_added, e.entry_id))
            self.remove(victim.entry_id)
            evicted.append(victim)
            self.evictions += 1
        n = len(self._ids)
        if n == 0:
            self._mat = np.zeros((8, v.shape[0]), np.float32)
        elif n >= self._mat.shape[0]:
            grown = np.zeros((self._mat.shape[0] * 2, self.dim), np.float32)
            grown[:n] = self._mat[:n]
            self._mat = grown
        self._mat[n] = v
        self._ids.append(entry.entry_id)
        self._pos[entry.entry_id] = n
        self._entries[entry.entry_id] = entry
        return evicted

    def remove(self, entry_id: str) -> MemoryEntry | None:
        """Delete one entry (swap with the last row); returns it, or None if absent."""
        i = self._pos.pop(entry_id, None)
        if i is None:
            return None
        last = len(self._ids) - 1
        if i != last:
            moved = self._ids[last]
            self._ids[i] = moved
            self._pos[moved] = i
            self._mat[i] = self._mat[last]
        self._ids.pop()
        self._mat[last] = 0.0
        return self._entries.pop(entry_id)

    def clear(self) -> int:
        n = len(self)
        self._ids, self._pos, self._entries = [], {}, {}
        self._mat = np.zeros((0, 0), np.float32)
        return n

    def touch(self, entry_id: str, n: int = 1) -> None:
        e = self._entries.get(entry_id)
        if e is not None:
            self._entries[entry_id] = replace(e, access_count=e.access_count + n)

    def similarities(self, q: np.ndarray) -> np.ndarray:
        """Cosine of ``q`` to every stored query (row order of the internal matrix)."""
        if not len(self):
            return np.zeros(0, np.float32)
        q = self._check_vec(q)
        return self._mat[: len(self)] @ q

    def top_k(self, q: np.ndarray, k: int, min_cos: float = -1.0) -> list[tuple[MemoryEntry, float]]:
        """The ``k`` entries most similar to ``q`` (cosine >= ``min_cos``), best first; ties to
        the older entry. An empty tier or ``k == 0`` gives []."""
        if k <= 0 or not len(self):
            return []
        sims = self.similarities(q)
        n = len(sims)
        idx = np.arange(n) if k >= n else np.argpartition(-sims, k - 1)[:k]
        chosen = sorted(((float(sims[i]), self._ids[i]) for i in idx if sims[i] >= min_cos),
                        key=lambda t: (-t[0], self._entries[t[1]].t_added, t[1]))
        return [(self._entries[i], s) for s, i in chosen]

    def utility(self, q: np.ndarray) -> float | None:
        """Mean cosine of ``q`` to the stored queries; None when the tier is empty."""
        if not len(self):
            return None
        return float(np.mean(self.similarities(q)))


# --------------------------------------------------------------------------- two tiers


@dataclass(frozen=True)
class Retrieval:
    """What memory offers for one query.

    Args:
        private: (entry, cosine) from the private tier, best first.
        shared: (entry, cosine) from the shared tier, best first.
        hit: the shared entry that is a near-duplicate of the query (answer from memory), or None.
        hit_cos: its cosine.
    """

    private: tuple[tuple[MemoryEntry, float], ...] = ()
    shared: tuple[tuple[MemoryEntry, float], ...] = ()
    hit: MemoryEntry | None = None
    hit_cos: float = 0.0

    @property
    def empty(self) -> bool:
        return not self.private and not self.shared


@dataclass(frozen=True)
class MemoryStatistics:
    private: int
    shared: int
    hits: int
    retrievals: int
    shared_added: int
    shared_refreshed: int
    evictions_shared: int
    evictions_private: int


class Memory:
    """The two tiers and their rules. Pure: the driver persists (``on_change`` callback).

    Args:
        config: :class:`MemoryConfig`.
        on_change: called with ``("put", entry)`` (new or replaced entry), ``("touch", entry)``
            (only its access count changed) or ``("delete", entry)`` after every change, so a
            store (SQLite in the daemon, :mod:`p2pmoa.memory_store`) can mirror it.
    """

    def __init__(self, config: MemoryConfig | None = None, on_change=None):
        self.cfg = config or MemoryConfig()
        c = self.cfg
        self.private = MemoryTier(PRIVATE, c.private_max, alpha=c.alpha, beta=c.beta,
                                  age_floor_s=c.age_floor_s)
        self.shared = MemoryTier(SHARED, c.capacity, alpha=c.alpha, beta=c.beta,
                                 age_floor_s=c.age_floor_s)
        self._on_change = on_change or (lambda op, entry: None)
        self._n = {"hits": 0, "retrievals": 0, "shared_added": 0, "shared_refreshed": 0}

    def tier(self, name: str) -> MemoryTier:
        assert name in TIERS, f"tier must be one of {TIERS}"
        return self.private if name == PRIVATE else self.shared

    @property
    def empty(self) -> bool:
        return not len(self.private) and not len(self.shared)

    def load(self, entries: Iterable[MemoryEntry], now: float, *, replace_all: bool = False) -> None:
        """Restore entries from a store without calling ``on_change`` (bad ones are skipped).
        ``replace_all``: drop what is in memory first (the store was changed by someone else,
        e.g. ``p2pmoa memory forget`` while the node runs)."""
        if replace_all:
            self.private.clear()
            self.shared.clear()
        for e in entries:
            try:
                self.tier(e.tier).add(e, now)
            except (SpaceMismatch, AssertionError) as exc:
                log.warning("memory: skipping stored entry %s: %s", e.entry_id, exc)

    def retrieve(self, query: str, q: np.ndarray, *, answer_ok: bool = True) -> Retrieval:
        """Top-k of both tiers for the prompt, and the near-duplicate hit if any.

        Retrieved entries have their access count incremented (that is what "access" means
        in the eviction score); the hit too.
        """
        c = self.cfg
        if not c.enabled or self.empty:
            return Retrieval()
        priv = self.private.top_k(q, c.k_priv, c.retrieve_min_cos)
        shared_ranked = self.shared.top_k(q, max(c.k_shared, c.near_dup_candidates), -1.0)
        hit, hit_cos = None, 0.0
        if answer_ok and c.answer_from_memory:
            for e, s in shared_ranked:
                if near_duplicate(query, s, e.query, c.near_dup_cos):
                    hit, hit_cos = e, s
                    break
        shared = [(e, s) for e, s in shared_ranked if s >= c.retrieve_min_cos][: c.k_shared]
        for tier, got in ((self.private, priv), (self.shared, shared)):
            for e, _ in got:
                tier.touch(e.entry_id)
                self._on_change("touch", tier.get(e.entry_id))
        if hit is not None and all(e.entry_id != hit.entry_id for e, _ in shared):
            self.shared.touch(hit.entry_id)
            self._on_change("touch", self.shared.get(hit.entry_id))
        if hit is not None:
            hit = self.shared.get(hit.entry_id)
            self._n["hits"] += 1
        self._n["retrievals"] += 1
        return Retrieval(tuple((self.private.get(e.entry_id), s) for e, s in priv),
                         tuple((self.shared.get(e.entry_id), s) for e, s in shared), hit, hit_cos)

    def find_duplicate(self, query: str, q: np.ndarray) -> tuple[MemoryEntry | None, float]:
        """The most similar shared entry that is a near-duplicate of ``query`` (or None, 0)."""
        c = self.cfg
        for e, s in self.shared.top_k(q, c.near_dup_candidates, c.near_dup_cos):
            if near_duplicate(query, s, e.query, c.near_dup_cos):
                return e, s
        return None, 0.0

    def utility(self, q: np.ndarray) -> float | None:
        """``Utility(q) = mean cos(q, q')`` over the shared tier; None when it is empty."""
        return self.shared.utility(q)

    def should_share(self, query: str, q: np.ndarray) -> tuple[bool, float | None, MemoryEntry | None]:
        """(share?, utility, existing near-duplicate). Empty shared memory: share (bootstrap).
        A near-duplicate already there: do not store another copy (the caller refreshes it)."""
        if not self.cfg.enabled:
            return False, None, None
        e, _ = self.find_duplicate(query, q)
        if e is not None:
            return False, self.utility(q), e
        u = self.utility(q)
        return (u is None or u > self.cfg.tau_share), u, None

    def remember_private(self, entry: MemoryEntry, now: float) -> None:
        assert entry.tier == PRIVATE, "remember_private takes a private entry"
        if not self.cfg.enabled:
            return
        for victim in self.private.add(entry, now):
            self._on_change("delete", victim)
        self._on_change("put", self.private.get(entry.entry_id))

    def add_shared(self, entry: MemoryEntry, now: float) -> bool:
        """Store a verified shared entry; a near-duplicate of an existing one refreshes it
        instead (returns False then)."""
        assert entry.tier == SHARED, "add_shared takes a shared entry"
        if not self.cfg.enabled:
            return False
        if entry.entry_id in self.shared:
            return False
        e, _ = self.find_duplicate(entry.query, entry.vector)
        if e is not None:
            self.shared.touch(e.entry_id)
            self._on_change("touch", self.shared.get(e.entry_id))
            self._n["shared_refreshed"] += 1
            return False
        for victim in self.shared.add(entry, now):
            self._on_change("delete", victim)
        self._on_change("put", self.shared.get(entry.entry_id))
        self._n["shared_added"] += 1
        return True

    def forget(self, entry_id: str, tier: str | None = None) -> int:
        """Delete an entry by id from one tier or both; returns how many were deleted."""
        n = 0
        for t in ((tier,) if tier else TIERS):
            e = self.tier(t).remove(entry_id)
            if e is not None:
                self._on_change("delete", e)
                n += 1
        return n

    def clear(self, tier: str | None = None) -> int:
        n = 0
        for t in ((tier,) if tier else TIERS):
            for e in self.tier(t).entries():
                self.tier(t).remove(e.entry_id)
                self._on_change("delete", e)
                n += 1
        return n

    def statistics(self) -> MemoryStatistics:
        return MemoryStatistics(len(self.private), len(self.shared), self._n["hits"],
                                self._n["retrievals"], self._n["shared_added"],
                                self._n["shared_refreshed"], self.shared.evictions,
                                self.private.evictions)


# --------------------------------------------------------------------------- prompts

MEMORY_NOTE = "Notes from memory (earlier answers the mesh agreed on; use only if relevant):"
"""Header of the retrieved notes (short: every note costs prompt tokens on every generation)."""
NOTE_ANSWER_CHARS_MAX = 200
"""Each remembered answer is cut to this many characters in the prompt (small contexts)."""


def build_messages(role: str, prompt: str, retrieval: Retrieval | None) -> tuple[ChatMessage, ...]:
    """The prompt ``[q, E_priv, E_shared]`` for the local model: the role as system message,
    the retrieved notes (private first, then shared, best first, no entry twice) appended to
    it, then the user's question unchanged. No retrieval: exactly (role, question)."""
    if retrieval is None or retrieval.empty:
        return (ChatMessage("system", role), ChatMessage("user", prompt))
    lines, seen = [MEMORY_NOTE], set()
    for e, _ in (*retrieval.private, *retrieval.shared):
        key = (e.query, e.answer)
        if key in seen:
            continue
        seen.add(key)
        lines.append(f"Q: {e.query}\nA: {e.answer[:NOTE_ANSWER_CHARS_MAX]}")
    return (ChatMessage("system", role + "\n\n" + "\n\n".join(lines)), ChatMessage("user", prompt))


def trace_of(retrieval: Retrieval | None, *, answered: bool, opted_out: bool = False) -> dict:
    """The ``p2pmoa_trace.memory`` object of a response.

    ``answered_from_memory``: the answer is a shared entry's decided answer (``entry`` names it:
    id, cosine, its query, decision digest, origin, round members); no round ran.
    ``private_retrieved`` / ``shared_retrieved``: notes put into this node's prompt.
    ``opted_out``: the client said ``"p2pmoa": {"memory": "off"}``; memory was not touched.
    """
    if opted_out:
        return {"answered_from_memory": False, "opted_out": True, "private_retrieved": 0,
                "shared_retrieved": []}
    r = retrieval or Retrieval()
    out = {"answered_from_memory": bool(answered and r.hit is not None), "opted_out": False,
           "private_retrieved": len(r.private),
           "shared_retrieved": [{"id": e.entry_id, "cos": round(s, 4)} for e, s in r.shared]}
    if answered and r.hit is not None:
        out["entry"] = {"id": r.hit.entry_id, "cos": round(r.hit_cos, 4),
                        "query": r.hit.query, "digest": r.hit.digest.hex(),
                        "origin": r.hit.origin, "query_id": r.hit.query_id,
                        "members": list(r.hit.members)}
    return out


__all__ = [
    "MEMORY_NOTE", "Memory", "MemoryConfig", "MemoryEntry", "MemoryError_", "MemoryStatistics",
    "MemoryTier", "PRIVATE", "QuestionKeys", "Retrieval", "SHARED", "SpaceMismatch", "TIERS",
    "build_messages", "eviction_score", "near_duplicate", "question_keys", "same_question",
    "trace_of",
]
