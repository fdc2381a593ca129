"""How long the originator may take to judge a round's candidates: a budget from measured
embedding times, not a fixed 30 s (issue 9).

At the round timeout the originator decides on its own ranking of the candidates, which needs
its own embedding of them. On a shared CPU, when every member embeds at the same moment, that
took 30-60 s, longer than ``round_timeout_s`` (30 s), and 10 of 22 accepted queries failed with
"round timed out before the originator could judge" although the mesh decided seconds later.

Now, if the round timer fires while the originator's embedding is still running, it waits
for it, for :meth:`JudgeBudget.budget_s` more seconds: ``factor`` (3) times the expected time
to embed that many texts, from the per-text embedding times measured on this node (the time
from asking for an embedding to getting it, so queueing behind other embeddings counts), at
least ``floor_s`` (5 s). Meanwhile a decision reached by the other members still ends the
query normally. Only when that budget passes too does the query fail.

Pure: times are arguments.
"""
from __future__ import annotations

import math
from collections import deque


class JudgeBudget:
    """Measured embedding times and the judging budget derived from them.

    Args:
        window: per-text embedding times kept (most recent; default 32).
        factor: budget = factor x expected time for the texts (default 3).
        floor_s: smallest budget, seconds (default 5).
        default_s: budget before anything was measured, seconds (default 30, the old fixed
            round timeout).
    """

    def __init__(self, *, window: int = 32, factor: float = 3.0, floor_s: float = 5.0,
                 default_s: float = 30.0) -> None:
        assert factor >= 1 and floor_s > 0 and default_s > 0
        self.factor, self.floor_s, self.default_s = factor, floor_s, default_s
        self._per_text: deque[float] = deque(maxlen=window)
        self._started: dict[str, tuple[float, int]] = {}

    def started(self, job_id: str, n_texts: int, now: float) -> None:
        """An embedding of ``n_texts`` texts was asked for at ``now``."""
        self._started[job_id] = (now, max(1, n_texts))
        while len(self._started) > 4096:  # jobs that never report back: forget the oldest
            self._started.pop(next(iter(self._started)))

    def finished(self, job_id: str, now: float, ok: bool = True) -> None:
        """The embedding ``job_id`` returned at ``now`` (``ok=False``: it failed)."""
        t = self._started.pop(job_id, None)
        if t is None or not ok:
            return
        s = (now - t[0]) / t[1]
        if math.isfinite(s) and s >= 0:
            self._per_text.append(s)

    @property
    def per_text_s(self) -> float:
        """Mean measured seconds per embedded text (0: nothing measured yet)."""
        return sum(self._per_text) / len(self._per_text) if self._per_text else 0.0

    def budget_s(self, n_texts: int) -> float:
        """Seconds the originator may still wait to judge ``n_texts`` candidates."""
        if not self._per_text:
            return self.default_s
        return max(self.floor_s, self.factor * self.per_text_s * max(1, n_texts))


__all__ = ["JudgeBudget"]
