"""The memory steps of the machine (collaborative memory, :mod:`p2pmoa.memory_share`):
answering a local query from memory, retrieving notes before generating, sharing a decided
answer, checking and storing shares from peers. The memory rules live in
:class:`~p2pmoa.memory_share.MemoryAgent` (``self.mem``); this part only routes events and
effects for it.
"""
from __future__ import annotations

import logging

import numpy as np

from p2pmoa.buffer import QueryState
from p2pmoa.effects import Deliver, PeerId, Send
from p2pmoa.identity import Envelope
from p2pmoa.memory_share import entry_id_of
from p2pmoa.messages import Decision, MemoryShare

from .common import Job, JobKind, Step
from .core import Core
from .state import Origin

log = logging.getLogger("p2pmoa.protocol")


class MemoryHooks(Core):
    def _memory_vector(self, s: Step, job: Job, v: np.ndarray) -> None:
        ok = v.ndim == 2 and v.shape[0] == 1 and v.shape[1] > 0 and bool(np.all(np.isfinite(v)))
        qid = job.key
        if job.kind is JobKind.MEMS:  # an accepted shared entry's query, embedded by us
            if ok:
                self.mem.store_incoming(qid, v[0], s.now)
            return
        ann = self._mem_wait.pop(qid, None)
        if ann is not None:  # our user's query
            if ok:
                self.mem.on_vector(qid, ann.prompt, v[0], local=True)
                hit = self.mem.answer_from_memory(qid)
                if hit is not None:
                    self.mem.remember_answer(qid, ann.prompt, hit.answer, s.now)
                    self._buffer_state(s, qid, QueryState.DONE, answer=hit.answer)
                    self._count("answered_from_memory")
                    log.info("query %s: answered from memory (entry %s)", qid, hit.entry_id)
                    s.out.append(Deliver(qid, hit.answer, {
                        "query_id": qid, "method": "memory", "originator": self.me,
                        "n_proposals": 0, "proposals": [], "members": [],
                        "decision": {"proposer": "", "digest": hit.digest.hex(), "view": 0},
                        "memory": self.mem.trace(qid), "notes": ["answered from shared memory"]}))
                    return
            self._start_origin(s, ann)
            return
        st = self._answers.get(qid)
        if st is None:
            return
        if ok:
            self.mem.on_vector(qid, st.ann.prompt, v[0], local=False)
        self._generate(s, st.ann)

    def _memory_decided(self, s: Step, o: Origin, d: Decision) -> dict:
        qid = o.ann.query_id
        members = o.round.members if o.round is not None else (self.me,)
        share = self.mem.decided(qid, o.ann.prompt, d, members, s.now)
        if share is not None:
            for peer in self.mem.fanout(sorted(self.peers), share.members):
                self._send(s, peer, share)
        return self.mem.trace(qid)

    def _on_memory_share(self, s: Step, env: Envelope, msg: MemoryShare) -> None:
        self._memory_share_check(s, env.sender, msg, s.frame)

    def _memory_share_check(self, s: Step, sender: PeerId, msg: MemoryShare,
                            frame: bytes | None = None) -> None:
        if self.mem is None:
            self._reject("memory_disabled")
            return
        rec = self.buffer.get(msg.query_id)
        prompt = rec.announce.prompt if rec is not None and rec.announce.origin == msg.origin else None
        v = self.mem.receive(sender, msg, my_decision=self._decisions.get(msg.query_id),
                             my_prompt=prompt, weights=self.trust.weights,
                             frame=frame, trust_score=self.trust.score)
        if v.blame:
            self._reject(f"memory_{v.reason}")
            self.trust.bad(sender, f"memory_{v.reason}", s.now)
        if v.status != "accepted":
            return
        if v.endorse:
            for peer in self.mem.fanout(sorted(self.peers), msg.members):
                self._send(s, peer, msg)
        for peer in self.mem.fanout(sorted(self.peers), msg.members) if v.relay else ():
            for f in v.relay:  # the members' own signed frames, unchanged
                s.out.append(Send(peer, f))
        self._embed(s, Job(JobKind.MEMS, entry_id_of(msg.origin, msg.query_id)), (msg.query,))


__all__ = ["MemoryHooks"]
