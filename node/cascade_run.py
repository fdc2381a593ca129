"""``model: p2pmoa/cascade``: agreement-based cascading over ordinary mesh queries.

The policy is :class:`p2pmoa.cascade.Cascade` (pure: ``first() -> Ask``,
``on_result(answer, trace) -> Ask | Done``); this module drives it with the daemon's own query
path. Each ``Ask`` becomes an ordinary query of this node, id ``<parent>.c1`` / ``.c2``, with
the step's method and per-query proposer cap (``UserQuery.proposers_max``: the cheap tier
invites one peer besides this node, so it costs 2 model calls), and its delivery is awaited.

Promises:

* Admission of the first level happens in :meth:`CascadeRunner.submit`, before a response
  starts (busy is a real 429, a reused id a 409), like any query.
* Every later failure is a :class:`~node.api.CascadeFailed` (504) naming the level and its
  query id, whose record stays at ``GET /v1/queries/<id>``: a sub-query the mesh gave up on,
  or an escalation refused at admission. Nothing waits beyond the sub-queries' own bounds.
* The user's deadline (``p2pmoa.deadline_s``, else the node's ``deadline_s``) covers the
  whole cascade: the escalation gets what is left of it; with less than
  :data:`ESCALATE_MIN_S` left, the cascade ends at level 1 with the cheap tier's decision and
  says so (``escalation_skipped``) rather than run past the deadline.
* ``usage`` is the sum of the levels' usage (each level's as an ordinary query reports it);
  the trace says what each level cost (``calls``: proposals received, ``completion_tokens``
  of all of them).
* Its levels neither read nor write the node's memory (docs/memory.md): see :meth:`_ask`.

Limitations: a cascade gets no answer from memory. The cascade's own state lives in the
daemon's RAM: after a restart its levels' queries are resumed by the protocol and readable by
id, but nobody escalates (the client retries).
"""
from __future__ import annotations

import dataclasses
import secrets
import time
from collections import OrderedDict
from typing import Awaitable, Callable

from node.api import ApiError, CascadeFailed, CompletionRequest, CompletionResult, DuplicateQuery
from p2pmoa.cascade import Ask, Cascade, CascadePolicy, Done

ESCALATE_MIN_S = 1.0
"""Least time left of the deadline for which the cascade still escalates (seconds)."""
RECORDS_MAX = 1024
"""Cascades remembered for ``GET /v1/queries/<parent id>`` (oldest forgotten first)."""

Submit = Callable[[CompletionRequest], Awaitable[Callable[[], Awaitable[CompletionResult]]]]


class CascadeRunner:
    """Runs cascades for one daemon.

    Args:
        submit: the daemon's ``submit`` (admits one ordinary query, returns its waiter).
        deadline_s: the node's default deadline, used when the request names none.
        policy: the cascade policy (default: 2 proposers, m = 2, escalate to all, ``vote``).
        clock: monotonic seconds (injectable for tests).
    """

    def __init__(self, submit: Submit, deadline_s: float, policy: CascadePolicy | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._submit = submit
        self.deadline_s = deadline_s
        self.policy = policy or CascadePolicy()
        self._clock = clock
        self._records: OrderedDict[str, dict] = OrderedDict()

    def query(self, query_id: str) -> dict | None:
        """A cascade's record (what ``GET /v1/queries/<id>`` serves for a parent id)."""
        rec = self._records.get(query_id)
        return None if rec is None else {k: (list(v) if isinstance(v, list) else v)
                                         for k, v in rec.items()}

    async def submit(self, req: CompletionRequest, question: str):
        """Admit the cheap tier's query; return a coroutine function that runs the rest."""
        parent = req.query_id or secrets.token_hex(8)
        if parent in self._records:
            raise DuplicateQuery(f"cascade {parent} was already accepted; its state is at "
                                 f"GET /v1/queries/{parent}", param="p2pmoa.query_id")
        c = Cascade(question, self.policy)
        t0 = self._clock()
        budget_s = req.deadline_s if req.deadline_s is not None else self.deadline_s
        step: Ask = c.first()
        wait = await self._ask(req, parent, step, req.deadline_s)  # admission errors: as-is
        rec = self._records[parent] = {
            "query_id": parent, "state": "running", "local": True, "prompt": question,
            "method": "cascade", "answer": None, "detail": None, "levels": [parent + step.suffix]}
        while len(self._records) > RECORDS_MAX:
            self._records.popitem(last=False)

        async def result() -> CompletionResult:
            nonlocal step, wait
            levels: list[dict] = []
            try:
                while True:
                    res = await self._level_result(wait, parent, step)
                    levels.append(_level(step, parent, res, self._clock() - t0))
                    nxt = c.on_result(res.answer, res.trace)
                    levels[-1].update(c.levels[-1])
                    if isinstance(nxt, Done):
                        done, skipped = nxt, None
                        break
                    left_s = budget_s - (self._clock() - t0)
                    if left_s < ESCALATE_MIN_S:
                        done = Done(res.answer, step.level,
                                    f"the cheap tier disagreed; {max(0.0, left_s):.1f} s of the "
                                    f"{budget_s:.1f} s deadline left: not escalated, the "
                                    f"{step.method} pick of level {step.level} stands",
                                    c.levels[-1]["agreeing"], c.levels[-1]["answers"])
                        skipped = "deadline"
                        break
                    try:
                        wait = await self._ask(req, parent, nxt, left_s)
                    except ApiError as exc:
                        raise CascadeFailed(
                            f"cascade {parent}: level {nxt.level} (query {parent}{nxt.suffix}) "
                            f"was refused: {exc}; level {step.level} (query "
                            f"{parent}{step.suffix}) answered {res.answer[:200]!r} without "
                            "agreement", param="model") from exc
                    step = nxt
                    rec["levels"].append(parent + step.suffix)
            except CascadeFailed as exc:
                rec.update(state="failed", detail=str(exc))
                raise
            except BaseException as exc:
                rec.update(state="failed", detail=f"{type(exc).__name__}: {exc}"[:300])
                raise
            rec.update(state="done", answer=done.answer)
            return _result(parent, done, skipped, levels, self.policy, self._clock() - t0)
        return result

    async def _ask(self, req: CompletionRequest, parent: str, step: Ask,
                   deadline_s: float | None):
        # memory off: a level's answer is unverified until the cascade decides (the cheap
        # tier's disagreeing answer must not be stored), and an escalation answered from
        # memory would be answered by that very answer (seen: "answered from shared memory")
        sub = dataclasses.replace(req, query_id=parent + step.suffix, method=step.method,
                                  proposers_max=step.proposers_max, deadline_s=deadline_s,
                                  memory=False)
        return await self._submit(sub)

    @staticmethod
    async def _level_result(wait, parent: str, step: Ask) -> CompletionResult:
        try:
            return await wait()
        except ApiError as exc:
            raise CascadeFailed(f"cascade {parent}: level {step.level} (query "
                                f"{parent}{step.suffix}) failed: {exc}", param="model") from exc


def _level(step: Ask, parent: str, res: CompletionResult, at_s: float) -> dict:
    props = res.trace.get("proposals") or []
    return {"level": step.level, "query_id": parent + step.suffix, "method": step.method,
            "proposers_max": step.proposers_max, "calls": len(props),
            "completion_tokens": sum(int(p.get("completion_tokens") or 0) for p in props),
            "usage": {"prompt_tokens": res.prompt_tokens,
                      "completion_tokens": res.completion_tokens},
            "done_at_s": round(at_s, 6), "trace": res.trace}


def _result(parent: str, done: Done, skipped: str | None, levels: list[dict],
            policy: CascadePolicy, total_s: float) -> CompletionResult:
    trace = {
        "query_id": parent, "method": "cascade",
        "originator": levels[-1]["trace"].get("originator"),
        "cascade": {"exit_level": done.level, "reason": done.reason,
                    "agreeing": done.agreeing, "answers": done.answers,
                    "escalation_skipped": skipped,
                    "calls": sum(lv["calls"] for lv in levels),
                    "policy": dataclasses.asdict(policy), "levels": levels},
        "timings": {"total_s": round(total_s, 6)},
    }
    return CompletionResult(parent, done.answer, trace,
                            sum(lv["usage"]["prompt_tokens"] for lv in levels),
                            sum(lv["usage"]["completion_tokens"] for lv in levels))


__all__ = ["CascadeRunner", "ESCALATE_MIN_S"]
