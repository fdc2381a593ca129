"""Agreement-based cascading (ABC) as a policy over ordinary queries.

Ask the cheap tier first (a query with a small proposer cap: the originator and one peer by
default); if at least ``m`` of its answers state the same answer (canonical-answer
equivalence, :mod:`p2pmoa.agreement`), that is the answer (exit level 1). Otherwise escalate:
an ordinary query to every node (the policy's consensus method decides); exit level 2 when at
least ``m`` of the escalated answers agree, level 3 when none do (the consensus pick stands,
but nothing vouches for it).

The policy composes ordinary queries and needs nothing from the protocol beyond what a query
already returns (the decided answer and the trace's ``proposals``). It is pure: a
:class:`Cascade` is told each query's result and says what to ask next (:class:`Ask`) or that
it is done (:class:`Done`); :func:`run` drives it with any ``ask`` callable (the in-process
mesh in ``bench/quality.py``, the daemon's query path for ``model: p2pmoa/cascade``).
``p2pmoa.moa`` uses the same tier rule (:func:`tier_agrees`) for ``--mode cascade``.

No I/O, no clock, no randomness.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

from p2pmoa import agreement


class CascadeConfigError(ValueError):
    """A cascade policy that cannot run (the message names the field)."""


@dataclass(frozen=True)
class CascadePolicy:
    """How a cascade escalates.

    Args:
        first: proposers of the cheap tier, the originator included (>= 1).
        m: answers that must agree to exit at a level (1 <= m; m <= first to ever exit early).
        full: proposers of the escalation (None: every live node).
        method: consensus method of each ordinary query (``vote``, ``score``, ``pbft``, ...).
        threshold: :func:`p2pmoa.agreement.equivalent` threshold.
    """

    first: int = 2
    m: int = 2
    full: int | None = None
    method: str = "vote"
    threshold: float = agreement.AGREE_THRESHOLD

    def __post_init__(self):
        if self.first < 1:
            raise CascadeConfigError(f"first must be >= 1, got {self.first}")
        if self.m < 1:
            raise CascadeConfigError(f"m must be >= 1, got {self.m}")
        if self.full is not None and self.full <= self.first:
            raise CascadeConfigError(f"full must exceed first={self.first}, got {self.full}")


@dataclass(frozen=True)
class Ask:
    """Send one ordinary query: ``proposers_max`` proposals (None: all), ``method``.
    ``level`` is the cascade level it serves; ``suffix`` makes its query id distinct (``.c1``,
    ``.c2``: a ``.`` is outside the query ids a client may choose, so a level's id never meets
    a client's, and it stays one URL segment for ``GET /v1/queries/{id}``)."""

    level: int
    proposers_max: int | None
    method: str
    suffix: str


@dataclass(frozen=True)
class Done:
    """The cascade's answer, the level it exited at and why."""

    answer: str
    level: int
    reason: str
    agreeing: int
    answers: int


@dataclass(frozen=True)
class TierVerdict:
    agreed: bool
    leader: int | None  # index of the answer that speaks for the largest agreeing cluster
    size: int  # answers in that cluster


def tier_agrees(answers: Sequence[str], question: str, m: int,
                threshold: float = agreement.AGREE_THRESHOLD) -> TierVerdict:
    """Do at least ``m`` of ``answers`` state the same answer? (Two echoes of the question
    agreeing state nothing: see :func:`p2pmoa.agreement.states_answer`.)"""
    if not answers:
        return TierVerdict(False, None, 0)
    cs = agreement.clusters(list(answers), question, threshold=threshold)
    top = next((c for c in cs if agreement.states_answer(answers[c.leader], question)), None)
    if top is None:
        return TierVerdict(False, None, 0)
    return TierVerdict(len(top.members) >= m, top.leader, len(top.members))


def proposal_answers(trace: dict) -> list[str]:
    """The answers of a query's trace that took part in its round, in trace order."""
    props = trace.get("proposals") or []
    return [str(p.get("answer", "")) for p in props if p.get("in_round", True)]


@dataclass
class Cascade:
    """One user question's cascade (see the module docstring)."""

    question: str
    policy: CascadePolicy = field(default_factory=CascadePolicy)
    levels: list[dict] = field(default_factory=list)
    done: Done | None = None

    def first(self) -> Ask:
        return Ask(1, self.policy.first, self.policy.method, ".c1")

    def on_result(self, answer: str, trace: dict) -> Ask | Done:
        """Record the result of the query asked for the current level; say what comes next."""
        if self.done is not None:
            raise RuntimeError("the cascade is already done")
        level = len(self.levels) + 1
        texts = proposal_answers(trace)
        v = tier_agrees(texts, self.question, self.policy.m, self.policy.threshold)
        self.levels.append({"level": level, "answers": len(texts), "agreeing": v.size,
                            "agreed": v.agreed, "answer": answer})
        if level == 1 and not v.agreed:
            return Ask(2, self.policy.full, self.policy.method, ".c2")
        if level == 1:
            # the query's own decision, if it is in the agreeing cluster (it is, for vote/score)
            pick = answer if (answer and agreement.equivalent(answer, texts[v.leader], self.question,
                                                              threshold=self.policy.threshold)) \
                else texts[v.leader]
            self.done = Done(pick, 1, f"{v.size} of {len(texts)} cheap-tier answers agree", v.size, len(texts))
        else:
            lvl = 2 if v.agreed else 3
            why = (f"{v.size} of {len(texts)} answers agree" if v.agreed
                   else f"no {self.policy.m} of {len(texts)} answers agree; the {self.policy.method} pick stands")
            self.done = Done(answer, lvl, why, v.size, len(texts))
        return self.done


def run(question: str, ask: Callable[[Ask], tuple[str, dict]],
        policy: CascadePolicy | None = None) -> tuple[Done, list[dict]]:
    """Drive a :class:`Cascade` with ``ask(Ask) -> (answer, trace)``; returns the result and
    the per-level records (what each level saw)."""
    c = Cascade(question, policy or CascadePolicy())
    step: Ask | Done = c.first()
    while isinstance(step, Ask):
        answer, trace = ask(step)
        step = c.on_result(answer, trace)
    return step, c.levels


__all__ = ["Ask", "Cascade", "CascadeConfigError", "CascadePolicy", "Done", "TierVerdict",
           "proposal_answers", "run", "tier_agrees"]
