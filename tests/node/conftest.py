"""Shared helpers for node tests: free loopback ports and bounded polling."""
from __future__ import annotations

import socket
import time

import pytest
import trio


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picked it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def wait_until(predicate, timeout_s: float = 15.0, what: str = "condition") -> None:
    """Poll ``predicate`` on trio's clock until true; fail the test after ``timeout_s``."""
    with trio.move_on_after(timeout_s):
        while not predicate():
            await trio.sleep(0.02)
        return
    pytest.fail(f"timed out after {timeout_s} s waiting for {what}")


def poll_until(predicate, timeout_s: float = 30.0, what: str = "condition"):
    """Blocking twin of :func:`wait_until` for tests that watch real processes: return the
    predicate's first truthy value, or fail the test after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        v = predicate()
        if v:
            return v
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
