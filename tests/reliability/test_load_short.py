"""Short overload on a real daemon (the 2-minute version is in bench/reliability.py): queries
offered faster than the node serves them get an explicit 429 busy with Retry-After, and every
query the node accepted is answered."""
from __future__ import annotations

import threading
from pathlib import Path

import pytest

from bench.reliability import post
from node.procs import NodeProcess

pytestmark = pytest.mark.real_net


def _burst(node: NodeProcess, n: int) -> list[tuple[int, dict, dict]]:
    out: list = []
    lock = threading.Lock()

    def one(i):
        r = post(node.api, f"burst question {i}", 120)
        with lock:
            out.append(r)
    ts = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(180)
    return out


def test_overload_gets_busy_with_retry_after_and_accepted_queries_are_answered(tmp_path: Path):
    node = NodeProcess("load", tmp_path / "load", model="stand-in",
                       extra=["--proposers-max", "1", "--deadline-s", "30", "--buffer-max", "4",
                              "--stand-in-delay-s", "0.3"]).start()
    try:
        node.wait_ready(60)
        res = _burst(node, 12)
    finally:
        node.stop()
    busy = [(s, h) for s, _, h in res if s == 429]
    accepted = [(s, b) for s, b, _ in res if s != 429]
    assert busy, "12 simultaneous queries into a buffer of 4 must produce busy errors"
    for _, h in busy:
        ra = {k.lower(): v for k, v in h.items()}.get("retry-after")
        assert ra is not None and int(ra) >= 1
    assert accepted and all(s == 200 and b["choices"][0]["message"]["content"]
                            for s, b in accepted), accepted


def test_accepted_queries_are_not_failed_for_queueing_past_their_deadline(tmp_path: Path):
    """Regression (finding of this suite, fixed in ea9a9c3): with 1 s generations and a 1.5 s
    deadline, a burst of 4 was accepted and 3 failed with 504 later; now the ones that cannot
    make their deadline get 429 at admission."""
    node = NodeProcess("deadline", tmp_path / "dl", model="stand-in",
                       extra=["--proposers-max", "1", "--deadline-s", "1.5", "--buffer-max", "16",
                              "--stand-in-delay-s", "1.0"]).start()
    try:
        node.wait_ready(60)
        # the real daemon measures its service time with a warm-up generation at start; the
        # stand-in skips that, so one query first gives admission its measurement
        assert post(node.api, "warm-up", 60)[0] == 200
        res = _burst(node, 4)
    finally:
        node.stop()
    statuses = sorted(s for s, _, _ in res)
    assert 429 in statuses, statuses
    assert all(s in (200, 429) for s in statuses), statuses
