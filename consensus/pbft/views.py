"""Bookkeeping of view changes, each piece a small bounded data structure the replica asks:

* :class:`ViewChangeVotes` -- the view changes received per view (at most four future views
  per sender, so a Byzantine flood only costs its own slots), their weight, and which higher
  view members weighing more than ``W/3`` have reached;
* :class:`AnswerThrottle` -- which copies of a view change deserve an answer (the 1st, 2nd,
  4th, 8th... of one ``(sender, view)``, plus any copy naming new missing seqs);
* :class:`FutureBuffer` -- messages for views not yet entered, with a per-member quota;
* :class:`ViewTimer` -- the replica's one view timer: name, kind and exponential back-off.

None of them emits a message or decides to change view; the
:class:`~consensus.pbft.replica.Replica` does.
"""
from __future__ import annotations

from typing import Optional

from ..effects import CancelTimer, SetTimer
from .group import Group
from .messages import MemberId, ViewChange

VIEWS_PER_SENDER_MAX = 4
"""Future views for which one sender's view change is kept."""
FUTURE_VIEWS_MAX = 64
"""How far above the current view a message may be buffered."""


class ViewChangeVotes:
    """View changes received, per view and sender."""

    def __init__(self, group: Group) -> None:
        self.group = group
        self.by_view: dict[int, dict[MemberId, ViewChange]] = {}
        self.own: dict[int, ViewChange] = {}  # our last few view changes, for replies

    def of(self, view: int) -> dict[MemberId, ViewChange]:
        return self.by_view.get(view, {})

    def weight(self, view: int) -> int:
        return self.group.weight_of(self.by_view.get(view, ()))

    def keep_from(self, view: int) -> None:
        """Forget the view changes for views below ``view``."""
        self.by_view = {v: d for v, d in self.by_view.items() if v >= view}

    def record_own(self, vc: ViewChange) -> None:
        """Record our own view change (replacing an older one for the same view); the last
        four are kept to answer laggards."""
        self.by_view.setdefault(vc.new_view, {})[vc.sender] = vc
        self.own[vc.new_view] = vc
        for v in sorted(self.own)[:-VIEWS_PER_SENDER_MAX]:
            del self.own[v]

    def add(self, vc: ViewChange) -> bool:
        """Count a received view change; False if its sender already has one for the view."""
        per = self.by_view.setdefault(vc.new_view, {})
        if vc.sender in per:
            return False
        per[vc.sender] = vc
        mine = sorted(v for v, d in self.by_view.items() if vc.sender in d)
        for v in mine[:-VIEWS_PER_SENDER_MAX]:
            del self.by_view[v][vc.sender]
            if not self.by_view[v]:
                del self.by_view[v]
        return True

    def view_to_join(self, view: int, me: MemberId) -> Optional[int]:
        """If members (other than ``me``) weighing more than W/3 are in views above ``view``,
        the highest view such a group has reached (at least one honest member is there)."""
        best: dict[MemberId, int] = {}
        for v, per in self.by_view.items():
            if v > view:
                for m in per:
                    if m != me and v > best.get(m, -1):
                        best[m] = v
        group = self.group
        if not group.is_weak(group.weight_of(best)):
            return None
        acc = 0
        for m, v in sorted(best.items(), key=lambda kv: -kv[1]):
            acc += group.weights[m]
            if group.is_weak(acc):
                return v
        return None  # unreachable: the whole of ``best`` is weak


class AnswerThrottle:
    """Answers to view changes go out on the 1st, 2nd, 4th, 8th... copy of one
    ``(sender, view)``: a laggard's retransmissions keep being answered, while two replicas
    answering each other's answers die out quickly. Bounded: cleared when it grows past
    ``16 N + 64`` keys."""

    def __init__(self, members: int) -> None:
        self.limit = 16 * members + 64
        self.copies: dict[tuple[MemberId, int], int] = {}
        self.missing: dict[tuple[MemberId, int], tuple[int, ...]] = {}

    def note(self, vc: ViewChange) -> tuple[bool, bool, bool]:
        """Count one copy of ``vc``. Returns ``(answer, retransmitted, new_missing)``:
        answer it in full; it is not the first copy; or (when not answering in full) it names
        missing seqs it did not name before (a laggard making progress: answer those)."""
        key = (vc.sender, vc.new_view)
        count = self.copies.get(key, 0) + 1
        if len(self.copies) > self.limit:
            self.copies.clear()
            self.missing.clear()
        self.copies[key] = count
        if count & (count - 1) == 0:
            self.missing[key] = vc.missing
            return True, count > 1, False
        if vc.missing and self.missing.get(key) != vc.missing:
            self.missing[key] = vc.missing
            return False, True, True
        return False, True, False


class FutureBuffer:
    """Messages for views this replica has not entered yet, replayed when it enters them.
    One member may hold at most ``buffer_max // N`` (at least 1) of the ``buffer_max``
    places, so one member's flood cannot push out the honest members' messages."""

    def __init__(self, members: int, buffer_max: int) -> None:
        self.buffer_max = buffer_max
        self.quota = max(1, buffer_max // members)
        self.by_view: dict[int, list] = {}
        self.size = 0
        self.by_sender: dict[MemberId, int] = {}

    def add(self, msg, view_now: int) -> bool:
        """Keep ``msg`` for its view; False (not kept) when it is too far ahead or over quota."""
        v = getattr(msg, "view", None)
        if (v is None or v > view_now + FUTURE_VIEWS_MAX or self.size >= self.buffer_max
                or self.by_sender.get(msg.sender, 0) >= self.quota):
            return False
        self.by_view.setdefault(v, []).append(msg)
        self.size += 1
        self.by_sender[msg.sender] = self.by_sender.get(msg.sender, 0) + 1
        return True

    def keep_from(self, view: int) -> None:
        self.by_view = {v: b for v, b in self.by_view.items() if v >= view}
        self._recount()

    def pop(self, view: int) -> list:
        out = self.by_view.pop(view, [])
        self._recount()
        return out

    def _recount(self) -> None:
        by: dict[MemberId, int] = {}
        for msgs in self.by_view.values():
            for m in msgs:
                by[m.sender] = by.get(m.sender, 0) + 1
        self.by_sender = by
        self.size = sum(by.values())


class ViewTimer:
    """The replica's one view timer. Kinds: ``"active"`` (work pending in a working view),
    ``"quorum"`` (a quorum asked for this view, waiting for its new-view) and ``"wait"``
    (view change sent, no quorum yet: retransmit). The delay doubles per fruitless view
    change (``backoff``) and, for ``"wait"``, per retransmission (``wait_backoff``), capped
    at ``2**16`` times ``timeout_s``."""

    def __init__(self, me: MemberId, timeout_s: float) -> None:
        self.me = me
        self.timeout_s = timeout_s
        self.name: Optional[str] = None
        self.kind: Optional[str] = None
        self.generation = 0
        self.backoff = 0
        self.wait_backoff = 0

    def fired(self, name) -> Optional[str]:
        """The kind of the running timer if ``name`` is it (it stops), else None."""
        if name != self.name or name is None:
            return None
        kind = self.kind
        self.name = self.kind = None
        return kind

    def reset_backoff(self) -> None:
        self.backoff = 0
        self.wait_backoff = 0

    def stop(self, out: list) -> None:
        if self.name is not None:
            out.append(CancelTimer(self.name))
            self.name = self.kind = None

    def want(self, kind: Optional[str], view: int, out: list) -> None:
        """Make ``kind`` (or no timer) the one running, appending the effects to ``out``."""
        if kind == self.kind:
            return
        self.stop(out)
        if kind is not None:
            self.generation += 1
            self.name = f"pbft-view:{self.me}:{view}:{self.generation}"
            self.kind = kind
            exp = self.backoff + (self.wait_backoff if kind == "wait" else 0)
            out.append(SetTimer(self.name, self.timeout_s * (1 << min(exp, 16))))
