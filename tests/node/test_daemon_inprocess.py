"""The daemon driver in one process over the in-memory transport (fast; no libp2p).

The same Daemon class runs over Libp2pTransport in the process tests; here the transport
is the in-memory fake from the conformance suite, so driver behaviour (effects executed,
answers delivered, busy mapped to 429, trust persisted across restarts) is checked quickly.
"""
from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
import trio

from node.api import Busy, CompletionRequest
from node.config import load_config
from node.daemon import Daemon, load_embedder, load_generator
from node.transport import MemoryNetwork, TransportLimits, open_memory_transport
from p2pmoa.effects import ChatMessage, GenParams, PeerId
from p2pmoa.identity import Ed25519Identity
from tests.node.conftest import wait_until


def _req(q: str, method: str = "pbft") -> CompletionRequest:
    return CompletionRequest((ChatMessage("user", q),), GenParams(), method, None, "p2pmoa")


@contextlib.asynccontextmanager
async def mesh(base: Path, n: int, generators: dict | None = None, **overrides):
    """``n`` daemons over the in-memory transport; node ``i`` generates with
    ``generators[i]`` if given, else its configured stand-in."""
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
            gen = (generators or {}).get(i) or load_generator(cfg)
            daemons.append(Daemon(cfg, t, gen, load_embedder(cfg), ident))
        async with trio.open_nursery() as nursery:
            for d in daemons:
                await nursery.start(d.run)
            await wait_until(lambda: all(len(d.transport.peers()) == n - 1 for d in daemons),
                             what="full mesh")
            yield daemons
            nursery.cancel_scope.cancel()
        for d in daemons:
            d.store.close()


def test_four_daemons_over_memory_transport_agree_by_pbft(tmp_path):
    async def main():
        async with mesh(tmp_path, 4) as ds:
            res = await ds[2].complete(_req("Which planet is largest?"))
            assert res.trace["method"] == "pbft" and len(res.trace["proposals"]) == 4
            qid = res.trace["query_id"]
            await wait_until(lambda: all(d.machine.decision(qid) for d in ds), what="decisions")
            assert len({d.machine.decision(qid).digest for d in ds}) == 1
            assert res.answer == ds[0].machine.decision(qid).answer
    trio.run(main)


def test_full_buffer_is_reported_as_busy_with_retry_hint(tmp_path):
    async def main():
        async with mesh(tmp_path, 1, buffer_max=1, stand_in_delay_s=2.0) as (d,):
            async with trio.open_nursery() as n:
                n.start_soon(d.complete, _req("first"))
                await wait_until(lambda: d.buffer.statistics().unfinished == 1, what="first buffered")
                with pytest.raises(Busy) as ei:
                    await d.complete(_req("second"))
                assert ei.value.retry_after_s >= 1.0
                n.cancel_scope.cancel()
    trio.run(main)


def test_trust_survives_a_restart(tmp_path):
    async def main():
        async with mesh(tmp_path, 2) as (a, b):
            await a.complete(_req("Name a colour."))
            before = a.trust_snapshot()
            assert b.transport.local_peer in before
        async with mesh(tmp_path, 1) as (a2,):                  # same data dir as a
            assert a2.trust_snapshot() == before
    trio.run(main)


def test_client_chosen_query_id_is_answered_once_and_can_be_fetched(tmp_path):
    from node.api import DuplicateQuery
    async def main():
        async with mesh(tmp_path, 2) as (a, b):
            req = CompletionRequest((ChatMessage("user", "Name a fruit."),), GenParams(), "pbft",
                                    None, "p2pmoa", "client-id-7")
            res = await a.complete(req)
            assert res.query_id == "client-id-7"
            rec = a.query("client-id-7")                      # what GET /v1/queries/{id} serves
            assert rec["state"] == "done" and rec["answer"] == res.answer
            with pytest.raises(DuplicateQuery, match="GET /v1/queries/client-id-7"):
                await a.complete(req)                           # a retry is not answered twice
    trio.run(main)
