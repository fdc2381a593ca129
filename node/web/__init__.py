"""The node's web page: static files shipped in the package, served at ``/`` by the local API.

No build step and no third-party script: ``static/index.html``, ``static/app.js`` (plain
JavaScript, no dependency) and ``static/style.css``. The page talks only to its own origin:
``POST /v1/chat/completions`` with ``stream: true`` for the answer, ``GET
/v1/queries/{id}/progress`` for the live consensus trace while the mesh decides, ``GET
/status``, ``GET /peers`` and ``GET /metrics`` for the node, mesh, buffer and admission views.
So it works with the API on loopback (the default); see README "Web page" for exposing it.

:func:`web_routes` is all :mod:`node.api` needs; it adds these routes:
    ``GET /``: the page. ``GET /web/{name}``: its script and style sheet.
    ``GET /v1/queries/{id}/progress``: the partial trace of an undecided query asked at this
    node (``phase``, ``proposals`` so far with peer, model, role and arrival time, round
    ``members`` and ``weights``, ``votes``); ``{"phase": "done"|state}`` once it left the
    machine; 404 for an unknown id.
"""
from __future__ import annotations

from importlib.resources import files

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

STATIC = {"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8",
          "index.html": "text/html; charset=utf-8"}
HEADERS = {
    # Only this origin's own script, style and API; no framing (clickjacking), no sniffing.
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
                               "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; "
                               "base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _read(name: str) -> bytes:
    return files(__package__).joinpath("static", name).read_bytes()


def web_routes(service) -> list[Route]:
    """Routes of the page over ``service`` (the daemon, or a fake implementing
    ``progress(id) -> dict | None`` and ``query(id) -> dict | None``)."""

    async def index(request: Request) -> Response:
        return Response(_read("index.html"), media_type=STATIC["index.html"], headers=HEADERS)

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC:
            return JSONResponse({"error": {"message": f"no file {name!r}", "type": "invalid_request_error",
                                           "param": None, "code": "not_found"}}, status_code=404)
        return Response(_read(name), media_type=STATIC[name], headers=HEADERS)

    async def progress(request: Request) -> Response:
        qid = request.path_params["query_id"]
        fn = getattr(service, "progress", None)
        live = fn(qid) if fn is not None else None
        if live is not None:
            return JSONResponse(live)
        rec = service.query(qid)
        if rec is None:
            return JSONResponse({"error": {"message": f"no query {qid!r} at this node",
                                           "type": "invalid_request_error", "param": "query_id",
                                           "code": "query_not_found"}}, status_code=404)
        state = rec.get("state")
        return JSONResponse({"query_id": qid, "phase": "done" if state in ("done", "failed") else state,
                             "state": state})

    return [
        Route("/", index, methods=["GET"]),
        Route("/web/{name}", static, methods=["GET"]),
        Route("/v1/queries/{query_id}/progress", progress, methods=["GET"]),
    ]
