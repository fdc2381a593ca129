"""Issue 10: the typed contract from the HTTP API through the daemon to the protocol and back
(three daemons in one process over the in-memory transport)."""
from __future__ import annotations

import trio

from node.api import parse_completion
from tests.node.test_daemon_inprocess import mesh

LONG_Q = ("Describe, in as many plain words as you like, how a bicycle gear changes the effort "
          "a rider needs on a steep hill and why that matters on long climbs.")


def test_a_clients_max_tokens_reaches_every_proposer_and_usage_comes_back_typed(tmp_path):
    body = {"model": "p2pmoa", "max_tokens": 16, "seed": 7,
            "messages": [{"role": "user", "content": LONG_Q}]}
    req, _ = parse_completion(body, "stand-in:m0", default_max_tokens=96)
    assert req.generation()["max_tokens"] == 16 and req.generation()["temperature"] is None

    async def main():
        async with mesh(tmp_path, 3) as ds:
            res = await ds[0].complete(req)
            props = res.trace["proposals"]
            assert len(props) == 3
            # the stand-in model would say ~30 words; every peer stopped at the client's 16
            assert [p["completion_tokens"] for p in props] == [16, 16, 16]
            chosen = next(p for p in props if p["peer"] == res.trace["decision"]["proposer"])
            assert res.completion_tokens == chosen["completion_tokens"] == 16
            assert res.prompt_tokens > 0
    trio.run(main)


def test_without_client_parameters_the_nodes_defaults_apply(tmp_path):
    body = {"model": "p2pmoa", "messages": [{"role": "user", "content": LONG_Q}]}
    req, _ = parse_completion(body, "stand-in:m0", default_max_tokens=96)
    assert req.generation() == {"max_tokens": None, "temperature": None, "seed": None,
                                "deadline_s": None, "proposers_max": None}

    async def main():
        async with mesh(tmp_path, 2, max_tokens=20) as ds:
            res = await ds[0].complete(req)
            assert [p["completion_tokens"] for p in res.trace["proposals"]] == [20, 20]
    trio.run(main)
