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


def _post(port: int, origin: str | None) -> int:
    headers = {"Content-Type": "text/plain"}  # a "simple" request: no CORS preflight
    if origin is not None:
        headers["Origin"] = origin
    req = urllib.request.Request(f"http://127.0.0.1:{port}/ping", data=b"{}", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_a_cross_site_post_is_refused_and_same_origin_or_no_origin_answered():
    async def ping(request):
        return JSONResponse({"ok": True})
    app = Starlette(routes=[Route("/ping", ping, methods=["GET", "POST"])])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    codes: dict[str, int] = {}

    async def main():
        shutdown = trio.Event()
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_api, app, "127.0.0.1", port, shutdown)
            for name, origin in (("none", None), ("own", f"http://127.0.0.1:{port}"),
                                 ("site", "https://evil.example"), ("null", "null"),
                                 ("other-port", "http://127.0.0.1:1")):
                codes[name] = await trio.to_thread.run_sync(_post, port, origin)
            codes["get-from-site"] = await trio.to_thread.run_sync(_get, port, f"127.0.0.1:{port}")
            shutdown.set()

    trio.run(main)
    assert codes == {"none": 200, "own": 200, "site": 403, "null": 403, "other-port": 403,
                     "get-from-site": 200}
