"""A small HTTP client for a node's API that honours ``429 Retry-After`` (issue 9).

A busy node refuses a question with 429 and a ``Retry-After`` hint (seconds). ``p2pmoa ask``,
the demo and the benchmarks used to give up at once (or never see it: streams hid it). They
now wait the hint and retry, within a bounded budget of waiting seconds and attempts, and say
so on stderr. The budget counts the seconds waited on hints, not wall time: this module reads
no clock (the core's rule), it only sleeps.
"""
from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Callable

RETRY_BUDGET_S = 180.0
"""Default most seconds spent waiting on ``Retry-After`` hints for one question."""
ATTEMPTS_MAX = 8


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict
    retries: int = 0
    waited_s: float = 0.0


def _retry_after_s(headers, default_s: float = 1.0) -> float:
    raw = headers.get("Retry-After") if headers is not None else None
    try:
        return max(0.0, float(raw))
    except (TypeError, ValueError):
        return default_s


def post_json(url: str, body: dict, *, timeout_s: float = 600.0,
              budget_s: float = RETRY_BUDGET_S, attempts_max: int = ATTEMPTS_MAX,
              stream: bool = False, say: Callable[[str], None] | None = None,
              sleep: Callable[[float], None] = time.sleep) -> Reply:
    """POST ``body`` as JSON; on 429 wait ``Retry-After`` and retry while the budget lasts.

    Args:
        url: full URL of the endpoint.
        body: JSON body (``stream`` is set from the argument).
        timeout_s: socket timeout of one attempt, seconds.
        budget_s: most seconds spent waiting on hints in total (default 180).
        attempts_max: most attempts (default 8).
        stream: read a server-sent-event stream and return the assembled completion.
        say: where to report retries (default: one line on stderr each).
        sleep: how to wait (tests pass a fake).

    Returns the last reply: 200 with the completion, or the error status and body. Raises
    ``OSError``/``URLError`` when the node cannot be reached.
    """
    say = say or (lambda m: print(m, file=sys.stderr, flush=True))
    data = json.dumps({**body, "stream": stream} if stream else body).encode()
    waited = 0.0
    for attempt in range(1, attempts_max + 1):
        req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout_s) as r:
                out = _read_stream(r) if stream else json.loads(r.read())
                return Reply(r.status, out, attempt - 1, waited)
        except urllib.error.HTTPError as exc:
            try:
                err = json.loads(exc.read() or b"{}")
            except ValueError:
                err = {"error": {"message": "non-JSON error body"}}
            if exc.code != 429:
                return Reply(exc.code, err, attempt - 1, waited)
            wait_s = _retry_after_s(exc.headers)
            msg = (err.get("error") or {}).get("message", "busy")
            if attempt == attempts_max or waited + wait_s > budget_s:
                say(f"p2pmoa: node busy ({msg}); giving up after {attempt} attempts and "
                    f"{waited:.0f} s of waiting (retry budget {budget_s:.0f} s)")
                return Reply(429, err, attempt - 1, waited)
            say(f"p2pmoa: node busy ({msg}); retrying in {wait_s:.0f} s as it asked "
                f"(attempt {attempt + 1} of {attempts_max}, {budget_s - waited - wait_s:.0f} s "
                "of retry budget left)")
            sleep(wait_s)
            waited += wait_s
    raise AssertionError("unreachable: the loop returns")  # pragma: no cover


def _read_stream(r) -> dict:
    """Assemble an OpenAI chat-completion SSE stream into one completion-shaped dict."""
    content, last, err = [], {}, None
    for raw in r:
        line = raw.decode("utf-8", "replace").strip()
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        obj = json.loads(line[6:])
        if "error" in obj:
            err = obj
            continue
        last = obj
        for ch in obj.get("choices", []):
            content.append((ch.get("delta") or {}).get("content") or "")
    if err is not None:
        return err
    out = {k: v for k, v in last.items() if k != "choices"}
    out["object"] = "chat.completion"
    out["choices"] = [{"index": 0, "finish_reason": "stop",
                       "message": {"role": "assistant", "content": "".join(content)}}]
    return out


__all__ = ["ATTEMPTS_MAX", "RETRY_BUDGET_S", "Reply", "post_json"]
