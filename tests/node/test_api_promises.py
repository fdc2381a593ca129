"""The API keeps its promises on odd input (issue 9): every malformed body is a 4xx in
OpenAI's error shape, never a 500 or a hang; busy on a stream is a real 429."""
from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from node.api import build_app
from tests.node.test_api import FakeService

URL = "/v1/chat/completions"


@pytest.fixture()
def svc():
    return FakeService()


@pytest.fixture()
def client(svc):
    # trio backend: the streaming path runs a trio nursery, as under hypercorn in the daemon
    with TestClient(build_app(svc, 64 * 1024), backend="trio", raise_server_exceptions=False) as c:
        yield c


def is_openai_error(r, status: int) -> bool:
    body = r.json()
    return (r.status_code == status and set(body) == {"error"}
            and {"message", "type", "param", "code"} <= set(body["error"]))


def user(text="What is 2+2?"):
    return {"role": "user", "content": text}


@pytest.mark.parametrize("method,path,status", [("GET", "/nope", 404), ("POST", "/v1/nope", 404),
                                                ("GET", URL, 405), ("DELETE", "/status", 405)])
def test_unknown_routes_answer_in_openai_error_shape(client, method, path, status):
    assert is_openai_error(client.request(method, path), status)


def test_lone_surrogate_is_refused_before_it_is_counted(client, svc):
    raw = b'{"messages": [{"role": "user", "content": "hello \\ud800"}]}'
    r = client.post(URL, content=raw)
    assert is_openai_error(r, 400) and "Unicode" in r.json()["error"]["message"]
    raw_stream = b'{"stream": true, "messages": [{"role": "user", "content": "\\udfff"}]}'
    assert is_openai_error(client.post(URL, content=raw_stream), 400)
    assert svc.seen == [] and not getattr(svc, "accepted", [])


@pytest.mark.parametrize("body", [
    {"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]},
    {"messages": [{"role": "user", "content": [{"type": "text", "text": None}]}]},
    {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
    {"messages": [{"role": ["user"], "content": "hi"}]},
    {"messages": [user()], "p2pmoa": {"consensus": {"a": 1}}},
    {"messages": [user()], "temperature": float("inf")},
])
def test_malformed_fields_are_400(client, body):
    assert is_openai_error(client.post(URL, content=json.dumps(body).encode()), 400)


def test_deeply_nested_body_is_400_not_500(client):
    deep = b'{"messages": [' + b"[" * 5000 + b"]" * 5000 + b"]}"
    assert is_openai_error(client.post(URL, content=deep), 400)
    deep2 = json.dumps({"messages": [user()], "metadata": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]})
    assert is_openai_error(client.post(URL, content=deep2.encode()), 400)


def test_developer_role_is_a_system_message(client, svc):
    r = client.post(URL, json={"messages": [{"role": "developer", "content": "Be brief."}, user()]})
    assert r.status_code == 200
    assert [(m.role, m.content) for m in svc.seen[0].messages] == [("system", "Be brief."),
                                                                     ("user", "What is 2+2?")]


@pytest.mark.parametrize("extra,param", [({"n": 3}, "n"), ({"n": 0}, "n"),
                                         ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
                                         ({"tool_choice": "required"}, "tool_choice")])
def test_unsupported_fields_are_refused_not_ignored(client, svc, extra, param):
    r = client.post(URL, json={"messages": [user()], **extra})
    assert is_openai_error(r, 400) and r.json()["error"]["param"] == param
    assert svc.seen == []
    assert client.post(URL, json={"messages": [user()], "n": 1, "tools": []}).status_code == 200


def test_busy_on_a_stream_is_a_real_429_before_the_stream_starts(client, svc):
    svc.busy = True
    r = client.post(URL, json={"messages": [user()], "stream": True})
    assert is_openai_error(r, 429) and r.headers["retry-after"] == "3"
    assert not r.headers["content-type"].startswith("text/event-stream")


def test_first_stream_chunk_names_a_query_that_was_accepted(client, svc):
    r = client.post(URL, json={"messages": [user()], "stream": True})
    assert r.status_code == 200
    first = json.loads(r.text.split("\n\n")[0].removeprefix("data: "))
    assert first["id"] == f"chatcmpl-{svc.accepted[0]}"


# ---- property: any JSON body gives a 2xx or a 4xx, never a 5xx

json_scalars = st.none() | st.booleans() | st.integers(-2**70, 2**70) | \
    st.floats(allow_nan=True, allow_infinity=True) | \
    st.text(st.characters(blacklist_categories=()), max_size=20)
json_values = st.recursive(json_scalars, lambda c: st.lists(c, max_size=4)
                           | st.dictionaries(st.text(max_size=8), c, max_size=4), max_leaves=20)
fields = {"model": json_values | st.sampled_from(["p2pmoa", "p2pmoa/vote", "stand-in:echo"]),
          "messages": json_values | st.lists(st.fixed_dictionaries(
              {"role": json_values | st.sampled_from(["user", "system", "developer", "assistant"]),
               "content": json_values | st.text(max_size=30)}), max_size=3),
          "stream": json_values | st.booleans(), "n": json_values, "tools": json_values,
          "max_tokens": json_values, "temperature": json_values, "seed": json_values,
          "p2pmoa": json_values | st.fixed_dictionaries({}, optional={
              "consensus": json_values, "deadline_s": json_values, "query_id": json_values}),
          "consensus": json_values}
bodies = json_values | st.fixed_dictionaries({}, optional=fields)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(body=bodies)
def test_any_json_body_is_2xx_or_4xx_never_5xx(client, body):
    raw = json.dumps(body, ensure_ascii=True, allow_nan=True).encode()
    r = client.post(URL, content=raw)
    assert 200 <= r.status_code < 500, (r.status_code, r.text[:300], raw[:300])
    if r.status_code >= 400:
        assert is_openai_error(r, r.status_code)
