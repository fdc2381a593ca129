"""The replicated log of one PBFT replica: slots, values, decisions, the executed prefix,
checkpoints, watermarks and the proofs kept for laggards (compare etcd-io/raft's
``log.go``/``storage.go``).

:class:`Log` holds data and answers questions about it; it never emits effects, signs or
counts. The :class:`~consensus.pbft.replica.Replica` decides *when* to change it (a prepare
arrived, a checkpoint became stable) and turns the answers into messages.

Watermarks: sequence numbers live in ``(low, high]`` with ``low`` the stable checkpoint and
``high = low + watermark_window`` (capped at ``seq_max``). A checkpoint is stable when a
quorum of members sent matching ``Checkpoint(seq, state_digest)``; then ``low`` moves up and
everything at or below it is truncated, except commit proofs for the last ``pending_max``
decided seqs (a replica cut off for longer than a window still catches up on them).
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Iterable, Optional

from .group import Group
from .messages import (
    DIGEST_BYTES, NULL_DIGEST, NULL_VALUE, Checkpoint, Commit, CommitProof, MemberId,
    PreparedCert, PrePrepare, Prepare, ViewChange,
)


class Slot:
    """Everything known about one ``(view, seq)``."""

    __slots__ = ("pre_prepare", "prepares", "commits", "prep_weight", "commit_weight",
                 "prepared", "commit_sent")

    def __init__(self) -> None:
        self.pre_prepare: Optional[PrePrepare] = None
        self.prepares: dict[MemberId, Prepare] = {}
        self.commits: dict[MemberId, Commit] = {}
        self.prep_weight: dict[bytes, int] = {}
        self.commit_weight: dict[bytes, int] = {}
        self.prepared = False
        self.commit_sent = False


class Log:
    """Slots, values, decisions, checkpoints and watermarks of one replica."""

    def __init__(self, group: Group, *, seq_max: Optional[int], pending_max: int) -> None:
        self.group = group
        self.seq_max = seq_max
        self.pending_max = pending_max
        self.low = 0  # stable checkpoint seq (low watermark)
        self.stable_proof: tuple[Checkpoint, ...] = ()
        self.last_executed = 0
        self.state_digest = b"\x00" * DIGEST_BYTES
        self.slots: dict[tuple[int, int], Slot] = {}
        self.certs: dict[int, tuple[int, Slot]] = {}  # seq -> (view, prepared slot)
        self.values: dict[bytes, bytes] = {NULL_DIGEST: NULL_VALUE}
        self.decided: dict[int, tuple[int, bytes]] = {}  # seq -> (view, digest), > low
        self.decided_digests: OrderedDict[bytes, int] = OrderedDict()
        self.checkpoints: dict[int, dict[MemberId, Checkpoint]] = {}
        self.far_checkpoints: dict[MemberId, Checkpoint] = {}  # highest far-ahead per member
        self.own_checkpoints: dict[int, bytes] = {}
        self.skipped: set[int] = set()  # seqs <= low decided by others, not seen here
        self.old_proofs: dict[int, tuple] = {}  # (view, digest, value, slot) below low
        self.proof_commits: dict[int, tuple[Commit, ...]] = {}  # seqs decided by a proof
        self._done = False  # all_done() became true

    # ---------------------------------------------------------------- watermarks, slots

    @property
    def high(self) -> int:
        h = self.low + self.group.watermark_window
        return h if self.seq_max is None else min(h, self.seq_max)

    def all_done(self) -> bool:
        """With a ``seq_max``: every seq up to it is decided or below the stable checkpoint
        (once true it stays true: decisions are final and ``low`` only grows)."""
        if self._done:
            return True
        if self.seq_max is None:
            return False
        decided, low = self.decided, self.low
        for s in range(1, self.seq_max + 1):
            if s not in decided and s > low:
                return False
        self._done = True
        return True

    def slot(self, view: int, seq: int) -> Slot:
        key = (view, seq)
        s = self.slots.get(key)
        if s is None:
            s = self.slots[key] = Slot()
        return s

    def mark_prepared(self, view: int, seq: int, slot: Slot) -> None:
        """Record ``slot`` as prepared; it becomes seq's certificate if its view is highest."""
        slot.prepared = True
        best = self.certs.get(seq)
        if best is None or best[0] < view:
            self.certs[seq] = (view, slot)

    def best_certs(self) -> tuple[PreparedCert, ...]:
        """The prepared certificate of the highest view for each seq (for a view change)."""
        out = []
        for seq in sorted(self.certs):
            view, slot = self.certs[seq]
            pp = slot.pre_prepare
            assert pp is not None and slot.prepared, "a certificate needs a prepared slot"
            preps = tuple(p for m, p in sorted(slot.prepares.items())
                          if p.digest == pp.digest and m != pp.sender)
            out.append(PreparedCert(pp, preps))
        return tuple(out)

    # ---------------------------------------------------------------- decisions

    def record_decision(self, seq: int, view: int, digest: bytes, value: bytes) -> None:
        self.decided[seq] = (view, digest)
        self.values[digest] = value
        dd = self.decided_digests
        dd[digest] = seq
        while len(dd) > self.pending_max:
            dd.popitem(last=False)

    def decided_value(self, seq: int) -> Optional[bytes]:
        d = self.decided.get(seq)
        return None if d is None else self.values.get(d[1])

    def execute_next(self) -> Optional[int]:
        """Execute the next seq if it is decided (chaining its digest into
        ``state_digest``); return it, or None when the executed prefix cannot grow."""
        nxt = self.last_executed + 1
        d = self.decided.get(nxt)
        if d is None:
            return None
        self.last_executed = nxt
        self.state_digest = hashlib.sha256(self.state_digest + d[1]).digest()
        return nxt

    def commit_proof_parts(self, seq: int) -> Optional[tuple[int, bytes, bytes, tuple]]:
        """``(view, digest, value, commits)`` proving the decision at ``seq``, if this log
        still holds a quorum of its commits."""
        dec = self.decided.get(seq)
        if dec is not None:
            view, d = dec
            slot = self.slots.get((view, seq))
            value = self.values.get(d)
        elif seq in self.old_proofs:
            view, d, value, slot = self.old_proofs[seq]
        else:
            return None
        if value is None:
            return None
        commits = self.proof_commits.get(seq)
        if commits is None:
            if slot is None:
                return None
            commits = tuple(c for m, c in sorted(slot.commits.items()) if c.digest == d)
        if not self.group.is_quorum(self.group.weight_of(c.sender for c in commits)):
            return None
        return view, d, value, commits

    def seqs_lacked_by(self, vc: ViewChange, *, joint: bool) -> list[int]:
        """Seqs whose commit proof the sender of ``vc`` may lack: decided here above its
        stable checkpoint (with ``joint``, not those it holds a certificate for from the
        deciding view or later), decided below our checkpoint, and its ``missing`` ones."""
        has = {c.pre_prepare.seq: c.pre_prepare.view for c in vc.prepared}
        decided = self.decided
        wanted = [n for n in sorted(decided) if n > vc.stable_seq
                  and not (joint and has.get(n, -1) >= decided[n][0])]
        floor = max(vc.stable_seq, self.low - self.group.watermark_window)
        wanted += [n for n in sorted(self.old_proofs) if n > floor and n not in decided]
        wanted += [n for n in vc.missing if n in self.old_proofs or n in decided]
        return wanted

    def adopt_commit_proof(self, cp: CommitProof) -> list[tuple[Commit, Commit]]:
        """Add a valid proof's commits to its slot (a skipped seq is no longer missing) and
        keep them to pass on; returns ``(old, new)`` commits that conflict (equivocation)."""
        self.skipped.discard(cp.seq)
        slot = self.slot(cp.view, cp.seq)
        conflicts = []
        for c in cp.commits:
            old = slot.commits.get(c.sender)
            if old is None:
                slot.commits[c.sender] = c
                slot.commit_weight[c.digest] = (slot.commit_weight.get(c.digest, 0)
                                                + self.group.weights[c.sender])
            elif old.digest != c.digest:
                conflicts.append((old, c))
        self.proof_commits[cp.seq] = cp.commits
        return conflicts

    def views_weakly_committed(self, seq: int, digest: bytes) -> list[int]:
        """Views in which members weighing more than W/3 committed ``digest`` at ``seq``: an
        honest member did, so a quorum may follow (worth storing the value for)."""
        return [v for (v, s), slot in self.slots.items() if s == seq
                and self.group.is_weak(slot.commit_weight.get(digest, 0))]

    def values_held_bytes(self) -> int:
        return sum(map(len, self.values.values())) + sum(
            len(p[2]) for p in self.old_proofs.values())

    # ---------------------------------------------------------------- checkpoints

    def add_checkpoint(self, ck: Checkpoint) -> tuple[bool, Optional[tuple[Checkpoint, ...]]]:
        """Count a well-formed checkpoint. Returns ``(stale, proof)``: ``stale`` when it is
        at or below ``low`` (or an old far one), ``proof`` (a quorum of matching checkpoints)
        once ``ck.seq`` is stable."""
        if ck.seq <= self.low:
            return True, None
        if ck.seq > self.low + 2 * self.group.watermark_window:
            return self._add_far_checkpoint(ck)
        per = self.checkpoints.setdefault(ck.seq, {})
        if ck.sender in per:
            return False, None
        per[ck.sender] = ck
        agree = [c for c in per.values() if c.state_digest == ck.state_digest]
        if self.group.is_quorum(self.group.weight_of(c.sender for c in agree)):
            return False, tuple(agree)
        return False, None

    def _add_far_checkpoint(self, ck: Checkpoint) -> tuple[bool, Optional[tuple[Checkpoint, ...]]]:
        """A checkpoint far above the window (we were cut off while others went on): keep only
        each member's highest one (bounded memory) and adopt it once a quorum agrees."""
        prev = self.far_checkpoints.get(ck.sender)
        if prev is not None and prev.seq >= ck.seq:
            return True, None
        self.far_checkpoints[ck.sender] = ck
        agree = tuple(c for m, c in sorted(self.far_checkpoints.items())
                      if c.seq == ck.seq and c.state_digest == ck.state_digest)
        if self.group.is_quorum(self.group.weight_of(c.sender for c in agree)):
            return False, agree
        return False, None

    def stabilise(self, seq: int, state_digest: bytes, proof: tuple[Checkpoint, ...]) -> bool:
        """Make checkpoint ``seq`` stable (``seq > low``): move ``low``, remember skipped seqs
        and proofs for laggards. Returns True when the replica had not executed up to ``seq``
        and adopted ``state_digest`` (state transfer); call :meth:`truncate` afterwards."""
        self.low = seq
        self.stable_proof = proof
        for n in range(self.last_executed + 1, seq + 1):
            if n not in self.decided:
                self.skipped.add(n)
        # Remember what we skipped (bounded by pending_max, oldest forgotten first): a
        # pending request may have been decided there, and view changes ask for the proofs.
        pmax = self.pending_max
        if len(self.skipped) > pmax:
            self.skipped = set(sorted(self.skipped)[-pmax:])
        for n, (v, d) in self.decided.items():
            if n <= seq:
                slot = self.slots.get((v, n))
                value = self.values.get(d)
                if value is not None and (slot is not None or n in self.proof_commits):
                    self.old_proofs[n] = (v, d, value, slot)
        if len(self.old_proofs) > pmax:
            self.old_proofs = dict(sorted(self.old_proofs.items())[-pmax:])
        if len(self.proof_commits) > pmax:
            self.proof_commits = dict(sorted(self.proof_commits.items())[-pmax:])
        if self.last_executed < seq:
            self.last_executed = seq
            self.state_digest = state_digest
            return True
        return False

    def truncate(self, seq: int, keep_values: Iterable[bytes]) -> None:
        """Forget everything at or below ``seq`` except ``keep_values`` (digests of requests
        still pending) and what slots above ``seq`` need."""
        self.slots = {k: s for k, s in self.slots.items() if k[1] > seq}
        self.certs = {n: c for n, c in self.certs.items() if n > seq}
        self.checkpoints = {n: c for n, c in self.checkpoints.items() if n > seq}
        self.far_checkpoints = {m: c for m, c in self.far_checkpoints.items() if c.seq > seq}
        self.own_checkpoints = {n: c for n, c in self.own_checkpoints.items() if n >= seq}
        dropped = [n for n in self.decided if n <= seq]
        keep = {v[1] for n, v in self.decided.items() if n > seq}
        for n in dropped:
            del self.decided[n]
        keep.update(keep_values)
        keep.update(pp.digest for s in self.slots.values() if (pp := s.pre_prepare) is not None)
        keep.add(NULL_DIGEST)
        self.values = {d: v for d, v in self.values.items() if d in keep}
