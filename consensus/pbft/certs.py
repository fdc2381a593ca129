"""Pure certificate checks of PBFT: is this bundle of other members' messages proof of what
it claims? Functions of (message, :class:`~consensus.pbft.group.Group`, ``authentic``) with no
replica state, so they can be property-tested on their own
(``tests/consensus/test_pbft_certs.py``).

``authentic(msg) -> bool`` is the signature check of one nested message (the replica builds
it from its ``verify`` hook and :func:`~consensus.pbft.codec.signing_bytes`; it must return
False rather than raise). Every check counts each sender once, rejects non-members and asks
the group's :class:`~consensus.quorum.Quorum` whether the weight is enough.

* :func:`valid_prepared_cert`: a pre-prepare from its view's primary plus prepares for the
  same ``(view, seq, digest)`` whose weight with the primary's is a quorum.
* :func:`valid_checkpoint_proof`: a quorum of matching checkpoints.
* :func:`valid_view_change`: its checkpoint proof and each prepared certificate are valid,
  at most one certificate per seq, ``missing`` within bounds.
* :func:`compute_new_view`: the pre-prepares a new primary must send (Castro & Liskov's
  O-set): per seq above the highest stable checkpoint, the highest-view certificate's value
  or a no-op.
* :func:`check_new_view`: a quorum of valid view changes for the view, sent by its primary,
  whose pre-prepares are exactly :func:`compute_new_view` of them.
* :func:`valid_commit_proof`: a value and a quorum of matching commits for it.
"""
from __future__ import annotations

import enum
from typing import Callable, Iterable

from .group import Group
from .messages import (
    NULL_DIGEST, NULL_VALUE, Checkpoint, Commit, CommitProof, Message, NewView, PreparedCert,
    PrePrepare, Prepare, ViewChange, digest_of,
)

Authentic = Callable[[Message], bool]


def always_authentic(msg: Message) -> bool:
    """The ``authentic`` check of an unauthenticated replica (it refuses nested messages)."""
    return True


def valid_prepared_cert(cert: PreparedCert, group: Group, authentic: Authentic, *,
                        view_below: int, stable_seq: int) -> bool:
    """``cert`` proves its pre-prepare was prepared in a view below ``view_below``, at a seq
    in the window ``(stable_seq, stable_seq + watermark_window]``."""
    if type(cert) is not PreparedCert:
        return False
    pp = cert.pre_prepare
    if type(pp) is not PrePrepare or not (0 <= pp.view < view_below):
        return False
    if not (stable_seq < pp.seq <= stable_seq + group.watermark_window):
        return False
    if pp.sender != group.primary(pp.view) or len(pp.value) > group.value_bytes_max:
        return False
    if digest_of(pp.value) != pp.digest:
        return False
    if not authentic(pp):
        return False
    weights = group.weights
    w = weights[pp.sender]
    seen = {pp.sender}
    for p in cert.prepares:
        if (type(p) is not Prepare or p.view != pp.view or p.seq != pp.seq
                or p.digest != pp.digest or p.sender not in weights or p.sender in seen):
            return False
        if not authentic(p):
            return False
        seen.add(p.sender)
        w += weights[p.sender]
    return group.is_quorum(w)


def valid_checkpoint_proof(seq: int, proof: tuple[Checkpoint, ...], group: Group,
                           authentic: Authentic) -> bool:
    """``proof`` is a quorum of matching checkpoints for ``seq`` (empty for ``seq == 0``)."""
    if seq == 0:
        return not proof
    if seq % group.checkpoint_interval or not proof:
        return False
    weights = group.weights
    senders = set()
    sd = proof[0].state_digest
    w = 0
    for ck in proof:
        if (type(ck) is not Checkpoint or ck.seq != seq or ck.state_digest != sd
                or ck.sender not in weights or ck.sender in senders):
            return False
        if not authentic(ck):
            return False
        senders.add(ck.sender)
        w += weights[ck.sender]
    return group.is_quorum(w)


def valid_view_change(vc: ViewChange, group: Group, authentic: Authentic) -> bool:
    """The certificates and checkpoint proof ``vc`` carries are valid (``vc``'s own
    signature is the caller's business: it may be the outer message)."""
    if not isinstance(vc.new_view, int) or not isinstance(vc.stable_seq, int):
        return False
    if vc.new_view < 1 or vc.stable_seq < 0:
        return False
    if not valid_checkpoint_proof(vc.stable_seq, vc.checkpoint_proof, group, authentic):
        return False
    if len(vc.missing) > group.watermark_window or any(
            type(n) is not int or not (0 < n <= vc.stable_seq) for n in vc.missing):
        return False
    seqs = set()
    for cert in vc.prepared:
        if not valid_prepared_cert(cert, group, authentic, view_below=vc.new_view,
                                   stable_seq=vc.stable_seq):
            return False
        if cert.pre_prepare.seq in seqs:
            return False
        seqs.add(cert.pre_prepare.seq)
    return True


def compute_new_view(view: int, view_changes: Iterable[ViewChange],
                     primary: str) -> tuple[PrePrepare, ...]:
    """The (unsigned) pre-prepares ``primary`` must send for ``view``: for every seq between
    the highest stable checkpoint and the highest prepared seq in ``view_changes``, the value
    of the highest-view certificate, or the no-op ``b""``. Deterministic: any order of the
    same view changes gives the same tuple (two certificates of one view and seq with
    different digests cannot both be valid -- their quorums would share an honest member
    that prepared both -- but if they come anyway, the larger digest wins, whatever the
    order)."""
    vcs = tuple(view_changes)
    min_s = max(vc.stable_seq for vc in vcs)
    chosen: dict[int, PrePrepare] = {}
    for vc in vcs:
        for cert in vc.prepared:
            pp = cert.pre_prepare
            if pp.seq <= min_s:
                continue
            cur = chosen.get(pp.seq)
            if cur is None or (cur.view, cur.digest) < (pp.view, pp.digest):
                chosen[pp.seq] = pp
    max_s = max(chosen, default=min_s)
    out = []
    for n in range(min_s + 1, max_s + 1):
        pp = chosen.get(n)
        if pp is None:
            out.append(PrePrepare(view, n, NULL_DIGEST, NULL_VALUE, primary))
        else:
            out.append(PrePrepare(view, n, pp.digest, pp.value, primary))
    return tuple(out)


class NewViewCheck(enum.Enum):
    """Outcome of :func:`check_new_view`."""

    VALID = "valid"
    INVALID = "invalid"
    """Not a proof of anything (wrong sender, forged or too few view changes...): ignore."""
    WRONG_PRE_PREPARES = "wrong_pre_prepares"
    """A valid quorum of view changes but other pre-prepares than they imply: the primary
    is faulty (move to the next view)."""


def check_new_view(nv: NewView, group: Group, authentic: Authentic) -> NewViewCheck:
    """Whether ``nv`` installs its view correctly (``nv``'s own signature is the caller's)."""
    if nv.sender != group.primary(nv.view):
        return NewViewCheck.INVALID
    weights = group.weights
    seen = set()
    w = 0
    for vc in nv.view_changes:
        if (type(vc) is not ViewChange or vc.new_view != nv.view
                or vc.sender not in weights or vc.sender in seen):
            return NewViewCheck.INVALID
        if not authentic(vc) or not valid_view_change(vc, group, authentic):
            return NewViewCheck.INVALID
        seen.add(vc.sender)
        w += weights[vc.sender]
    if not group.is_quorum(w):
        return NewViewCheck.INVALID
    expected = compute_new_view(nv.view, nv.view_changes, nv.sender)
    if len(expected) != len(nv.pre_prepares) or any(
            type(a) is not PrePrepare or a != b for a, b in zip(nv.pre_prepares, expected)):
        return NewViewCheck.WRONG_PRE_PREPARES
    if any(not authentic(pp) for pp in nv.pre_prepares):
        return NewViewCheck.INVALID
    return NewViewCheck.VALID


def valid_commit_proof(cp: CommitProof, group: Group, authentic: Authentic) -> bool:
    """``cp.value`` hashes to ``cp.digest`` and ``cp.commits`` are a quorum of matching
    commits for ``(cp.view, cp.seq, cp.digest)``."""
    if len(cp.value) > group.value_bytes_max or digest_of(cp.value) != cp.digest:
        return False
    weights = group.weights
    w = 0
    seen = set()
    for c in cp.commits:
        if (type(c) is not Commit or c.view != cp.view or c.seq != cp.seq
                or c.digest != cp.digest or c.sender not in weights or c.sender in seen):
            return False
        if not authentic(c):
            return False
        seen.add(c.sender)
        w += weights[c.sender]
    return group.is_quorum(w)
