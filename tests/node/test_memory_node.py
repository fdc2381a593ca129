"""Memory on real daemons (in-memory transport): answer from memory through the API, opt-out,
SQLite persistence across a restart, `p2pmoa memory` while the node runs, GET /v1/memory."""
from __future__ import annotations

import contextlib
import json
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import trio

from node.api import BadRequest, build_app, parse_completion, serve_api
from node.config import ConfigError, load_config
from node.daemon import Daemon, load_embedder, load_generator
from node.transport import MemoryNetwork, TransportLimits, open_memory_transport
from p2pmoa.cli import main as cli_main
from p2pmoa.effects import PeerId
from p2pmoa.identity import Ed25519Identity
from p2pmoa.memory import Memory, MemoryEntry
from p2pmoa.memory_store import MemorySQLite
from tests.node.conftest import free_port, wait_until

Q = "What is the capital of France?"
PARA = "Which city is the capital of France?"


def _req(q: str, memory: str = "on"):
    body = {"model": "p2pmoa", "messages": [{"role": "user", "content": q}],
            "p2pmoa": {"memory": memory}}
    return parse_completion(body, "stand-in", 32)[0]


@contextlib.asynccontextmanager
async def mesh(base: Path, n: int, **overrides):
    net = MemoryNetwork()
    async with contextlib.AsyncExitStack() as stack:
        daemons = []
        for i in range(n):
            cfg = load_config(None, {"data_dir": str(base / f"n{i}"), "model": f"stand-in:m{i}",
                                     "proposers_max": n, "deadline_s": 5, **overrides})
            ident = Ed25519Identity.load_or_create(cfg.identity_path)
            boot = [f"mem/{daemons[0].transport.local_peer}"] if daemons else []
            t = await stack.enter_async_context(open_memory_transport(
                net, PeerId(ident.peer_id), TransportLimits(maintain_interval_s=0.05), boot))
            daemons.append(Daemon(cfg, t, load_generator(cfg), load_embedder(cfg), ident))
        try:
            async with trio.open_nursery() as nursery:
                for d in daemons:
                    await nursery.start(d.run)
                await wait_until(lambda: all(len(d.transport.peers()) == n - 1 for d in daemons),
                                 what="full mesh")
                yield daemons
                nursery.cancel_scope.cancel()
        finally:
            for d in daemons:
                d.store.close()
                d.memory_store.close()


def test_paraphrase_answered_from_memory_through_the_daemon_and_opt_out(tmp_path):
    async def main():
        async with mesh(tmp_path, 3) as ds:
            first = await ds[0].complete(_req(Q))
            assert first.trace["method"] == "pbft"
            await wait_until(lambda: all(len(d.memory.shared) == 1 for d in ds),
                             what="shared entry replicated")
            hit = await ds[1].complete(_req(PARA))
            assert hit.answer == first.answer
            assert hit.trace["memory"]["answered_from_memory"] is True
            off = await ds[1].complete(_req(PARA, memory="off"))
            assert off.trace["method"] == "pbft" and off.trace["memory"]["opted_out"]
            st = ds[1].status()["memory"]
            assert st["hits"] == 1 and st["shared"] == 1 and st["private"] == 1
    trio.run(main)


def test_private_memory_persists_and_the_cli_clears_it_on_a_running_node(tmp_path):
    async def main():
        async with mesh(tmp_path, 2) as (a, b):
            await a.complete(_req(Q))
            assert len(a.memory.private) == 1
        # restart node a on the same data dir: its private memory is back from SQLite
        async with mesh(tmp_path, 2) as (a, b):
            assert [e.query for e in a.memory.private.entries()] == [Q]
            assert len(b.memory.private) == 0, "b's user asked nothing"
            port = free_port()
            shutdown = trio.Event()
            async with trio.open_nursery() as n:
                await n.start(serve_api, build_app(a), "127.0.0.1", port, shutdown)

                def get(path):
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
                        return json.loads(r.read())
                got = await trio.to_thread.run_sync(get, "/v1/memory?tier=private")
                assert [e["query"] for e in got["data"]] == [Q]
                assert "vector" not in got["data"][0]
                # the user deletes the private memory while the node runs
                rc = await trio.to_thread.run_sync(
                    cli_main, ["memory", "clear", "--tier", "private", "--yes",
                               "--data-dir", str(a.cfg.data_dir)])
                assert rc == 0
                got = await trio.to_thread.run_sync(get, "/v1/memory?tier=private")
                assert got["data"] == [] and len(a.memory.private) == 0
                got = await trio.to_thread.run_sync(get, "/v1/memory")
                assert [e["tier"] for e in got["data"]] == ["shared"], "shared tier untouched"
                rc = await trio.to_thread.run_sync(
                    cli_main, ["memory", "clear", "--yes", "--data-dir", str(a.cfg.data_dir)])
                assert rc == 0
                got = await trio.to_thread.run_sync(get, "/v1/memory")
                assert got["data"] == [] and a.memory.empty
                shutdown.set()
        raw = b"".join(p.read_bytes() for p in Path(tmp_path / "n0").glob("memory.sqlite3*"))
        assert Q.encode() not in raw, "cleared memory text must not remain on disk"
    trio.run(main)


def test_store_round_trip_and_outside_change_detection(tmp_path):
    s1 = MemorySQLite(tmp_path / "m.sqlite3")
    m = Memory(on_change=s1.apply)
    e = MemoryEntry("q1", "private", "q", "a", np.array([1, 0, 0], np.float32), 5.0,
                    digest=b"\x01" * 32, members=("x", "y"), method="pbft", origin="x",
                    query_id="q1")
    m.remember_private(e, 5.0)
    m.private.touch("q1")
    s1.apply("touch", m.private.get("q1"))
    s2 = MemorySQLite(tmp_path / "m.sqlite3")
    (back,) = s2.load()
    assert (back.query, back.answer, back.members, back.digest, back.access_count) == \
        ("q", "a", ("x", "y"), b"\x01" * 32, 1)
    assert np.allclose(back.vector, [1, 0, 0])
    assert not s1.changed()
    assert s2.forget("q1") == 1
    assert s1.changed() and s1.load() == []
    s1.close()
    s2.close()


def test_memory_options_are_validated():
    with pytest.raises(BadRequest):
        parse_completion({"messages": [{"role": "user", "content": "x"}],
                          "p2pmoa": {"memory": "maybe"}}, "m", 8)
    assert parse_completion({"messages": [{"role": "user", "content": "x"}]}, "m", 8)[0].memory
    with pytest.raises(ConfigError):
        load_config(None, {"memory_capacity": 0})
    with pytest.raises(ConfigError):
        load_config(None, {"memory": "sometimes"})
    assert cli_main(["memory", "clear", "--data-dir", "/nonexistent-dir-p2pmoa/x"]) == 2
