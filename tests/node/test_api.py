"""The HTTP API against the official `openai` client and raw HTTP, over a fake node service.

The service here is a stand-in for the daemon (it answers by reversing the question) so
that these tests check the HTTP contract alone; the daemon tests use the same API for real.
"""
from __future__ import annotations

import json
import urllib.error
import urllib.request

import openai
import pytest
import trio

from node.api import BadRequest, Busy, CompletionResult, TRACE_FIELD, build_app, parse_completion, serve_api
from node.metrics import Metrics
from tests.node.conftest import free_port


class FakeService:
    local_model = "stand-in:echo"

    def __init__(self) -> None:
        self.busy = False
        self.seen = []
        self.metrics = Metrics()

    async def complete(self, req):
        if self.busy:
            raise Busy("prompt buffer full (64 queries)", retry_after_s=2.5)
        self.seen.append(req)
        q = req.messages[-1].content
        self.metrics.inc("queries_total", "queries answered")
        return CompletionResult("q1", q[::-1], {"method": req.method or "pbft", "proposals": [
            {"peer": "12D3KooWA", "model": "m"}]}, prompt_tokens=3, completion_tokens=4)

    async def submit(self, req):
        """Admission first (busy raises here, before a stream starts), then the answer."""
        if self.busy:
            raise Busy("prompt buffer full (64 queries)", retry_after_s=2.5)
        self.accepted = getattr(self, "accepted", []) + [req.query_id]

        async def wait():
            return await self.complete(req)
        return wait

    def query(self, qid):
        return {"query_id": qid, "state": "done", "answer": "x"} if qid == "q1" else None

    def status(self):
        return {"peer_id": "12D3KooWA"}

    def peers(self):
        return []

    def metrics_text(self):
        return self.metrics.render()


def serve_and(fn, svc=None, body_bytes_max=4096):
    svc = svc or FakeService()
    port = free_port()
    out = []

    async def main():
        shutdown = trio.Event()
        async with trio.open_nursery() as n:
            await n.start(serve_api, build_app(svc, body_bytes_max), "127.0.0.1", port, shutdown)
            out.append(await trio.to_thread.run_sync(fn, f"http://127.0.0.1:{port}"))
            shutdown.set()
    trio.run(main)
    return out[0], svc


def post(url, data: bytes, ctype="application/json"):
    req = urllib.request.Request(url, data=data, headers={"Content-Type": ctype}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.loads(e.read())


def test_openai_client_plain_completion_carries_trace():
    def client(base):
        c = openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0)
        r = c.chat.completions.create(model="p2pmoa/averaging",
                                      messages=[{"role": "user", "content": "abc def"}],
                                      max_tokens=20, temperature=0)
        models = [m.id for m in c.models.list()]
        return r, models
    (r, models), svc = serve_and(client)
    assert r.choices[0].message.content == "fed cba"
    assert r.model_extra[TRACE_FIELD]["method"] == "averaging"
    assert r.usage.total_tokens == 7
    assert "p2pmoa" in models and "p2pmoa/pbft" in models and "stand-in:echo" in models
    assert svc.seen[0].params.max_tokens == 20 and svc.seen[0].params.temperature == 0


def test_openai_client_streaming_yields_answer_and_trace_in_last_chunk():
    def client(base):
        c = openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0)
        return list(c.chat.completions.create(
            model="p2pmoa", messages=[{"role": "user", "content": "one two three"}], stream=True))
    chunks, _ = serve_and(client)
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks)
    assert text == "eerht owt eno"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert chunks[-1].model_extra[TRACE_FIELD]["proposals"][0]["peer"] == "12D3KooWA"


def test_bad_requests_get_openai_style_4xx():
    def client(base):
        url = base + "/v1/chat/completions"
        ok = json.dumps({"model": "p2pmoa", "messages": [{"role": "user", "content": "x"}]})
        return {
            "json": post(url, b"{not json"),
            "model": post(url, json.dumps({"model": "gpt-9", "messages": [
                {"role": "user", "content": "x"}]}).encode()),
            "messages": post(url, b'{"model": "p2pmoa", "messages": []}'),
            "role": post(url, b'{"messages": [{"role": "wizard", "content": "x"}]}'),
            "tokens": post(url, b'{"messages": [{"role": "user", "content": "x"}], "max_tokens": -1}'),
            "big": post(url, ok[:-1].encode() + b', "pad": "' + b"x" * 5000 + b'"}'),
            "fine": post(url, ok.encode()),
        }
    r, svc = serve_and(client)
    for name, status in [("json", 400), ("model", 404), ("messages", 400), ("role", 400),
                         ("tokens", 400), ("big", 413)]:
        code, _, body = r[name]
        assert code == status, (name, code, body)
        assert set(body["error"]) == {"message", "type", "param", "code"}, name
    assert r["model"][2]["error"]["code"] == "model_not_found"
    assert r["fine"][0] == 200 and len(svc.seen) == 1      # only the valid one reached the node


def test_busy_node_answers_429_with_retry_after():
    svc = FakeService()
    svc.busy = True

    def client(base):
        c = openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0)
        with pytest.raises(openai.RateLimitError) as ei:
            c.chat.completions.create(model="p2pmoa", messages=[{"role": "user", "content": "x"}])
        return ei.value.response.headers["retry-after"], ei.value.body
    (retry, body), _ = serve_and(client, svc)
    assert retry == "3" and body["code"] == "busy"


def test_metrics_endpoint_is_prometheus_text():
    def client(base):
        post(base + "/v1/chat/completions", b'{"messages": [{"role": "user", "content": "x"}]}')
        with urllib.request.urlopen(base + "/metrics", timeout=10) as r:
            return r.headers["content-type"], r.read().decode()
    (ctype, text), _ = serve_and(client)
    assert ctype.startswith("text/plain")
    assert "# TYPE p2pmoa_queries_total counter" in text
    assert "p2pmoa_queries_total 1" in text.splitlines()


def test_query_lookup_by_id():
    def client(base):
        with urllib.request.urlopen(base + "/v1/queries/q1", timeout=10) as r:
            found = json.loads(r.read())
        try:
            urllib.request.urlopen(base + "/v1/queries/nope", timeout=10)
        except urllib.error.HTTPError as e:
            return found, e.code, json.loads(e.read())
    found, code, body = serve_and(client)[0]
    assert found["state"] == "done" and code == 404
    assert body["error"]["code"] == "query_not_found"


@pytest.mark.parametrize("qid,ok", [("abc-123_X", True), ("", False), ("x" * 33, False),
                                    ("has space", False), (7, False)])
def test_client_query_id_is_validated(qid, ok):
    body = {"messages": [{"role": "user", "content": "hi"}], "p2pmoa": {"query_id": qid}}
    if ok:
        req, _ = parse_completion(body, "stand-in:echo", 16)
        assert req.query_id == qid
    else:
        with pytest.raises(BadRequest, match="query_id"):
            parse_completion(body, "stand-in:echo", 16)
