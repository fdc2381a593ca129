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


def _status(port: int, headers: dict[str, str], data: bytes | None = None) -> int:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/ping", data=data, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _serve_and_probe(probes) -> dict[str, int]:
    """Serve a /ping app through ``serve_api`` on loopback and return the HTTP status of each
    probe; ``probes(port)`` maps a name to (headers, body or None for a GET)."""
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
            for name, (headers, data) in probes(port).items():
                codes[name] = await trio.to_thread.run_sync(_status, port, headers, data)
            shutdown.set()

    trio.run(main)
    return codes


def test_a_rebinding_host_is_refused_and_loopback_answered():
    codes = _serve_and_probe(lambda port: {
        h: ({"Host": f"{h}:{port}"}, None) for h in ("127.0.0.1", "localhost", "evil.example")})
    assert codes == {"127.0.0.1": 200, "localhost": 200, "evil.example": 400}


def test_a_cross_site_post_is_refused_and_same_origin_or_no_origin_answered():
    simple = {"Content-Type": "text/plain"}  # a "simple" request: no CORS preflight

    def probes(port):
        origins = {"none": None, "own": f"http://127.0.0.1:{port}", "site": "https://evil.example",
                   "null": "null", "other-port": "http://127.0.0.1:1"}
        out = {k: ({**simple, **({"Origin": o} if o else {})}, b"{}") for k, o in origins.items()}
        out["get-from-site"] = ({"Origin": "https://evil.example"}, None)  # reads stay open
        return out

    assert _serve_and_probe(probes) == {"none": 200, "own": 200, "site": 403, "null": 403,
                                        "other-port": 403, "get-from-site": 200}
