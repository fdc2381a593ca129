"""Bounded, honest execution in the daemon (issue 10, node/execution.py): per-peer ordered
outbound queues, an inbox whose internal completions are never dropped, SQLite writes off
the trio thread and on disk before the effects that depend on them."""
from __future__ import annotations

import threading

import pytest
import trio
import trio.testing

from node.execution import Inbox, Journal, JournaledStore, Outbox
from p2pmoa.buffer import SQLiteStore


def test_a_blocked_peer_delays_only_its_own_queue_and_keeps_its_order():
    async def main():
        got: dict[str, list[bytes]] = {"slow": [], "fast": []}
        gate = trio.Event()

        async def send(peer, frame):
            if peer == "slow":
                await gate.wait()  # this peer's stream is stuck
            got[peer].append(frame)

        async with trio.open_nursery() as n:
            box = Outbox(n, send, queue_max=64)
            for i in range(10):
                assert box.push("slow", b"s%d" % i)
                assert box.push("fast", b"f%d" % i)
            with trio.fail_after(5):
                while len(got["fast"]) < 10:
                    await trio.sleep(0.001)
            assert got["fast"] == [b"f%d" % i for i in range(10)] and got["slow"] == []
            assert box.queued("slow") == 9  # one frame is in the sender's hands
            gate.set()
            with trio.fail_after(5):
                while len(got["slow"]) < 10:
                    await trio.sleep(0.001)
            assert got["slow"] == [b"s%d" % i for i in range(10)]
            n.cancel_scope.cancel()
    trio.run(main)


def test_a_full_peer_queue_refuses_new_frames_counted_and_keeps_the_order_of_the_rest():
    async def main():
        got, gate, dropped = [], trio.Event(), []

        async def send(peer, frame):
            await gate.wait()
            got.append(frame)

        async with trio.open_nursery() as n:
            box = Outbox(n, send, queue_max=3, on_drop=dropped.append)
            assert box.push("p", b"0")
            await trio.testing.wait_all_tasks_blocked()  # the sender holds frame 0
            results = [box.push("p", b"%d" % i) for i in range(1, 7)]
            assert results == [True, True, True, False, False, False]
            assert box.dropped == 3 and dropped == ["p"] * 3
            gate.set()
            with trio.fail_after(5):
                while len(got) < 4:
                    await trio.sleep(0.001)
            assert got == [b"0", b"1", b"2", b"3"]
            n.cancel_scope.cancel()
    trio.run(main)


def test_an_idle_sender_retires_and_comes_back():
    async def main():
        got = []

        async def send(peer, frame):
            got.append(frame)

        async with trio.open_nursery() as n:
            box = Outbox(n, send, queue_max=4, idle_s=0.05)
            box.push("p", b"a")
            with trio.fail_after(5):
                while box.senders():
                    await trio.sleep(0.01)
            box.push("p", b"b")
            with trio.fail_after(5):
                while len(got) < 2:
                    await trio.sleep(0.01)
            assert got == [b"a", b"b"]
            n.cancel_scope.cancel()
    trio.run(main)


def test_internal_events_are_taken_even_when_the_peer_lane_is_full_and_go_first():
    async def main():
        box = Inbox(peer_max=2)
        assert box.try_put_peer("frame1") and box.try_put_peer("frame2")
        assert not box.try_put_peer("frame3") and box.shed == 1
        box.put_internal("GenerateDone")
        assert box.lanes() == {"internal": 1, "peer": 2}
        assert (await box.get())[0] == "GenerateDone"
        assert [(await box.get())[0] for _ in range(2)] == ["frame1", "frame2"]
    trio.run(main)


def test_a_waiting_peer_put_gets_in_when_room_is_made():
    async def main():
        box = Inbox(peer_max=1)
        await box.put_peer("a")
        async with trio.open_nursery() as n:
            n.start_soon(box.put_peer, "b")
            await trio.testing.wait_all_tasks_blocked()
            assert box.lanes()["peer"] == 1  # "b" waits
            assert (await box.get())[0] == "a"
        assert (await box.get())[0] == "b"
    trio.run(main)


def test_journaled_writes_run_in_a_worker_thread_in_order(tmp_path):
    inner = SQLiteStore(tmp_path / "b.sqlite3")
    journal = Journal()
    store = JournaledStore(inner, journal)
    threads = []
    real_put = inner.put

    def put(*a, **k):
        threads.append(threading.current_thread())
        real_put(*a, **k)
    inner.put = put
    store.put("q1", "accepted", 1.0, b"one")
    store.put("q1", "done", 2.0, b"two", durable=False)
    store.put_meta("trust", b"{}")
    assert inner.load_all() == [] and store.get_meta("trust") == b"{}"  # recorded, not written
    trio.run(journal.flush)
    assert inner.load_all() == [("q1", b"two")] and inner.get_meta("trust") == b"{}"
    assert threads and all(t is not threading.main_thread() for t in threads)
    store.close()


def test_light_writes_alone_run_inline_without_a_thread_hop(tmp_path):
    inner = SQLiteStore(tmp_path / "b.sqlite3")
    journal = Journal()
    store = JournaledStore(inner, journal)
    store.put("q1", "generating", 1.0, b"one", durable=False)
    trio.run(journal.flush)
    assert inner.load_all() == [("q1", b"one")] and journal.threaded == 0
    store.put("q1", "done", 2.0, b"two")  # durable: fsync, off the trio thread
    trio.run(journal.flush)
    assert journal.threaded == 1 and journal.flushes == 2
    store.close()


def test_a_cancelled_flush_keeps_its_writes(tmp_path):
    inner = SQLiteStore(tmp_path / "b.sqlite3")
    journal = Journal()
    store = JournaledStore(inner, journal)
    store.put("q1", "accepted", 1.0, b"one")

    async def main():
        with trio.CancelScope() as cs:
            cs.cancel()
            await journal.flush()
    trio.run(main)
    assert len(journal) == 1
    store.close()  # flushes what is left
    again = SQLiteStore(tmp_path / "b.sqlite3")
    assert again.load_all() == [("q1", b"one")]
    again.close()


# ------------------------------------------------------------------ through the daemon


@pytest.fixture
def one_node(tmp_path):
    from node.config import load_config
    from node.daemon import Daemon, load_embedder, load_generator
    from node.transport import MemoryNetwork, MemoryTransport, TransportLimits
    from p2pmoa.effects import PeerId
    from p2pmoa.identity import Ed25519Identity

    cfg = load_config(None, {"data_dir": str(tmp_path), "model": "stand-in:m0", "deadline_s": 5,
                             "stand_in_delay_s": 0.2})
    ident = Ed25519Identity.load_or_create(cfg.identity_path)
    t = MemoryTransport(MemoryNetwork(), PeerId(ident.peer_id), TransportLimits())
    d = Daemon(cfg, t, load_generator(cfg), load_embedder(cfg), ident)
    yield d
    d.store.close()
    d.memory_store.close()


def _req(q: str):
    from node.api import CompletionRequest
    from p2pmoa.effects import ChatMessage, GenParams
    return CompletionRequest((ChatMessage("user", q),), GenParams(), "pbft", None, "p2pmoa")


def test_a_query_is_answered_while_gossip_keeps_the_inbox_full(one_node):
    """Before, completions shared the inbox with peer input and were dropped when it was full
    (the query then stalled for good); now they have their own lane."""
    d = one_node
    d.inbox = Inbox(peer_max=1)

    async def main():
        async with trio.open_nursery() as n:
            await n.start(d.run)
            wait = await d.submit(_req("Which planet is largest?"))
            shed_before = d.inbox.shed

            async def flood():
                while True:
                    d.inbox.try_put_peer(d.P.FrameIn("12D3KooWjunk", d.P.QUERY_TOPIC, b"junk",
                                                     now=d._now()))
                    await trio.sleep(0)
            n.start_soon(flood)
            with trio.fail_after(30):
                res = await wait()
            assert res.answer and d.inbox.shed > shed_before  # the flood did fill the lane
            n.cancel_scope.cancel()
    trio.run(main)


def test_an_accepted_query_is_on_disk_before_submit_returns_fsynced_off_the_trio_thread(one_node):
    d = one_node
    threads = []
    inner = d.store.inner
    real_put = inner.put

    def put(*a, **k):
        if k.get("durable", True):  # the writes that fsync
            threads.append(threading.current_thread())
        real_put(*a, **k)
    inner.put = put

    async def main():
        async with trio.open_nursery() as n:
            await n.start(d.run)
            req = _req("Name a colour.")
            wait = await d.submit(req)
            other = SQLiteStore(d.cfg.buffer_path)  # a second connection: what is on disk
            try:
                assert len(other.load_all()) == 1
            finally:
                other.close()
            with trio.fail_after(30):
                await wait()
            n.cancel_scope.cancel()
    trio.run(main)
    assert threads and all(t is not threading.main_thread() for t in threads)
