"""Clients honour 429 Retry-After within a bounded budget, and say so (issue 9)."""
from __future__ import annotations

import trio

from node.api import build_app, serve_api
from p2pmoa.client import post_json
from tests.node.conftest import free_port
from tests.node.test_api import FakeService


class BusyThenFree(FakeService):
    """Refuses the first ``n_busy`` questions with 429 (Retry-After 3 s), then answers."""

    def __init__(self, n_busy: int) -> None:
        super().__init__()
        self.n_busy = n_busy

    async def submit(self, req):
        self.busy = self.n_busy > 0
        self.n_busy -= 1
        return await super().submit(req)

    async def complete(self, req):
        self.busy = self.n_busy > 0
        self.n_busy -= 1
        return await super().complete(req)


def call(svc, **kw):
    port = free_port()
    out, said, slept = [], [], []

    async def main():
        stop = trio.Event()
        async with trio.open_nursery() as n:
            await n.start(serve_api, build_app(svc), "127.0.0.1", port, stop)
            out.append(await trio.to_thread.run_sync(lambda: post_json(
                f"http://127.0.0.1:{port}/v1/chat/completions",
                {"messages": [{"role": "user", "content": "abc"}]},
                say=said.append, sleep=slept.append, timeout_s=10, **kw)))
            stop.set()
    trio.run(main)
    return out[0], said, slept


def test_retries_after_the_hint_and_says_so():
    for stream in (False, True):
        reply, said, slept = call(BusyThenFree(2), stream=stream)
        assert reply.status == 200 and reply.retries == 2, reply
        assert reply.body["choices"][0]["message"]["content"] == "cba"
        assert slept == [3.0, 3.0] and len(said) == 2 and "retrying in 3 s" in said[0]


def test_gives_up_when_the_budget_is_spent():
    reply, said, slept = call(BusyThenFree(100), budget_s=7.0)
    assert reply.status == 429 and slept == [3.0, 3.0]
    assert "giving up" in said[-1] and "retry budget 7 s" in said[-1]
