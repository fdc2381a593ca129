"""Trust as the protocol sees it: :class:`TrustPort` and its default, :class:`TrustBookPort`
(``consensus.trust.TrustBook`` with its share cap and growth limit)."""
from __future__ import annotations

from typing import Protocol, Sequence

from consensus.trust import TrustBook


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


__all__ = ["TrustBookPort", "TrustPort"]
