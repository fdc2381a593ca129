"""The node's local HTTP API: OpenAI-compatible chat completions plus status, peers, metrics.

Served by hypercorn's trio worker on ``127.0.0.1:8700`` by default (``--api``), so existing
OpenAI clients work unchanged with ``base_url="http://127.0.0.1:8700/v1"``.

Endpoints:
    ``POST /v1/chat/completions``: body as OpenAI's (``model``, ``messages``, ``max_tokens``,
        ``temperature``, ``top_p``, ``seed``, ``stream``). The answer is the MESH's decision;
        the consensus trace (proposals with peer ids and models, votes, weights, method,
        timings) is in the extra top-level field ``p2pmoa_trace``. With ``stream: true`` the
        reply is server-sent events in OpenAI's chunk format; because the answer exists only
        once the mesh has decided, the content arrives after the decision (keep-alive
        comments are sent while waiting) and the last chunk carries ``p2pmoa_trace``.
        Limits of the mesh today: the gossiped query is ONE prompt (the last user message,
        earlier turns quoted before it; a client's system message is dropped, each node
        answers in its own role). ``max_tokens``, ``temperature``, ``seed`` and
        ``p2pmoa.deadline_s`` travel in ``p2pmoa.protocol.UserQuery`` and the signed
        announce to EVERY proposer (``max_tokens: 16`` makes every peer stop at 16 tokens),
        clamped to each node's limits; ``top_p`` stays each node's own. ``usage`` counts the
        tokens of the answer returned (the chosen proposal, or the synthesis).
        The consensus method can be chosen per request with the model name
        ``p2pmoa/<method>``, the extra field ``consensus`` or
        ``p2pmoa: {"consensus": ..., "deadline_s": ..., "proposers_max": ...}``
        (``proposers_max``: the most proposers of this query, the asking node included; only
        that many peers are invited). ``p2pmoa/cascade`` is agreement-based cascading
        (node/cascade_run.py): a capped cheap query, escalated to the whole mesh only when
        its answers disagree; its trace is ``{"method": "cascade", "cascade": {...}}``.
    ``GET /v1/models``: the mesh models (``p2pmoa``, ``p2pmoa/pbft`` ...) and the local model.
    ``GET /v1/queries/{id}``: a query's state and answer from the durable prompt buffer,
        for a client whose connection dropped (streams name the id in their first chunk,
        ``chatcmpl-<id>``; plain responses in ``id``), e.g. across a node restart.
    ``GET /status``, ``GET /peers``: JSON snapshots. ``GET /metrics``: Prometheus text.
    ``GET /``, ``GET /web/{file}``, ``GET /v1/queries/{id}/progress``: the web page and its
        live trace (routes in node/web/).

Errors use OpenAI's body ``{"error": {"message", "type", "param", "code"}}``: 400 malformed
JSON or fields, 404 unknown model or route, 405 wrong method, 413 body over
``body_bytes_max``, 429 busy (prompt buffer full or admission bound reached; ``Retry-After``
header in seconds), 504 only when the mesh gave up on the query.

Promises kept for any request body (a hypothesis property test sends arbitrary JSON): a
malformed body is a 4xx in that shape, never a 500 or a hang. In detail: a body nested
deeper than ``JSON_DEPTH_MAX`` or holding a string that is not valid Unicode (a lone
surrogate such as ``"\ud800"``) is refused with 400 before anything is counted or buffered;
content parts must be ``{"type": "text", "text": <string>}``; the ``developer`` role current
OpenAI SDKs send is a system message; fields the mesh cannot honour are refused with 400
rather than ignored (``n`` other than 1, ``tools``/``functions``/``tool_choice``). With
``stream: true`` admission happens BEFORE the response starts, so a busy node answers a real
429 with ``Retry-After`` and the first chunk (which names the query id) is sent only once the
query is durably in the prompt buffer.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
import re
import uuid
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Protocol

import trio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from node.web import web_routes
from p2pmoa.effects import ChatMessage, GenParams, QueryResult

log = logging.getLogger(__name__)

TRACE_FIELD = "p2pmoa_trace"
QUERY_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,32}")
MESH_MODEL = "p2pmoa"
METHODS = ("pbft", "averaging", "vote", "aggregate", "score", "cascade")
"""Methods a request may name; ``cascade`` composes ordinary queries (node/cascade_run.py)."""
PROPOSERS_MAX = 32
MESSAGES_MAX = 64
CONTENT_CHARS_MAX = 16_000
MAX_TOKENS_MAX = 2048
KEEPALIVE_S = 5.0
JSON_DEPTH_MAX = 32
"""Deepest nesting of arrays/objects accepted in a request body (a chat body needs 4)."""
ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


class ApiError(Exception):
    """An error the API turns into an OpenAI-style body. ``status`` is the HTTP status."""

    status = 400
    type = "invalid_request_error"
    code: str | None = None

    def __init__(self, message: str, param: str | None = None,
                 retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.param = param
        self.retry_after_s = retry_after_s


class BadRequest(ApiError):
    code = "invalid_request"


class UnknownModel(ApiError):
    status = 404
    code = "model_not_found"


class UnknownQueryId(ApiError):
    status = 404
    code = "query_not_found"


class DuplicateQuery(ApiError):
    """The client-chosen query id was accepted before: the answer is at GET /v1/queries/{id}."""

    status = 409
    code = "duplicate_query"


class Forbidden(ApiError):
    """A browser page of another origin tried a state-changing request (SameOriginGuard)."""

    status = 403
    type = "permission_error"
    code = "cross_origin"


class BodyTooLarge(ApiError):
    status = 413
    code = "request_too_large"


class Busy(ApiError):
    """The prompt buffer is full or admission control refused the query; retry later."""

    status = 429
    type = "server_busy"
    code = "busy"


class InternalError(ApiError):
    status = 500
    type = "server_error"
    code = "internal_error"


class DecisionTimeout(ApiError):
    status = 504
    type = "timeout_error"
    code = "no_decision"


class CascadeFailed(DecisionTimeout):
    """A level of a cascade failed or was refused; the message names its query id."""

    code = "cascade_failed"


@dataclass(frozen=True)
class CompletionRequest:
    """A validated chat completion request, as the node service receives it."""

    messages: tuple[ChatMessage, ...]
    params: GenParams
    method: str | None  # None: the node's configured default
    deadline_s: float | None
    model: str
    query_id: str | None = None
    """Chosen by the client (``p2pmoa.query_id``: it knows the id before any answer, can fetch
    ``GET /v1/queries/{id}`` after a crash, and a resubmission is refused with 409 instead of
    being answered twice), else by the API for streams (sent in the first chunk)."""
    memory: bool = True
    """False: ``"p2pmoa": {"memory": "off"}``, the client forbids memory for this query."""
    proposers_max: int | None = None
    """``p2pmoa.proposers_max``: the most proposers of this query, this node included (None:
    the node's cap); only that many peers are invited to answer."""
    explicit: frozenset = frozenset()
    """The generation parameters the client set itself (``max_tokens``, ``temperature``,
    ``seed``); the others are the node's own defaults (see :meth:`generation`)."""

    def generation(self) -> dict:
        """Keyword arguments for ``p2pmoa.protocol.UserQuery``: what the client asked for
        (None = the node's configured default) and its deadline."""
        p = self.params
        return {"max_tokens": p.max_tokens if "max_tokens" in self.explicit else None,
                "temperature": p.temperature if "temperature" in self.explicit else None,
                "seed": p.seed if "seed" in self.explicit else None,
                "deadline_s": self.deadline_s, "proposers_max": self.proposers_max}


@dataclass(frozen=True)
class CompletionResult:
    query_id: str
    answer: str
    trace: dict
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @classmethod
    def of(cls, query_id: str, result: QueryResult) -> "CompletionResult":
        """From the protocol's typed result (``Deliver.result``): answer and usage are read
        from their fields, never parsed out of the trace."""
        return cls(query_id, result.answer, result.trace, result.usage.prompt_tokens,
                   result.usage.completion_tokens)


class NodeService(Protocol):
    """What the API needs from the daemon (a fake implements it in tests).

    ``submit`` admits the query (raising :class:`Busy` etc.) and returns a coroutine function
    that waits for its result; ``complete`` does both. A service without ``submit`` is
    driven through ``complete`` alone (admission errors then surface inside a stream).
    """

    local_model: str

    async def complete(self, req: CompletionRequest) -> CompletionResult: ...
    def query(self, query_id: str) -> dict | None: ...
    def status(self) -> dict: ...
    def peers(self) -> list[dict]: ...
    def metrics_text(self) -> str: ...
    # optional: def memory_entries(self, tier: str | None) -> list[dict] (GET /v1/memory)


def error_response(exc: ApiError) -> JSONResponse:
    headers = {}
    if exc.retry_after_s is not None:
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after_s)))
    body = {"error": {"message": str(exc), "type": exc.type, "param": exc.param, "code": exc.code}}
    return JSONResponse(body, status_code=exc.status, headers=headers)


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"request body of {declared} bytes exceeds the {limit}-byte limit")
    buf = bytearray()
    async for chunk in request.stream():
        buf += chunk
        if len(buf) > limit:
            raise BodyTooLarge(f"request body exceeds the {limit}-byte limit")
    return bytes(buf)


def _num(body: dict, name: str, lo: float, hi: float, default, kind=float):
    v = body.get(name)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not (lo <= v <= hi):
        raise BadRequest(f"{name} must be a number in [{lo}, {hi}]", param=name)
    if kind is int and int(v) != v:
        raise BadRequest(f"{name} must be an integer", param=name)
    return kind(v)


def check_json_value(value: Any, depth_max: int = JSON_DEPTH_MAX) -> None:
    """Refuse (400) bodies nested deeper than ``depth_max`` or holding strings (keys too)
    that are not valid Unicode, e.g. a lone surrogate: they cannot be stored or gossiped, and
    before this check one was counted as accepted, hung 210 s and was lost."""
    stack = [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, str):
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                raise BadRequest("request contains a string that is not valid Unicode "
                                 "(a lone surrogate escape such as \\ud800)") from None
        elif isinstance(v, (dict, list)):
            if d > depth_max:
                raise BadRequest(f"request body is nested deeper than {depth_max} levels")
            items = v.items() if isinstance(v, dict) else ((None, x) for x in v)
            for k, x in items:
                if k is not None:
                    stack.append((k, d))
                stack.append((x, d + 1))


def _content_text(content: Any, i: int) -> str:
    """A message's text: a string, or OpenAI content parts of type ``text``."""
    if isinstance(content, list):
        texts = []
        for j, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type", "text") != "text" \
                    or not isinstance(part.get("text"), str):
                raise BadRequest(f"messages[{i}].content[{j}] must be a text part "
                                 '{"type": "text", "text": "..."}; other parts are not supported',
                                 param="messages")
            texts.append(part["text"])
        content = "".join(texts)
    if not isinstance(content, str) or len(content) > CONTENT_CHARS_MAX:
        raise BadRequest(f"messages[{i}].content must be a string of at most "
                         f"{CONTENT_CHARS_MAX} characters", param="messages")
    return content


def _refuse_unsupported(body: dict) -> None:
    """Fields the mesh cannot honour are refused, not silently ignored."""
    n = body.get("n")
    if n is not None and (isinstance(n, bool) or n != 1):
        raise BadRequest("n must be 1: the mesh decides one answer per question", param="n")
    for name in ("tools", "functions"):
        if body.get(name) not in (None, []):
            raise BadRequest(f"{name} are not supported: the mesh answers in text only",
                             param=name)
    if body.get("tool_choice") not in (None, "none"):
        raise BadRequest("tool_choice is not supported: the mesh answers in text only",
                         param="tool_choice")


def parse_completion(body: Any, local_model: str, default_max_tokens: int) -> tuple[CompletionRequest, bool]:
    """Validate an OpenAI chat completion body; returns (request, stream?)."""
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    check_json_value(body)
    _refuse_unsupported(body)
    model = body.get("model", MESH_MODEL)
    if not isinstance(model, str):
        raise BadRequest("model must be a string", param="model")
    method = None
    if model in (MESH_MODEL, local_model):
        pass
    elif model.startswith(MESH_MODEL + "/") and model.split("/", 1)[1] in METHODS:
        method = model.split("/", 1)[1]
    else:
        raise UnknownModel(f"The model '{model}' does not exist; see GET /v1/models", param="model")
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise BadRequest("messages must be a non-empty list", param="messages")
    if len(msgs) > MESSAGES_MAX:
        raise BadRequest(f"at most {MESSAGES_MAX} messages", param="messages")
    out = []
    for i, m in enumerate(msgs):
        role = m.get("role") if isinstance(m, dict) else None
        if not isinstance(role, str) or role not in ROLES:
            raise BadRequest(f"messages[{i}] needs role system|developer|user|assistant",
                             param="messages")
        out.append(ChatMessage(ROLES[role], _content_text(m.get("content"), i)))
    if not any(m.role == "user" and m.content.strip() for m in out):
        raise BadRequest("messages need a non-empty user message", param="messages")
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    body = {**body, "max_tokens": max_tokens}
    params = GenParams(
        max_tokens=_num(body, "max_tokens", 1, MAX_TOKENS_MAX, default_max_tokens, int),
        temperature=_num(body, "temperature", 0.0, 2.0, 0.7),
        top_p=_num(body, "top_p", 0.0, 1.0, 0.95),
        seed=_num(body, "seed", 0, 2**31 - 1, 0, int),
    )
    ext = body.get("p2pmoa")
    ext = {} if ext is None else ext
    if not isinstance(ext, dict):
        raise BadRequest("p2pmoa must be an object", param="p2pmoa")
    if "consensus" in body and "consensus" not in ext:  # top-level shorthand
        ext = {**ext, "consensus": body["consensus"]}
    if "consensus" in ext:
        if not isinstance(ext["consensus"], str) or ext["consensus"] not in METHODS:
            raise BadRequest(f"p2pmoa.consensus must be one of {METHODS}", param="p2pmoa.consensus")
        method = ext["consensus"]
    deadline = _num(ext, "deadline_s", 0.1, 3600, None)
    proposers = _num(ext, "proposers_max", 1, PROPOSERS_MAX, None, int)
    query_id = ext.get("query_id")
    if query_id is not None and not (isinstance(query_id, str) and QUERY_ID_RE.fullmatch(query_id)):
        raise BadRequest("p2pmoa.query_id must be 1-32 characters of A-Z a-z 0-9 _ -",
                         param="p2pmoa.query_id")
    memory = ext.get("memory", "on")
    if memory not in ("on", "off"):
        raise BadRequest('p2pmoa.memory must be "on" or "off"', param="p2pmoa.memory")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise BadRequest("stream must be a boolean", param="stream")
    explicit = frozenset(k for k in ("max_tokens", "temperature", "seed") if body.get(k) is not None)
    return CompletionRequest(tuple(out), params, method, deadline, model, query_id,
                             memory=memory == "on", proposers_max=proposers,
                             explicit=explicit), stream


def _completion_body(res: CompletionResult, model: str) -> dict:
    return {
        "id": f"chatcmpl-{res.query_id}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                     "message": {"role": "assistant", "content": res.answer}}],
        "usage": {"prompt_tokens": res.prompt_tokens, "completion_tokens": res.completion_tokens,
                  "total_tokens": res.prompt_tokens + res.completion_tokens},
        TRACE_FIELD: res.trace,
    }


def _chunk(cid: str, model: str, created: int, delta: dict, finish: str | None, **extra) -> bytes:
    obj = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
           "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
           **extra}
    return f"data: {json.dumps(obj)}\n\n".encode()


def _pieces(text: str) -> list[str]:
    """Split an answer into word-ish chunks so SSE clients see incremental deltas."""
    words = text.split(" ")
    return [w + (" " if i < len(words) - 1 else "") for i, w in enumerate(words)][: 10_000] or [""]


def build_app(service: NodeService, body_bytes_max: int = 64 * 1024,
              default_max_tokens: int = 96) -> Starlette:
    """The ASGI app over ``service``. ``body_bytes_max``: request body limit, bytes."""

    async def chat(request: Request) -> Response:
        try:
            raw = await _read_body(request, body_bytes_max)
            try:
                body = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise BadRequest(f"body is not valid JSON: {exc}") from exc
            except RecursionError:
                raise BadRequest(f"request body is nested deeper than {JSON_DEPTH_MAX} "
                                 "levels") from None
            req, stream = parse_completion(body, service.local_model, default_max_tokens)
            if not stream:
                res = await service.complete(req)
                return JSONResponse(_completion_body(res, req.model))
            req = dataclasses.replace(req, query_id=req.query_id or uuid.uuid4().hex[:16])
            submit = getattr(service, "submit", None)
            if submit is not None:
                # admission before the response starts: busy is a real 429 + Retry-After, and
                # the first chunk (naming the query id) follows durable acceptance
                wait = await submit(req)
            else:
                async def wait() -> CompletionResult:
                    return await service.complete(req)
        except ApiError as exc:
            return error_response(exc)
        return StreamingResponse(_stream(req, wait), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})

    async def _stream(req: CompletionRequest, wait) -> AsyncIterator[bytes]:
        created = int(time.time())
        cid = f"chatcmpl-{req.query_id}"
        yield _chunk(cid, req.model, created, {"role": "assistant", "content": ""}, None)
        result: list = []

        async def run() -> None:
            try:
                result.append(await wait())
            except ApiError as exc:
                result.append(exc)
        async with trio.open_nursery() as nursery:
            done = trio.Event()

            async def runner() -> None:
                await run()
                done.set()
            nursery.start_soon(runner)
            while not done.is_set():
                with trio.move_on_after(KEEPALIVE_S):
                    await done.wait()
                if not done.is_set():
                    yield b": waiting for the mesh to decide\n\n"
        res = result[0]
        if isinstance(res, ApiError):
            err = {"error": {"message": str(res), "type": res.type, "param": res.param, "code": res.code}}
            yield f"data: {json.dumps(err)}\n\n".encode()
            yield b"data: [DONE]\n\n"
            return
        cid = f"chatcmpl-{res.query_id}"
        for piece in _pieces(res.answer):
            yield _chunk(cid, req.model, created, {"content": piece}, None)
        usage = {"prompt_tokens": res.prompt_tokens, "completion_tokens": res.completion_tokens,
                 "total_tokens": res.prompt_tokens + res.completion_tokens}
        yield _chunk(cid, req.model, created, {}, "stop", usage=usage, **{TRACE_FIELD: res.trace})
        yield b"data: [DONE]\n\n"

    async def models(request: Request) -> Response:
        ids = [MESH_MODEL] + [f"{MESH_MODEL}/{m}" for m in METHODS] + [service.local_model]
        return JSONResponse({"object": "list", "data": [
            {"id": i, "object": "model", "created": 0, "owned_by": "p2pmoa"} for i in ids]})

    async def query(request: Request) -> Response:
        qid = request.path_params["query_id"]
        rec = service.query(qid)
        if rec is None:
            return error_response(UnknownQueryId(f"no query {qid!r} in this node's buffer",
                                                 param="query_id"))
        return JSONResponse(rec)

    async def status(request: Request) -> Response:
        return JSONResponse(service.status())

    async def peers(request: Request) -> Response:
        return JSONResponse({"peers": service.peers()})

    async def memory(request: Request) -> Response:
        """``GET /v1/memory[?tier=private|shared]``: this node's memory entries (no vectors)."""
        tier = request.query_params.get("tier") or None
        if tier not in (None, "private", "shared"):
            return error_response(BadRequest('tier must be "private" or "shared"', param="tier"))
        entries = getattr(service, "memory_entries", None)
        data = entries(tier) if entries is not None else []
        return JSONResponse({"object": "list", "data": data})

    async def metrics(request: Request) -> Response:
        return PlainTextResponse(service.metrics_text(),
                                 media_type="text/plain; version=0.0.4; charset=utf-8")

    async def http_error(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 404)
        err = ApiError(f"no route {request.method} {request.url.path}" if status in (404, 405)
                       else str(getattr(exc, "detail", "") or "bad request"))
        err.status = status
        err.code = {404: "not_found", 405: "method_not_allowed"}.get(status, "invalid_request")
        return error_response(err)

    async def server_error(request: Request, exc: Exception) -> Response:
        log.exception("API error on %s %s", request.method, request.url.path, exc_info=exc)
        return error_response(InternalError(f"internal error: {type(exc).__name__}"))

    from starlette.exceptions import HTTPException
    app = Starlette(exception_handlers={HTTPException: http_error, Exception: server_error},
                    routes=[
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/v1/queries/{query_id}", query, methods=["GET"]),
        Route("/v1/memory", memory, methods=["GET"]),
        Route("/status", status, methods=["GET"]),
        Route("/peers", peers, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        *web_routes(service),  # the web page at / (node/web/)
    ])
    return app


def api_allowed_hosts(bind_host: str) -> list[str] | None:
    """The Host header values the API answers when bound to ``bind_host`` (others get 400).

    Bound to one address (the default, loopback): that address and the loopback names, so a
    site that rebinds its DNS name to 127.0.0.1 cannot drive the API from a browser. Bound to
    a wildcard (``0.0.0.0``, ``::``): None, any Host, since the user chose to expose it (put an
    authenticating proxy in front, README "The web page").
    """
    h = bind_host.strip("[]")
    if h in ("", "0.0.0.0", "::"):
        return None
    return sorted({h, "127.0.0.1", "localhost", "::1"})


_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class SameOriginGuard:
    """ASGI middleware: a state-changing request that carries an ``Origin`` (every browser
    sends one on a cross-origin POST, including the "simple" ``text/plain`` kind that needs no
    CORS preflight) is answered only when that origin is this API's own (``scheme://Host``).

    Without it any web page the user visits could make the node run queries (the reply is not
    readable cross-origin, but the work and the buffer slot are spent). Clients that are not
    browsers (curl, ``p2pmoa ask``, SDKs) send no ``Origin`` and are unaffected; the node's
    own page is same-origin. Refusals are 403 with an OpenAI-shaped error, counted in
    ``refused``.
    """

    def __init__(self, app):
        self.app = app
        self.refused = 0

    async def __call__(self, scope, receive, send):
        if scope.get("type") == "http" and scope.get("method", "GET") not in _SAFE_METHODS:
            headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                       for k, v in scope.get("headers", ())}
            origin = headers.get("origin")
            own = f"{scope.get('scheme', 'http')}://{headers.get('host', '')}"
            if origin is not None and origin.rstrip("/").lower() != own.lower():
                self.refused += 1
                log.info("refused a cross-origin %s %s from Origin %.100s",
                         scope.get("method"), scope.get("path"), origin)
                resp = error_response(Forbidden(
                    f"cross-origin request refused: Origin {origin[:100]} is not this node's API"))
                await resp(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def serve_api(app: Starlette, host: str, port: int, shutdown: trio.Event,
                    task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Serve ``app`` with hypercorn's trio worker until ``shutdown`` is set.

    ``task_status.started()`` is called once the socket listens, with the bound ``(host, port)``.
    """
    from hypercorn.config import Config
    from hypercorn.trio import serve

    app = SameOriginGuard(app)  # cross-site POSTs from a browser page (CSRF)
    allowed = api_allowed_hosts(host)
    if allowed is not None:
        # DNS rebinding: a web page in the user's browser may resolve its own name to
        # 127.0.0.1 and talk to this API; refusing any Host that is not this address stops it.
        from starlette.middleware.trustedhost import TrustedHostMiddleware
        app = TrustedHostMiddleware(app, allowed_hosts=allowed)
    cfg = Config()
    cfg.bind = [f"{host}:{port}"]
    cfg.accesslog = None
    cfg.errorlog = logging.getLogger("hypercorn.error")
    cfg.graceful_timeout = 5.0
    cfg.keep_alive_timeout = 30.0

    await serve(app, cfg, shutdown_trigger=shutdown.wait, task_status=task_status)
