"""One INFO line and one count per query asked at this node: id, method, outcome, time.

:func:`observed_query` wraps the daemon's ``complete(req)``; whatever way the call ends
(decided, refused at admission, failed, timed out, cancelled by a dropped client) it logs

    ``query 3f9a... method=pbft outcome=decided time_s=3.104``

with the same fields as ``extra`` (``query_id``, ``method``, ``outcome``, ``time_s``: JSON logs
carry them as keys) and counts ``p2pmoa_queries_total{method, outcome}``. The query id is
fixed before the call (the client's, else a fresh one), so refusals are logged by id too.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import secrets
import time

import trio

from node.api import ApiError, BadRequest, Busy, DecisionTimeout, DuplicateQuery

log = logging.getLogger("node.query")

OUTCOMES = ("decided", "refused", "invalid", "duplicate", "failed", "cancelled", "error")


def outcome_of(exc: BaseException | None) -> str:
    """The ``outcome`` label of a call that raised ``exc`` (None: it returned an answer)."""
    if exc is None:
        return "decided"
    if isinstance(exc, Busy):
        return "refused"
    if isinstance(exc, DuplicateQuery):
        return "duplicate"
    if isinstance(exc, BadRequest):
        return "invalid"
    if isinstance(exc, DecisionTimeout):
        return "failed"
    if isinstance(exc, trio.Cancelled):
        return "cancelled"
    return "error"


def observed_query(complete):
    """Decorate ``async def complete(self, req)`` of a service that has ``metrics`` and ``cfg``."""
    @functools.wraps(complete)
    async def wrapper(self, req):
        if req.query_id is None:
            req = dataclasses.replace(req, query_id=secrets.token_hex(8))
        method = req.method or getattr(getattr(self, "cfg", None), "consensus", "?")
        t0 = time.perf_counter()
        exc: BaseException | None = None
        try:
            res = await complete(self, req)
            method = str((res.trace or {}).get("method", method)) if isinstance(res.trace, dict) else method
            return res
        except BaseException as e:
            exc = e
            raise
        finally:
            outcome = outcome_of(exc)
            dt = time.perf_counter() - t0
            self.metrics.inc("queries_total", "queries asked at this node, by method and outcome",
                             method=method, outcome=outcome)
            detail = f" ({exc})" if isinstance(exc, ApiError) else ""
            log.info("query %s method=%s outcome=%s time_s=%.3f%s", req.query_id, method, outcome,
                     dt, detail, extra={"query_id": req.query_id, "method": method,
                                        "outcome": outcome, "time_s": round(dt, 6)})
    return wrapper
