"""The API refuses a foreign Host header (DNS rebinding from a browser page) when bound to one
address, and answers its own address and the loopback names."""
from __future__ import annotations

import socket
import urllib.error
import urllib.request

import trio
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from node.api import api_allowed_hosts, serve_api


def test_allowed_hosts_follow_the_bind_address():
    assert api_allowed_hosts("127.0.0.1") == ["127.0.0.1", "::1", "localhost"]
    assert "10.77.0.10" in api_allowed_hosts("10.77.0.10")
    assert api_allowed_hosts("0.0.0.0") is None
    assert api_allowed_hosts("::") is None


def _get(port: int, host_header: str) -> int:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/ping", headers={"Host": host_header})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_a_rebinding_host_is_refused_and_loopback_answered():
    app = Starlette(routes=[Route("/ping", lambda request: JSONResponse({"ok": True}))])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    codes: dict[str, int] = {}

    async def main():
        shutdown = trio.Event()
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_api, app, "127.0.0.1", port, shutdown)
            for h in (f"127.0.0.1:{port}", f"localhost:{port}", f"evil.example:{port}"):
                codes[h.split(":")[0]] = await trio.to_thread.run_sync(_get, port, h)
            shutdown.set()

    trio.run(main)
    assert codes == {"127.0.0.1": 200, "localhost": 200, "evil.example": 400}
