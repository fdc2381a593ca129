"""One conformance suite, run against the in-memory transport and real libp2p hosts on 127.0.0.1.

Whatever the daemon relies on (gossip reaches peers beyond the bootstrap node but not the
sender, requests carry the authenticated sender, limits are enforced by the receiver and
counted, unreachable bootstrap peers are retried rather than fatal) must hold for both.
"""
from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

import pytest
import trio

from node.transport import (
    MemoryNetwork,
    PeerUnreachable,
    RequestRejected,
    TransportLimits,
    load_or_create_identity,
    open_libp2p_transport,
    open_memory_transport,
    peer_id_of,
)
from p2pmoa.effects import PeerId
from tests.node.conftest import free_port, wait_until

pytestmark = pytest.mark.real_net
FAST = TransportLimits(maintain_interval_s=0.1, redial_initial_s=0.1, redial_max_s=0.5,
                       request_timeout_s=5.0)


class Factory:
    """Makes transports of one kind; ``slot()`` reserves an address before the node exists."""

    def __init__(self, kind: str, stack: contextlib.AsyncExitStack) -> None:
        self.kind, self.stack = kind, stack
        self.net = MemoryNetwork()
        self.dir = Path(tempfile.mkdtemp(prefix="p2pmoa-conf-"))
        self.n = 0

    def slot(self) -> tuple[str, object]:
        """(dialable address, opaque token) of a node that may start later."""
        self.n += 1
        if self.kind == "memory":
            pid = PeerId(f"m{self.n}")
            return f"mem/{pid}", pid
        kp = load_or_create_identity(str(self.dir / f"k{self.n}.key"))
        port = free_port()
        return f"/ip4/127.0.0.1/tcp/{port}/p2p/{peer_id_of(kp)}", (kp, port)

    async def start(self, slot=None, bootstrap=(), limits: TransportLimits = FAST):
        addr, token = slot or self.slot()
        if self.kind == "memory":
            cm = open_memory_transport(self.net, token, limits, bootstrap)
        else:
            kp, port = token
            cm = open_libp2p_transport(kp, [f"/ip4/127.0.0.1/tcp/{port}"], bootstrap, limits)
        t = await self.stack.enter_async_context(cm)
        return t, addr


def run(kind: str, body) -> None:
    async def main() -> None:
        with trio.fail_after(60):
            async with contextlib.AsyncExitStack() as stack:
                await body(Factory(kind, stack))
    trio.run(main)


KINDS = ["memory", "libp2p"]


@pytest.mark.parametrize("kind", KINDS)
def test_gossip_reaches_peers_learned_beyond_bootstrap_and_not_the_sender(kind):
    async def body(f: Factory) -> None:
        a, a_addr = await f.start()
        b, _ = await f.start(bootstrap=[a_addr])
        c, _ = await f.start(bootstrap=[a_addr])
        # b and c only know a; peer exchange must introduce them to each other
        await wait_until(lambda: c.local_peer in b.peers() and b.local_peer in c.peers(),
                         what="b and c to discover each other through a")
        subs = {t.local_peer: await t.subscribe("q") for t in (a, b, c)}
        for t in (a, b, c):
            await wait_until(lambda t=t: len(t.topic_peers("q")) == 2, what="subscriptions")
        await b.publish("q", b"hello from b")
        for t in (a, c):
            with trio.fail_after(10):
                msg = await subs[t.local_peer].receive()
            assert (msg.topic, msg.source, msg.data) == ("q", b.local_peer, b"hello from b")
        with trio.move_on_after(0.3):
            await subs[b.local_peer].receive()
            pytest.fail("the publisher received its own message")
    run(kind, body)


@pytest.mark.parametrize("kind", KINDS)
def test_request_reply_carries_authenticated_sender(kind):
    async def body(f: Factory) -> None:
        a, a_addr = await f.start()
        b, _ = await f.start(bootstrap=[a_addr])
        seen = []

        async def handler(sender, payload):
            seen.append(sender)
            return payload[::-1]
        a.set_request_handler(handler)
        await wait_until(lambda: a.local_peer in b.peers(), what="b connected to a")
        assert await b.request(a.local_peer, b"abc") == b"cba"
        assert await b.request(a.local_peer, b"") == b""
        assert seen == [b.local_peer, b.local_peer]
        assert a.statistics().requests_served == 2
    run(kind, body)


@pytest.mark.parametrize("kind", KINDS)
def test_receiver_refuses_oversized_frames_counts_them_and_keeps_serving(kind):
    async def body(f: Factory) -> None:
        small = TransportLimits(frame_bytes_max=1000, maintain_interval_s=0.1)
        a, a_addr = await f.start(limits=small)
        b, _ = await f.start(bootstrap=[a_addr])      # b's own limit is larger
        calls = []

        async def handler(sender, payload):
            calls.append(len(payload))
            return b"ok"
        a.set_request_handler(handler)
        await wait_until(lambda: a.local_peer in b.peers(), what="connection")
        with pytest.raises(RequestRejected, match="oversized"):
            await b.request(a.local_peer, b"x" * 5000)
        assert calls == [] and a.statistics().rejected_oversized == 1
        assert await b.request(a.local_peer, b"x" * 1000) == b"ok"
        assert calls == [1000]
    run(kind, body)


@pytest.mark.parametrize("kind", KINDS)
def test_per_peer_rate_limit_refuses_excess_and_counts(kind):
    async def body(f: Factory) -> None:
        tight = TransportLimits(rate_per_s=0.01, burst=3, maintain_interval_s=0.1)
        a, a_addr = await f.start(limits=tight)
        b, _ = await f.start(bootstrap=[a_addr])

        async def handler(sender, payload):
            return b"ok"
        a.set_request_handler(handler)
        await wait_until(lambda: a.local_peer in b.peers(), what="connection")
        outcomes = []
        for _ in range(5):
            try:
                outcomes.append(await b.request(a.local_peer, b"ping"))
            except RequestRejected as exc:
                outcomes.append(str(exc))
        assert outcomes == [b"ok"] * 3 + ["rate_limited"] * 2
        assert a.statistics().rejected_rate_limited == 2
    run(kind, body)


@pytest.mark.parametrize("kind", KINDS)
def test_request_to_unconnected_peer_is_a_typed_error(kind):
    async def body(f: Factory) -> None:
        a, _ = await f.start()
        b, _ = await f.start()                       # never connected to a
        with pytest.raises(PeerUnreachable):
            await a.request(b.local_peer, b"hi")
    run(kind, body)


@pytest.mark.parametrize("kind", KINDS)
def test_unreachable_bootstrap_is_retried_until_it_comes_up(kind):
    async def body(f: Factory) -> None:
        later = f.slot()
        b, _ = await f.start(bootstrap=[later[0]])
        await wait_until(lambda: b.statistics().dials_failed >= 2, what="failed dials")
        assert b.peers() == []                       # still alive, still trying
        a, _ = await f.start(slot=later)
        await wait_until(lambda: a.local_peer in b.peers(), what="redial to succeed")
    run(kind, body)


@pytest.mark.parametrize("kind", KINDS)
def test_one_way_frames_arrive_in_order_with_sender_and_receiver_limits_apply(kind):
    async def body(f: Factory) -> None:
        small = TransportLimits(frame_bytes_max=1000, maintain_interval_s=0.1)
        a, a_addr = await f.start(limits=small)
        b, _ = await f.start(bootstrap=[a_addr])
        got = []

        async def on_frame(sender, payload):
            got.append((sender, payload))
        a.set_frame_handler(on_frame)
        await wait_until(lambda: a.local_peer in b.peers(), what="connection")
        for i in range(20):
            await b.send(a.local_peer, b"frame %d" % i)
        await wait_until(lambda: len(got) == 20, what="20 frames")
        assert got == [(b.local_peer, b"frame %d" % i) for i in range(20)]
        await b.send(a.local_peer, b"x" * 5000)                 # over the receiver's limit
        await wait_until(lambda: a.statistics().rejected_oversized == 1, what="oversized count")
        await b.send(a.local_peer, b"after")                     # the pipe recovers
        await wait_until(lambda: got[-1] == (b.local_peer, b"after"), what="frame after reject")
        assert len(got) == 21
    run(kind, body)
