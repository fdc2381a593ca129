"""Memory inside the peer protocol: query lookups, prompts, answer-from-memory, and verified
replication of shared entries (pure, sans-I/O; :class:`MemoryAgent` is the only object
:mod:`p2pmoa.protocol` talks to; its routing is p2pmoa/protocol/memory_hooks.py).

Query path (at the node where a user asked, the *originator*):

1. the query is embedded first (one ``Embed`` of the prompt); :meth:`MemoryAgent.on_vector`
   retrieves ``E_priv`` and ``E_shared`` and finds a near-duplicate shared entry, if any;
2. near-duplicate and the client did not opt out: the node answers at once with the entry's
   decided answer, marked ``p2pmoa_trace.memory.answered_from_memory = true``;
3. otherwise the round runs as before and the originator's own model gets the prompt
   ``[q, E_priv, E_shared]`` (:func:`p2pmoa.memory.build_messages`). A peer answering the
   announce also retrieves from *its* memory for its own model (only when its memory is not
   empty, so an empty memory costs nothing). Entries never travel in the announce: private
   entries never leave the node (only the node's own answer, which may draw on them, does).
4. when the round decides, the originator stores (q, decided answer) in its private memory
   and, if ``Utility(q) > tau_share`` (:meth:`p2pmoa.memory.Memory.should_share`), in its
   shared memory, and sends a signed :class:`~p2pmoa.messages.MemoryShare` to the round's
   members and its peers.

Replication and its verification (a Byzantine node must not be able to plant an entry that
changes honest nodes' answers):

* every :class:`MemoryShare` travels in a signed envelope (forged and unsigned frames die in
  :class:`~p2pmoa.identity.FrameReader`); its ``digest`` must be sha256 of its ``answer``; its
  sender and origin must be among its ``members``;
* a receiver that was a **member** of the round checks it against what it saw itself: the
  decision it recorded for that query (same digest) and the prompt of the announce it answered
  (same query text). Only then does it store the entry, and it *endorses* it: it sends the same
  entry, signed by itself, to its own peers. A share for a round it has not decided (yet) waits
  (bounded) and is re-checked when its decision is recorded; a mismatch is rejected and counted
  against the sender's trust;
* a receiver that was **not** a member cannot check the round itself; it accepts the entry once
  endorsements from at least ``endorse_vouched_min`` (3) distinct *vouched* members (members
  this node has itself seen behave well: trust earned in its own rounds, score above
  ``endorse_trust_min``, or an endorsement of a round it was a member of that it checked
  against its own decision; never one caught endorsing something else), and they
  weigh strictly more than ``endorse_quorum`` (1/3) of the claimed round's member weight *by
  its own trust book* (quarantined members weigh 0). The members list is the sender's claim,
  so the vouching is what stops a coalition from inventing a round of its own members: it can
  plant an entry at a non-member only if at least 3 of its members earned that node's trust. It then relays the members' signed frames, unchanged, to its own peers,
  who check the same quorum of the same signatures: the entry floods the mesh while every
  hop verifies the members' signatures itself (a relay adds no trust of its own). With fewer than a third of the weight Byzantine, at least one honest
  member, who recorded this decision itself, vouched for it. A round with a single member
  (nobody else answered) can never be accepted by anyone else.

Shared entries only ever hold a *decided* answer: the originator shares the Decision of the
round, members endorse only what they decided themselves.
"""
from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from p2pmoa.effects import ChatMessage, PeerId, QueryId
from p2pmoa.memory import (PRIVATE, SHARED, Memory, MemoryEntry, Retrieval, build_messages,
                           trace_of)
from p2pmoa.messages import Decision, MemoryShare

log = logging.getLogger(__name__)

QUERIES_MAX = 1024
"""Per-query memory state (vectors, retrievals) kept at most; the oldest goes first."""


def digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


def share_key(msg: MemoryShare) -> tuple:
    """What endorsers must agree on: the round, its decided digest, the query, the members."""
    return (msg.query_id, msg.origin, msg.digest, digest(msg.query), msg.members, msg.method)


def entry_id_of(origin: str, query_id: str) -> str:
    return f"{origin}/{query_id}"


@dataclass(frozen=True)
class ShareVerdict:
    """Outcome of one received :class:`MemoryShare`.

    Args:
        status: ``accepted`` (verified: embed its query and store it), ``pending`` (waiting for
            endorsements or for our own decision), or ``rejected``.
        reason: why (a metric label: ``bad_digest``, ``not_member``, ``digest_mismatch``,
            ``query_mismatch``, ``duplicate``, ``disabled``, ``awaiting_decision``,
            ``awaiting_endorsements``, ``verified_member``, ``endorsed``).
        endorse: we verified it as a member: send our own signed copy to our peers.
        blame: the sender provably sent something false (count it against its trust).
        relay: accepted on an endorsement quorum: the members' signed frames that convinced us,
            to forward unchanged to our peers (each stays verifiable: its signature is the
            member's), so the entry spreads past the round's neighbourhood.
    """

    status: str
    reason: str
    endorse: bool = False
    blame: bool = False
    relay: tuple[bytes, ...] = ()


class _Bounded(OrderedDict):
    def __init__(self, max_len: int):
        super().__init__()
        self.max_len = max_len

    def __setitem__(self, key, value):
        super().__setitem__(key, value)
        self.move_to_end(key)
        while len(self) > self.max_len:
            self.popitem(last=False)


class MemoryAgent:
    """Per-node memory state the protocol needs; owns nothing of the protocol.

    Args:
        memory: the node's two tiers (:class:`p2pmoa.memory.Memory`).
        me: this node's peer id.
    """

    def __init__(self, memory: Memory, me: PeerId):
        self.memory = memory
        self.me = me
        cfg = memory.cfg
        self._vectors: _Bounded = _Bounded(QUERIES_MAX)
        self._retrievals: _Bounded = _Bounded(QUERIES_MAX)
        self._opted_out: _Bounded = _Bounded(QUERIES_MAX)
        self._answered: _Bounded = _Bounded(QUERIES_MAX)
        self._endorsements: _Bounded = _Bounded(cfg.pending_max)   # key -> {sender}
        self._awaiting: _Bounded = _Bounded(cfg.pending_max)       # qid -> [(sender, msg)]
        self._incoming: _Bounded = _Bounded(cfg.pending_max)       # entry id -> (msg, endorsers)
        self._done: _Bounded = _Bounded(4 * cfg.pending_max)       # keys already decided on
        self._frames: _Bounded = _Bounded(cfg.pending_max)         # key -> {sender: frame}
        self._verified: _Bounded = _Bounded(4 * cfg.pending_max)   # keys we checked as member
        self._credits: _Bounded = _Bounded(4096)                   # peer -> correct endorsements
        self._blamed: _Bounded = _Bounded(4096)                    # peers caught endorsing a lie
        self.counters: dict[str, int] = {}

    def _count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1

    @property
    def enabled(self) -> bool:
        return self.memory.cfg.enabled

    # ------------------------------------------------------------------ query path

    def wants_local_lookup(self, qid: QueryId, allowed: bool) -> bool:
        """A local query: embed it first? (False when memory is off or the client opted out.)"""
        if not allowed:
            self._opted_out[qid] = True
        return self.enabled and allowed

    def wants_peer_lookup(self, qid: QueryId) -> bool:
        """A peer's query we answer: embed it first? Only when our memory has something."""
        return self.enabled and not self.memory.empty and qid not in self._retrievals

    def on_vector(self, qid: QueryId, prompt: str, v: np.ndarray, *, local: bool) -> Retrieval:
        """The query's embedding arrived: retrieve (and, for a local query, find a hit)."""
        vec = np.asarray(v, np.float32).reshape(-1)
        self._vectors[qid] = vec
        try:
            r = self.memory.retrieve(prompt, vec, answer_ok=local)
        except Exception as exc:  # a vector of another space: run without memory, say so
            log.warning("memory: retrieval for %s failed: %s", qid, exc)
            self._count("retrieval_failed")
            r = Retrieval()
        self._retrievals[qid] = r
        return r

    def answer_from_memory(self, qid: QueryId) -> MemoryEntry | None:
        r = self._retrievals.get(qid)
        if r is None or r.hit is None:
            return None
        self._answered[qid] = True
        self._count("answered_from_memory")
        return r.hit

    def messages(self, qid: QueryId, role: str, prompt: str) -> tuple[ChatMessage, ...]:
        """The prompt ``[q, E_priv, E_shared]`` for this node's model."""
        return build_messages(role, prompt, self._retrievals.get(qid))

    def trace(self, qid: QueryId) -> dict:
        return trace_of(self._retrievals.get(qid), answered=bool(self._answered.get(qid)),
                        opted_out=bool(self._opted_out.get(qid)))

    def remember_answer(self, qid: QueryId, prompt: str, answer: str, now: float) -> None:
        """A local query answered from memory: it is still our user's interaction (private)."""
        vec = self._vectors.get(qid)
        if vec is None or self._opted_out.get(qid):
            return
        self.memory.remember_private(
            MemoryEntry(str(qid), PRIVATE, prompt, answer, vec, now), now)

    def decided(self, qid: QueryId, prompt: str, d: Decision, members: Sequence[PeerId],
                now: float) -> MemoryShare | None:
        """Our own query was decided: remember it privately, and share it if useful.

        Returns the :class:`MemoryShare` to send (None: not shared). The shared entry holds the
        round's decided answer ``d.answer`` and digest, never one node's own proposal.
        """
        vec = self._vectors.get(qid)
        if vec is None or self._opted_out.get(qid) or not self.enabled:
            return None
        self.memory.remember_private(
            MemoryEntry(str(qid), PRIVATE, prompt, d.answer, vec, now, digest=d.digest,
                        members=tuple(members), method=d.method, origin=self.me,
                        query_id=str(qid)), now)
        if d.digest != digest(d.answer):
            return None
        share, utility, dup = self.memory.should_share(prompt, vec)
        if dup is not None:
            self.memory.shared.touch(dup.entry_id)
            self._count("share_refreshed")
        if not share:
            self._count("share_declined")
            return None
        msg = MemoryShare(qid, self.me, prompt, d.answer, d.digest, d.method,
                          tuple(sorted(set(members) | {self.me})), now)
        self.memory.add_shared(self._entry(msg, (self.me,), vec, now), now)
        self._done[share_key(msg)] = True
        self._count("shared")
        return msg

    def forget_query(self, qid: QueryId) -> None:
        for d in (self._vectors, self._retrievals):
            d.pop(qid, None)

    # ------------------------------------------------------------------ replication

    @staticmethod
    def _entry(msg: MemoryShare, endorsers: Sequence[str], vec: np.ndarray, now: float) -> MemoryEntry:
        return MemoryEntry(entry_id_of(msg.origin, msg.query_id), SHARED, msg.query, msg.answer,
                           vec, now, digest=msg.digest, members=msg.members, method=msg.method,
                           origin=msg.origin, query_id=str(msg.query_id),
                           endorsers=tuple(sorted(endorsers)))

    def receive(self, sender: PeerId, msg: MemoryShare, *, my_decision: Decision | None,
                my_prompt: str | None, weights: Callable[[Sequence[str]], dict],
                frame: bytes | None = None,
                trust_score: Callable[[str], float]) -> ShareVerdict:
        """Check one received share (``sender`` is the envelope's verified signer).

        Args:
            my_decision: the decision this node recorded for ``msg.query_id`` (None if none).
            my_prompt: the prompt of the announce this node saw for it (None if none).
            weights: this node's trust weights of the given members (ints, 0 = quarantined).
            frame: the signed frame it came in (kept to relay an endorsement quorum).
            trust_score: this node's trust score of a member in [0, 1] (only members above
                ``endorse_trust_min`` vouch for an entry to a non-member).
        """
        v = self._check(sender, msg, my_decision, my_prompt, weights, frame, trust_score)
        self._count(f"share_{v.status}_{v.reason}")
        return v

    def _check(self, sender, msg, my_decision, my_prompt, weights, frame, trust_score) -> ShareVerdict:
        if not self.enabled:
            return ShareVerdict("rejected", "disabled")
        if msg.digest != digest(msg.answer):
            return ShareVerdict("rejected", "bad_digest", blame=True)
        if sender not in msg.members or msg.origin not in msg.members:
            return ShareVerdict("rejected", "not_member", blame=True)
        key = share_key(msg)
        if key in self._done:
            if key in self._verified and sender in msg.members:
                self._credits[sender] = self._credits.get(sender, 0) + 1  # it told the truth
            return ShareVerdict("rejected", "duplicate")
        if self.me in msg.members:
            if my_decision is None:
                self._awaiting.setdefault(msg.query_id, [])
                waiting = self._awaiting[msg.query_id]
                if len(waiting) < 8:
                    waiting.append((sender, msg))
                return ShareVerdict("pending", "awaiting_decision")
            if my_decision.digest != msg.digest:
                self._blamed[sender] = True
                return ShareVerdict("rejected", "digest_mismatch", blame=True)
            if my_prompt is None or my_prompt != msg.query:
                return ShareVerdict("rejected", "query_mismatch", blame=my_prompt is not None)
            self._done[key] = True
            self._verified[key] = True
            self._credits[sender] = self._credits.get(sender, 0) + 1
            self._incoming[entry_id_of(msg.origin, msg.query_id)] = (msg, (self.me, sender))
            return ShareVerdict("accepted", "verified_member", endorse=True)
        ends = self._endorsements.get(key)
        if ends is None:
            ends = set()
            self._endorsements[key] = ends
        ends.add(sender)
        if frame is not None:
            self._frames.setdefault(key, {})[sender] = frame
        c = self.memory.cfg
        w = weights(list(msg.members))
        total = sum(max(0, int(w.get(m, 0))) for m in msg.members)
        vouched = [m for m in ends if self.vouches(m, trust_score)]
        got = sum(max(0, int(w.get(m, 0))) for m in vouched)
        if len(vouched) >= c.endorse_vouched_min and total > 0 and got > c.endorse_quorum * total:
            self._done[key] = True
            self._endorsements.pop(key, None)
            self._incoming[entry_id_of(msg.origin, msg.query_id)] = (msg, tuple(ends))
            relay = tuple((self._frames.pop(key, None) or {}).values())
            return ShareVerdict("accepted", "endorsed", relay=relay)
        return ShareVerdict("pending", "awaiting_endorsements")

    def vouches(self, member: str, trust_score: Callable[[str], float]) -> bool:
        """Does ``member``'s endorsement count at a non-member? Only if this node has seen it
        behave well itself: trust earned in its own rounds (score above
        ``endorse_trust_min``), or an endorsement it checked as a member of that round and
        found true; never after it was caught endorsing something else."""
        if member in self._blamed:
            return False
        return (trust_score(member) > self.memory.cfg.endorse_trust_min
                or self._credits.get(member, 0) >= 1)

    def awaiting(self, qid: QueryId) -> list[tuple[PeerId, MemoryShare]]:
        """Shares that arrived before our own decision for ``qid`` (re-check them now)."""
        return self._awaiting.pop(qid, [])

    def incoming(self, entry_id: str) -> MemoryShare | None:
        got = self._incoming.get(entry_id)
        return got[0] if got else None

    def store_incoming(self, entry_id: str, v: np.ndarray, now: float) -> bool:
        """The accepted share's query was embedded by us: store the entry."""
        got = self._incoming.pop(entry_id, None)
        if got is None:
            return False
        msg, endorsers = got
        vec = np.asarray(v, np.float32).reshape(-1)
        try:
            added = self.memory.add_shared(self._entry(msg, endorsers, vec, now), now)
        except Exception as exc:  # another space's vector: drop it, say so
            log.warning("memory: cannot store shared entry %s: %s", entry_id, exc)
            self._count("store_failed")
            return False
        self._count("stored" if added else "store_refreshed")
        return added

    def fanout(self, peers: Sequence[PeerId], members: Sequence[PeerId]) -> list[PeerId]:
        """Whom to send a share or endorsement: round members first, then other peers."""
        out = [m for m in members if m != self.me]
        out += sorted(p for p in peers if p not in set(members) and p != self.me)
        return out[: self.memory.cfg.endorse_fanout_max]


__all__ = ["MemoryAgent", "ShareVerdict", "digest", "entry_id_of", "share_key"]
