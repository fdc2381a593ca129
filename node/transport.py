"""The node's transport: gossip topics, one-request-per-stream RPC, and mesh maintenance.

The daemon never talks to libp2p directly; it talks to a :class:`Transport`, which has two
implementations sharing one conformance suite (tests/node/test_transport_conformance.py):

* :class:`Libp2pTransport`: py-libp2p 0.8.1 on TCP with Noise only (plaintext is refused,
  because its handshake does not prove key possession), gossipsub tuned so that it does not
  drop messages silently (heartbeat 1 s, adaptive gossip off, per-topic rate raised), one
  request per stream (a looping stream handler was seen to stall later streams), an explicit
  ``host.close()`` on exit (leaving ``host.run()`` leaves sockets open).
* :class:`MemoryTransport`: the same behaviour in one process over a :class:`MemoryNetwork`,
  for fast tests of everything above the transport.

Limits enforced on the receiving side, before any decoding, in both implementations:
``frame_bytes_max`` (length prefix checked before the body is read), a token bucket per
remote peer (``rate_per_s`` / ``burst``), and at most ``streams_per_peer_max`` concurrent
inbound streams per peer. Every reject is counted in :meth:`Transport.statistics`.

Wire format of a request stream ``/p2pmoa/rpc/1.0.0``: the dialer writes one frame
(4-byte big-endian length + payload) and reads one frame back; the first byte of the
response payload is a status (0 ok, 1 rejected) followed by the handler's reply. Peer
exchange ``/p2pmoa/px/1.0.0``: an empty request, answered with a msgpack list of
``[peer_id, [multiaddr, ...]]`` pairs of the responder's connected peers.
"""
from __future__ import annotations

import logging
import math
import random
import struct
from collections import defaultdict
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import AsyncIterator, Awaitable, Callable, Protocol, Sequence

import msgpack
import trio

from p2pmoa.effects import PeerId

log = logging.getLogger(__name__)

RPC_PROTOCOL = "/p2pmoa/rpc/1.0.0"
PIPE_PROTOCOL = "/p2pmoa/pipe/1.0.0"
PX_PROTOCOL = "/p2pmoa/px/1.0.0"
HELLO_PROTOCOL = "/p2pmoa/hello/1.0.0"
STATUS_OK = 0
STATUS_REJECTED = 1
_LEN = struct.Struct(">I")

FrameHandler = Callable[[PeerId, bytes], Awaitable[None]]
"""Receives one one-way frame sent with :meth:`Transport.send`: ``(sender, payload)``."""

RequestHandler = Callable[[PeerId, bytes], Awaitable[bytes]]
"""Answers one inbound request: ``(sender, payload) -> reply payload``. Raising
:class:`RequestRejected` answers with the rejected status; any other exception too (logged)."""


# ----------------------------------------------------------------------------------------------
# Errors


class TransportError(Exception):
    """Base class of every error raised by a transport."""


class FrameTooLarge(TransportError):
    """A frame exceeded ``frame_bytes_max`` (sender side: refused before sending)."""


class PeerUnreachable(TransportError):
    """The peer is not connected / could not be dialled / did not answer in time."""


class RequestRejected(TransportError):
    """The remote handler refused the request (rate limit, busy, bad frame)."""


class BadAddress(TransportError):
    """A multiaddr (or memory address) could not be parsed."""


# ----------------------------------------------------------------------------------------------
# Configuration, statistics, common pieces


@dataclass(frozen=True)
class TransportLimits:
    """Limits of one transport.

    Args:
        frame_bytes_max: largest request/response frame accepted, bytes (default 256 KiB;
            an answer with embedding is a few KiB). Gossip messages have the same limit.
        rate_per_s: sustained inbound requests + gossip messages per second per remote peer.
        burst: token-bucket depth per remote peer (messages).
        streams_per_peer_max: concurrent inbound streams per remote peer; more are reset.
        request_timeout_s: deadline of one request round trip, including dialing the stream.
        connections_target: the mesh keeps dialling discovered peers until it has this many.
        redial_initial_s / redial_max_s: exponential backoff between dials of one address.
        maintain_interval_s: period of the maintenance loop (bootstrap redial + peer exchange).
    """

    frame_bytes_max: int = 256 * 1024
    rate_per_s: float = 200.0
    burst: int = 400
    streams_per_peer_max: int = 16
    request_timeout_s: float = 10.0
    connections_target: int = 8
    redial_initial_s: float = 0.5
    redial_max_s: float = 30.0
    maintain_interval_s: float = 1.0

    def __post_init__(self) -> None:
        assert self.frame_bytes_max > 0, "frame_bytes_max must be positive"
        assert self.burst >= 1 and self.rate_per_s > 0, "rate limit must admit something"
        assert self.streams_per_peer_max >= 1, "streams_per_peer_max must be >= 1"


@dataclass(frozen=True)
class GossipMessage:
    """One message received on a topic. ``source`` is the signed originator, not the relay."""

    topic: str
    source: PeerId
    data: bytes


@dataclass(frozen=True)
class TransportStatistics:
    peers_connected: int
    requests_sent: int
    requests_served: int
    frames_sent: int
    frames_received: int
    gossip_published: int
    gossip_received: int
    rejected_oversized: int
    rejected_rate_limited: int
    rejected_too_many_streams: int
    rejected_malformed: int
    dials_failed: int


class TokenBucket:
    """Classic token bucket on trio's clock (``now`` passed in, so it is testable)."""

    def __init__(self, rate_per_s: float, burst: int, now: float) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.tokens = float(burst)
        self.stamp = now

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate_per_s)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class Backoff:
    """Exponential backoff with jitter for redialling one address."""

    def __init__(self, initial_s: float, max_s: float, rng: random.Random) -> None:
        self.initial_s, self.max_s, self.rng = initial_s, max_s, rng
        self.failures = 0
        self.next_at = -math.inf

    def ready(self, now: float) -> bool:
        return now >= self.next_at

    def failed(self, now: float) -> float:
        self.failures += 1
        delay = min(self.max_s, self.initial_s * 2 ** (self.failures - 1))
        delay *= 0.5 + self.rng.random() / 2
        self.next_at = now + delay
        return delay

    def succeeded(self) -> None:
        self.failures = 0
        self.next_at = -math.inf


class _Counters:
    def __init__(self) -> None:
        self.c: dict[str, int] = defaultdict(int)

    def inc(self, name: str, n: int = 1) -> None:
        self.c[name] += n


class Transport(Protocol):
    """What the daemon needs from a network. Both implementations satisfy the same suite."""

    local_peer: PeerId

    def listen_addrs(self) -> list[str]: ...
    async def publish(self, topic: str, data: bytes) -> None: ...
    async def subscribe(self, topic: str) -> trio.MemoryReceiveChannel[GossipMessage]: ...
    def set_request_handler(self, handler: RequestHandler) -> None: ...
    async def request(self, peer: PeerId, data: bytes) -> bytes: ...
    def set_frame_handler(self, handler: FrameHandler) -> None: ...
    async def send(self, peer: PeerId, data: bytes) -> None: ...
    def peers(self) -> list[PeerId]: ...
    def topic_peers(self, topic: str) -> list[PeerId]: ...
    async def connect(self, addr: str) -> PeerId: ...
    def add_bootstrap(self, addrs: Sequence[str]) -> None: ...
    def statistics(self) -> TransportStatistics: ...


class _Base:
    """Shared logic: limits, counters, inbound admission, mesh maintenance loop."""

    local_peer: PeerId

    def __init__(self, limits: TransportLimits, rng: random.Random | None = None) -> None:
        self.limits = limits
        self.rng = rng or random.Random()
        self.counters = _Counters()
        self._handler: RequestHandler | None = None
        self._frame_handler: FrameHandler | None = None
        self._buckets: dict[PeerId, TokenBucket] = {}
        self._streams_in: dict[PeerId, int] = defaultdict(int)
        self._bootstrap: list[str] = []
        self._backoff: dict[str, Backoff] = {}
        self._subs: dict[str, list[trio.MemorySendChannel[GossipMessage]]] = defaultdict(list)
        self.peers_changed = trio.Event()

    # -- hooks implemented by subclasses
    def peers(self) -> list[PeerId]:  # pragma: no cover - overridden
        raise NotImplementedError

    async def connect(self, addr: str) -> PeerId:  # pragma: no cover - overridden
        raise NotImplementedError

    async def _peer_exchange(self, peer: PeerId) -> list[tuple[PeerId, list[str]]]:
        raise NotImplementedError  # pragma: no cover

    # -- common API
    def set_request_handler(self, handler: RequestHandler) -> None:
        self._handler = handler

    def set_frame_handler(self, handler: FrameHandler) -> None:
        self._frame_handler = handler

    async def _deliver_frame(self, peer: PeerId, payload: bytes) -> None:
        """An admitted one-way frame: hand it over (a slow handler slows this pipe only)."""
        self.counters.inc("frames_received")
        if self._frame_handler is None:
            return
        try:
            await self._frame_handler(peer, payload)
        except Exception:  # a handler bug must not kill the pipe: log it
            log.exception("frame handler failed for %s", peer)

    def add_bootstrap(self, addrs: Sequence[str]) -> None:
        """Remember bootstrap addresses; the maintenance loop dials them with backoff."""
        for a in addrs:
            if a not in self._bootstrap:
                self._bootstrap.append(a)

    def _notify_peers_changed(self) -> None:
        self.peers_changed.set()
        self.peers_changed = trio.Event()

    def _admit(self, peer: PeerId, size: int | None = None) -> str | None:
        """Decide whether an inbound frame from ``peer`` is processed; None = yes, else reason."""
        now = trio.current_time()
        bucket = self._buckets.get(peer)
        if bucket is None:
            bucket = self._buckets[peer] = TokenBucket(self.limits.rate_per_s, self.limits.burst, now)
        if size is not None and size > self.limits.frame_bytes_max:
            self.counters.inc("rejected_oversized")
            return "oversized"
        if not bucket.take(now):
            self.counters.inc("rejected_rate_limited")
            return "rate_limited"
        return None

    async def _serve(self, peer: PeerId, payload: bytes) -> tuple[int, bytes]:
        if self._handler is None:
            return STATUS_REJECTED, b"no handler"
        try:
            reply = await self._handler(peer, payload)
        except RequestRejected as exc:
            return STATUS_REJECTED, str(exc).encode()[:200]
        except Exception as exc:  # a handler bug must not kill the transport: answer, log
            log.exception("request handler failed for %s", peer)
            return STATUS_REJECTED, f"handler error: {type(exc).__name__}".encode()
        self.counters.inc("requests_served")
        return STATUS_OK, reply

    def _deliver_gossip(self, msg: GossipMessage) -> None:
        if msg.source == self.local_peer:
            return
        if self._admit(msg.source, len(msg.data)) is not None:
            return
        self.counters.inc("gossip_received")
        for ch in list(self._subs.get(msg.topic, ())):
            try:
                ch.send_nowait(msg)
            except trio.WouldBlock:
                self.counters.inc("gossip_dropped_slow_consumer")
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._subs[msg.topic].remove(ch)

    def _new_subscription(self, topic: str) -> trio.MemoryReceiveChannel[GossipMessage]:
        send, recv = trio.open_memory_channel[GossipMessage](1024)
        self._subs[topic].append(send)
        return recv

    def statistics(self) -> TransportStatistics:
        c = self.counters.c
        return TransportStatistics(
            peers_connected=len(self.peers()),
            requests_sent=c["requests_sent"],
            requests_served=c["requests_served"],
            frames_sent=c["frames_sent"],
            frames_received=c["frames_received"],
            gossip_published=c["gossip_published"],
            gossip_received=c["gossip_received"],
            rejected_oversized=c["rejected_oversized"],
            rejected_rate_limited=c["rejected_rate_limited"],
            rejected_too_many_streams=c["rejected_too_many_streams"],
            rejected_malformed=c["rejected_malformed"],
            dials_failed=c["dials_failed"],
        )

    async def _dial_with_backoff(self, addr: str, why: str) -> None:
        now = trio.current_time()
        b = self._backoff.setdefault(
            addr, Backoff(self.limits.redial_initial_s, self.limits.redial_max_s, self.rng))
        if not b.ready(now):
            return
        try:
            with trio.fail_after(self.limits.request_timeout_s):
                peer = await self.connect(addr)
        except (TransportError, trio.TooSlowError, OSError) as exc:
            delay = b.failed(trio.current_time())
            self.counters.inc("dials_failed")
            log.warning("%s %s unreachable (%s); retrying in %.1f s", why, addr, exc, delay)
            return
        except Exception as exc:  # libp2p raises many unrelated types on dial failure
            delay = b.failed(trio.current_time())
            self.counters.inc("dials_failed")
            log.warning("%s %s unreachable (%s: %s); retrying in %.1f s",
                        why, addr, type(exc).__name__, exc, delay)
            return
        if b.failures:
            log.info("%s %s reachable again as %s", why, addr, peer)
        b.succeeded()

    async def maintain(self) -> None:
        """Forever: (re)dial bootstrap peers, then learn peers from peers until at target.

        Runs as a background task of the transport. An unreachable bootstrap peer is logged
        and retried with backoff; it is never fatal.
        """
        while True:
            connected = set(self.peers())
            for addr in self._bootstrap:
                if _addr_peer(addr) not in connected:
                    await self._dial_with_backoff(addr, "bootstrap peer")
            connected = set(self.peers())
            if 0 < len(connected) < self.limits.connections_target:
                for peer in self.rng.sample(sorted(connected), min(3, len(connected))):
                    try:
                        with trio.fail_after(self.limits.request_timeout_s):
                            learned = await self._peer_exchange(peer)
                    except Exception as exc:  # noqa: BLE001 - a bad peer must not stop upkeep
                        log.debug("peer exchange with %s failed: %s", peer, exc)
                        continue
                    for pid, addrs in learned:
                        if len(set(self.peers())) >= self.limits.connections_target:
                            break
                        if pid == self.local_peer or pid in set(self.peers()):
                            continue
                        for a in addrs[:4]:
                            await self._dial_with_backoff(_with_peer(a, pid), "discovered peer")
                            if pid in set(self.peers()):
                                log.info("learned peer %s via %s", pid, peer)
                                break
            await self._discover_more()
            await trio.sleep(self.limits.maintain_interval_s)

    async def _discover_more(self) -> None:
        """Hook for other discovery sources (mDNS in the libp2p transport)."""

    def _claim_stream(self, peer: PeerId) -> bool:
        """Take one of ``peer``'s inbound stream slots, or count the reject and say no."""
        if self._streams_in[peer] >= self.limits.streams_per_peer_max:
            self.counters.inc("rejected_too_many_streams")
            return False
        self._streams_in[peer] += 1
        return True

    def _release_stream(self, peer: PeerId) -> None:
        self._streams_in[peer] -= 1


def _is_loopback(addr: str) -> bool:
    return addr.startswith("/ip4/127.") or addr.startswith("/ip6/::1/")


def _addr_peer(addr: str) -> PeerId | None:
    """The peer id at the end of ``.../p2p/<id>`` (or ``mem/<id>``), else None."""
    for marker in ("/p2p/", "mem/"):
        if marker in addr:
            return PeerId(addr.rsplit(marker, 1)[1].split("/")[0])
    return None


def _with_peer(addr: str, peer: PeerId) -> str:
    if addr.startswith("mem/") or "/p2p/" in addr:
        return addr
    return f"{addr}/p2p/{peer}"


# ----------------------------------------------------------------------------------------------
# In-memory implementation


class MemoryNetwork:
    """A set of :class:`MemoryTransport` s that can reach each other by ``mem/<peer>``."""

    def __init__(self) -> None:
        self.nodes: dict[PeerId, MemoryTransport] = {}
        self.links: set[frozenset[PeerId]] = set()

    def linked(self, a: PeerId, b: PeerId) -> bool:
        return frozenset((a, b)) in self.links


class MemoryTransport(_Base):
    """In-process transport with libp2p's observable behaviour (gossip floods connected
    components, requests need a connection, same limits and counters)."""

    def __init__(self, network: MemoryNetwork, peer: PeerId,
                 limits: TransportLimits = TransportLimits(), rng: random.Random | None = None) -> None:
        super().__init__(limits, rng)
        self.net = network
        self.local_peer = peer
        self._seen: set[tuple[PeerId, int]] = set()
        self._seq = 0
        self._nursery: trio.Nursery | None = None

    def listen_addrs(self) -> list[str]:
        return [f"mem/{self.local_peer}"]

    def peers(self) -> list[PeerId]:
        return sorted(p for p in self.net.nodes if p != self.local_peer
                      and self.net.linked(p, self.local_peer))

    def topic_peers(self, topic: str) -> list[PeerId]:
        """Directly connected peers known to subscribe to ``topic``."""
        return [p for p in self.peers() if self.net.nodes[p]._subs.get(topic)]

    async def connect(self, addr: str) -> PeerId:
        peer = _addr_peer(addr)
        if peer is None or not addr.startswith("mem/"):
            raise BadAddress(f"not a memory address: {addr!r}")
        if peer not in self.net.nodes:
            raise PeerUnreachable(f"no such peer {peer}")
        if not self.net.linked(peer, self.local_peer):
            self.net.links.add(frozenset((peer, self.local_peer)))
            self._notify_peers_changed()
            self.net.nodes[peer]._notify_peers_changed()
        await trio.lowlevel.checkpoint()
        return peer

    async def publish(self, topic: str, data: bytes) -> None:
        if len(data) > self.limits.frame_bytes_max:
            raise FrameTooLarge(f"{len(data)} > {self.limits.frame_bytes_max} bytes")
        self._seq += 1
        self.counters.inc("gossip_published")
        # flood over links to the connected component, each node sees a message once
        key = (self.local_peer, self._seq)
        frontier, seen = [self.local_peer], {self.local_peer}
        while frontier:
            cur = frontier.pop()
            for nxt in self.net.nodes[cur].peers():
                if nxt not in seen:
                    seen.add(nxt)
                    frontier.append(nxt)
                    node = self.net.nodes[nxt]
                    if key not in node._seen:
                        node._seen.add(key)
                        node._deliver_gossip(GossipMessage(topic, self.local_peer, bytes(data)))
        await trio.lowlevel.checkpoint()

    async def subscribe(self, topic: str) -> trio.MemoryReceiveChannel[GossipMessage]:
        return self._new_subscription(topic)

    async def request(self, peer: PeerId, data: bytes) -> bytes:
        if len(data) > self.limits.frame_bytes_max:
            raise FrameTooLarge(f"{len(data)} > {self.limits.frame_bytes_max} bytes")
        other = self.net.nodes.get(peer)
        if other is None or not self.net.linked(peer, self.local_peer) or other._closed:
            raise PeerUnreachable(f"not connected to {peer}")
        self.counters.inc("requests_sent")
        with trio.move_on_after(self.limits.request_timeout_s) as scope:
            status, reply = await other._inbound(self.local_peer, bytes(data))
        if scope.cancelled_caught:
            raise PeerUnreachable(f"request to {peer} timed out")
        if status != STATUS_OK:
            raise RequestRejected(reply.decode(errors="replace"))
        return reply

    async def send(self, peer: PeerId, data: bytes) -> None:
        """One-way frame; the receiver's limits apply (rejected frames are dropped, counted)."""
        if len(data) > self.limits.frame_bytes_max:
            raise FrameTooLarge(f"{len(data)} > {self.limits.frame_bytes_max} bytes")
        other = self.net.nodes.get(peer)
        if other is None or not self.net.linked(peer, self.local_peer) or other._closed:
            raise PeerUnreachable(f"not connected to {peer}")
        self.counters.inc("frames_sent")
        if other._admit(self.local_peer, len(data)) is None:
            await other._deliver_frame(self.local_peer, bytes(data))
        else:
            await trio.lowlevel.checkpoint()

    async def _inbound(self, peer: PeerId, data: bytes) -> tuple[int, bytes]:
        if not self._claim_stream(peer):
            return STATUS_REJECTED, b"too many streams"
        try:
            reason = self._admit(peer, len(data))
            if reason is not None:
                return STATUS_REJECTED, reason.encode()
            return await self._serve(peer, data)
        finally:
            self._release_stream(peer)

    async def _peer_exchange(self, peer: PeerId) -> list[tuple[PeerId, list[str]]]:
        other = self.net.nodes[peer]
        await trio.lowlevel.checkpoint()
        return [(p, [f"mem/{p}"]) for p in other.peers()]

    _closed = False

    async def close(self) -> None:
        self._closed = True
        self.net.links = {l for l in self.net.links if self.local_peer not in l}
        for p in list(self.net.nodes):
            self.net.nodes[p]._notify_peers_changed()
        self.net.nodes.pop(self.local_peer, None)
        for chans in self._subs.values():
            for ch in chans:
                await ch.aclose()


@asynccontextmanager
async def open_memory_transport(network: MemoryNetwork, peer: PeerId,
                                limits: TransportLimits = TransportLimits(),
                                bootstrap: Sequence[str] = ()) -> AsyncIterator[MemoryTransport]:
    """Join ``network`` as ``peer``; maintenance runs until the block exits."""
    t = MemoryTransport(network, peer, limits)
    network.nodes[peer] = t
    t.add_bootstrap(bootstrap)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(t.maintain)
        try:
            yield t
        finally:
            nursery.cancel_scope.cancel()
            await t.close()


# ----------------------------------------------------------------------------------------------
# libp2p implementation


async def _read_exact(stream, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = await stream.read(n - len(buf))
        if not chunk:
            raise PeerUnreachable(f"stream closed after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


async def read_frame(stream, frame_bytes_max: int) -> bytes:
    """Read one length-prefixed frame; the length is checked BEFORE the body is read."""
    (n,) = _LEN.unpack(await _read_exact(stream, _LEN.size))
    if n > frame_bytes_max:
        raise FrameTooLarge(f"frame of {n} bytes > {frame_bytes_max}")
    return await _read_exact(stream, n)


async def write_frame(stream, payload: bytes) -> None:
    await stream.write(_LEN.pack(len(payload)) + payload)


class Libp2pTransport(_Base):
    """py-libp2p host + gossipsub. Build with :func:`open_libp2p_transport`."""

    def __init__(self, host, pubsub, limits: TransportLimits, rng: random.Random | None = None) -> None:
        super().__init__(limits, rng)
        self.host = host
        self.pubsub = pubsub
        self.local_peer = PeerId(str(host.get_id()))
        self._topic_tasks: set[str] = set()
        self._nursery: trio.Nursery | None = None
        self._pipes: dict[PeerId, object] = {}
        self._pipe_locks: dict[PeerId, trio.Lock] = defaultdict(trio.Lock)
        self.greeter = None  # node.host.Greeter: set by open_libp2p_transport when given a card
        self.mdns = None  # node.host.MdnsDiscovery when --mdns
        self.relay = None  # node.host.RelaySupport (with a card: every daemon)
        self.network_key_fingerprint: str | None = None

    def listen_addrs(self) -> list[str]:
        """Dialable addresses (a wildcard listen address is expanded per interface)."""
        return [f"{a}" if "/p2p/" in str(a) else f"{a}/p2p/{self.local_peer}"
                for a in self.host.get_addrs()]

    def _refused(self, peer) -> bool:
        return self.greeter is not None and str(peer) in self.greeter.refused

    def peers(self) -> list[PeerId]:
        return sorted(PeerId(str(p)) for p in self.host.get_connected_peers()
                      if not self._refused(p))

    def topic_peers(self, topic: str) -> list[PeerId]:
        """Connected peers whose subscription to ``topic`` this host has heard of."""
        return sorted(PeerId(str(p)) for p in self.pubsub.peer_topics.get(topic, ())
                      if not self._refused(p))

    def peer_card(self, peer: PeerId) -> dict:
        """What the greeting told us about ``peer`` (address, model, space, clock skew)."""
        if self.greeter is None:
            return {}
        from node.host import conn_addr
        card = self.greeter.public(str(peer))
        if card:
            card["addr"] = conn_addr(self, str(peer)) or card["addr"]  # now: direct if any
        return card

    async def connect(self, addr: str) -> PeerId:
        from libp2p.peer.peerinfo import info_from_p2p_addr
        import multiaddr
        from node.host import is_dialable
        if not is_dialable(addr):
            raise BadAddress(f"{addr!r}: unspecified address, not dialable")
        try:
            info = info_from_p2p_addr(multiaddr.Multiaddr(addr))
        except Exception as exc:
            raise BadAddress(f"{addr!r}: {exc}") from exc
        if self._refused(info.peer_id):
            raise PeerUnreachable(f"{addr}: refused ({self.greeter.refused[str(info.peer_id)]})")
        if "/p2p-circuit" in addr and self.relay is not None:
            try:
                await self.relay.dial(addr)
            except Exception as exc:
                raise PeerUnreachable(f"{addr}: relay: {type(exc).__name__}: {exc}") from exc
            self._notify_peers_changed()
            return PeerId(str(info.peer_id))
        network = self.host.get_network()
        if hasattr(network, "unblock_peer"):  # our own backoff decides when to redial
            network.unblock_peer(info.peer_id)
        try:
            await self.host.connect(info)
        except Exception as exc:
            raise PeerUnreachable(f"{addr}: {type(exc).__name__}: {exc}") from exc
        self._notify_peers_changed()
        return PeerId(str(info.peer_id))

    async def publish(self, topic: str, data: bytes) -> None:
        if len(data) > self.limits.frame_bytes_max:
            raise FrameTooLarge(f"{len(data)} > {self.limits.frame_bytes_max} bytes")
        await self.pubsub.publish(topic, data)
        self.counters.inc("gossip_published")

    async def subscribe(self, topic: str) -> trio.MemoryReceiveChannel[GossipMessage]:
        recv = self._new_subscription(topic)
        if topic not in self._topic_tasks:
            self._topic_tasks.add(topic)
            sub = await self.pubsub.subscribe(topic)
            assert self._nursery is not None, "transport is not running"
            self._nursery.start_soon(self._pump, topic, sub)
        return recv

    async def _pump(self, topic: str, sub) -> None:
        from libp2p.peer.id import ID
        while True:
            m = await sub.get()
            try:
                source = PeerId(str(ID(m.from_id)))
            except Exception:
                self.counters.inc("rejected_malformed")
                continue
            self._deliver_gossip(GossipMessage(topic, source, bytes(m.data)))

    async def request(self, peer: PeerId, data: bytes, protocol: str = RPC_PROTOCOL) -> bytes:
        from libp2p.peer.id import ID
        if len(data) > self.limits.frame_bytes_max:
            raise FrameTooLarge(f"{len(data)} > {self.limits.frame_bytes_max} bytes")
        self.counters.inc("requests_sent")
        stream = None
        try:
            with trio.fail_after(self.limits.request_timeout_s):
                stream = await self.host.new_stream(ID.from_base58(peer), [protocol])
                await write_frame(stream, data)
                reply = await read_frame(stream, self.limits.frame_bytes_max)
        except (TransportError, trio.TooSlowError, Exception) as exc:
            if stream is not None:
                with trio.move_on_after(1):
                    try:
                        await stream.reset()
                    except Exception:  # noqa: BLE001 - best effort
                        pass
            if isinstance(exc, FrameTooLarge):
                raise
            raise PeerUnreachable(f"request to {peer} failed: {type(exc).__name__}: {exc}") from exc
        with trio.move_on_after(1):
            try:
                await stream.close()
            except Exception:  # noqa: BLE001 - the answer is already here
                pass
        if not reply:
            raise RequestRejected("empty response")
        if reply[0] != STATUS_OK:
            raise RequestRejected(reply[1:].decode(errors="replace"))
        return reply[1:]

    async def send(self, peer: PeerId, data: bytes) -> None:
        """One-way frame over this peer's pipe (opened on first use, reopened once on error)."""
        from libp2p.peer.id import ID
        if len(data) > self.limits.frame_bytes_max:
            raise FrameTooLarge(f"{len(data)} > {self.limits.frame_bytes_max} bytes")
        frame = _LEN.pack(len(data)) + data
        async with self._pipe_locks[peer]:
            for attempt in (0, 1):
                stream = self._pipes.get(peer)
                try:
                    with trio.fail_after(self.limits.request_timeout_s):
                        if stream is None:
                            stream = await self.host.new_stream(ID.from_base58(peer), [PIPE_PROTOCOL])
                            self._pipes[peer] = stream
                        await stream.write(frame)
                    self.counters.inc("frames_sent")
                    return
                except Exception as exc:  # noqa: BLE001 - libp2p raises many types here
                    self._pipes.pop(peer, None)
                    if stream is not None:
                        await _reset(stream)
                    if attempt == 1:
                        raise PeerUnreachable(f"send to {peer} failed: {type(exc).__name__}: {exc}") from exc
                    log.debug("pipe to %s broke (%s); reopening", peer, exc)

    async def _handle_pipe(self, stream) -> None:
        peer = PeerId(str(stream.muxed_conn.peer_id))
        if not self._claim_stream(peer):
            await _reset(stream)
            return
        try:
            while True:
                try:
                    payload = await read_frame(stream, self.limits.frame_bytes_max)
                except FrameTooLarge:
                    self._admit(peer, self.limits.frame_bytes_max + 1)  # counts the reject
                    await _reset(stream)  # cannot resynchronise after an unread body
                    return
                except PeerUnreachable:
                    return  # clean end of the pipe
                except Exception:  # noqa: BLE001 - reset by the peer, truncated, ...
                    return
                if self._admit(peer, len(payload)) is None:
                    await self._deliver_frame(peer, payload)
        finally:
            self._release_stream(peer)

    async def _handle_rpc(self, stream) -> None:
        peer = PeerId(str(stream.muxed_conn.peer_id))
        if not self._claim_stream(peer):
            await _reset(stream)
            return
        try:
            with trio.move_on_after(self.limits.request_timeout_s):
                try:
                    payload = await read_frame(stream, self.limits.frame_bytes_max)
                except FrameTooLarge:
                    self._admit(peer, self.limits.frame_bytes_max + 1)  # counts the reject
                    await write_frame(stream, bytes([STATUS_REJECTED]) + b"oversized")
                    await stream.close()
                    return
                except Exception:  # truncated frame, reset stream
                    self.counters.inc("rejected_malformed")
                    await _reset(stream)
                    return
                reason = self._admit(peer, len(payload))
                if reason is not None:
                    await write_frame(stream, bytes([STATUS_REJECTED]) + reason.encode())
                    await stream.close()
                    return
                status, reply = await self._serve(peer, payload)
                await write_frame(stream, bytes([status]) + reply)
                await stream.close()
        except Exception as exc:  # noqa: BLE001 - a broken stream must not crash the node
            log.debug("rpc stream from %s failed: %s", peer, exc)
            await _reset(stream)
        finally:
            self._release_stream(peer)

    async def _handle_px(self, stream) -> None:
        from node.host import is_dialable, remote_addr
        peer = PeerId(str(stream.muxed_conn.peer_id))
        try:
            with trio.move_on_after(self.limits.request_timeout_s):
                await read_frame(stream, 64)
                if self._admit(peer) is not None:
                    await _reset(stream)
                    return
                store = self.host.get_peerstore()
                # loopback addresses are only useful to a peer on this same machine
                local_asker = _is_loopback(remote_addr(stream))
                out = []
                for p in self.host.get_connected_peers()[:32]:
                    if str(p) == peer:
                        continue
                    if self._refused(p):
                        continue
                    addrs = [str(a) for a in store.addrs(p) if is_dialable(str(a))
                             and (local_asker or not _is_loopback(str(a)))][:4]
                    out.append([str(p), addrs])
                await write_frame(stream, bytes([STATUS_OK]) + msgpack.packb(out))
                await stream.close()
        except Exception as exc:  # noqa: BLE001
            log.debug("px stream from %s failed: %s", peer, exc)
            await _reset(stream)

    async def _discover_more(self) -> None:
        """Dial peers found by mDNS (each address with backoff) while below the target."""
        if self.mdns is None:
            return
        for pid, addrs in self.mdns.drain():
            pid = PeerId(pid)
            if pid == self.local_peer or pid in set(self.peers()) or self._refused(pid):
                continue
            if len(self.peers()) >= self.limits.connections_target:
                break
            for a in addrs[:4]:
                await self._dial_with_backoff(_with_peer(a, pid), "mDNS peer")
                if pid in set(self.peers()):
                    log.info("found peer %s on the LAN by mDNS at %s", pid, a)
                    break

    async def _peer_exchange(self, peer: PeerId) -> list[tuple[PeerId, list[str]]]:
        raw = await self.request(peer, b"", protocol=PX_PROTOCOL)
        items = msgpack.unpackb(raw)
        out = []
        if not isinstance(items, list):
            return out
        for it in items[:32]:
            if (isinstance(it, list) and len(it) == 2 and isinstance(it[0], str)
                    and isinstance(it[1], list)):
                out.append((PeerId(it[0]), [a for a in it[1] if isinstance(a, str)]))
        return out


@asynccontextmanager
async def _null_context():
    yield


async def _reset(stream) -> None:
    with trio.move_on_after(1):
        try:
            await stream.reset()
        except Exception:  # noqa: BLE001 - best effort
            pass


def load_or_create_identity(path: str):
    """libp2p Ed25519 key pair of the identity file at ``path`` (0600, created on first use).

    The file is p2pmoa's :class:`~p2pmoa.identity.Ed25519Identity` format (libp2p's protobuf
    key encoding); the libp2p key is derived from the same seed, so the libp2p peer id and
    the id in signed protocol envelopes are the same string.
    """
    from libp2p.crypto.ed25519 import create_new_key_pair
    from p2pmoa.identity import Ed25519Identity
    ident = Ed25519Identity.load_or_create(path)
    kp = create_new_key_pair(ident.seed())
    assert peer_id_of(kp) == ident.peer_id, "libp2p and envelope peer ids must agree"
    return kp


def peer_id_of(key_pair) -> PeerId:
    from libp2p.peer.id import ID
    return PeerId(str(ID.from_pubkey(key_pair.public_key)))


@asynccontextmanager
async def open_libp2p_transport(
    key_pair,
    listen: Sequence[str] = ("/ip4/127.0.0.1/tcp/0",),
    bootstrap: Sequence[str] = (),
    limits: TransportLimits = TransportLimits(),
    gossip_rate_per_topic_per_s: float = 1000.0,
    *,
    network_key: str | None = None,
    mdns: bool = False,
    card=None,
    relay: bool = False,
) -> AsyncIterator[Libp2pTransport]:
    """Start a libp2p host (Noise only, tuned gossipsub) and yield a running transport.

    Pubsub and GossipSub services start before ``host.run`` (the notes' start order), the
    host is closed explicitly on exit, and the maintenance loop dials ``bootstrap`` with
    backoff. Listen on ``/tcp/0`` to let the OS pick a free port; see ``listen_addrs()``.

    ``network_key`` (64 hex digits, see node.host.read_network_key) makes the mesh private
    (libp2p pnet); ``mdns`` finds peers on the LAN; ``card`` (a node.host.LocalCard) turns on
    the greeting that refuses peers of another embedding space and measures clock skew.
    """
    import multiaddr
    from libp2p import new_host
    from libp2p.crypto.x25519 import create_new_key_pair as x25519_keypair
    from libp2p.pubsub.gossipsub import PROTOCOL_ID, PROTOCOL_ID_V11, GossipSub
    from libp2p.pubsub.pubsub import Pubsub
    from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_ID
    from libp2p.security.noise.transport import Transport as NoiseTransport
    from libp2p.tools.anyio_service import background_trio_service

    las = [multiaddr.Multiaddr(a) for a in listen]
    from node import host as nhost
    host = new_host(
        key_pair=key_pair, listen_addrs=las,
        sec_opt={NOISE_ID: NoiseTransport(key_pair, noise_privkey=x25519_keypair().private_key)},
        psk=network_key, addrs_factory=nhost.addrs_factory,
    )
    gs = GossipSub(protocols=[PROTOCOL_ID_V11, PROTOCOL_ID], degree=6, degree_low=4,
                   degree_high=12, heartbeat_interval=1, adaptive_gossip_enabled=False,
                   max_messages_per_topic_per_second=gossip_rate_per_topic_per_s,
                   eclipse_protection_enabled=False)
    ps = Pubsub(host, gs, max_inbound_rpc_size=limits.frame_bytes_max + 4096)
    t = Libp2pTransport(host, ps, limits)
    t.add_bootstrap(bootstrap)
    host.set_stream_handler(RPC_PROTOCOL, t._handle_rpc)
    host.set_stream_handler(PX_PROTOCOL, t._handle_px)
    host.set_stream_handler(PIPE_PROTOCOL, t._handle_pipe)
    host.set_stream_handler(HELLO_PROTOCOL, lambda stream: nhost.handle_hello(t, stream))
    if card is not None:
        t.greeter = nhost.Greeter(card)
        t.relay = nhost.RelaySupport(host, serve=relay)
    if network_key is not None:
        t.network_key_fingerprint = nhost.key_fingerprint(network_key)
    try:
        relay_service = (background_trio_service(t.relay.protocol) if t.relay is not None
                         else _null_context())
        dcutr_service = (background_trio_service(t.relay.dcutr) if t.relay is not None
                         else _null_context())
        async with background_trio_service(ps), background_trio_service(gs), relay_service, \
                dcutr_service:
            async with host.run(las):
                async with trio.open_nursery() as nursery:
                    t._nursery = nursery
                    nursery.start_soon(t.maintain)
                    if t.greeter is not None:
                        nursery.start_soon(nhost.greet_loop, t)
                    if mdns:
                        try:
                            t.mdns = nhost.MdnsDiscovery(host, t.local_peer, t.listen_addrs(),
                                                         t.network_key_fingerprint)
                            t.mdns.start()
                        except OSError as exc:  # no multicast-capable interface: bootstrap only
                            t.mdns = None
                            log.warning("mDNS unavailable (%s); use --bootstrap", exc)
                    try:
                        log.info("libp2p host %s listening on %s", t.local_peer, t.listen_addrs())
                        yield t
                    finally:
                        if t.mdns is not None:
                            t.mdns.stop()
                        nursery.cancel_scope.cancel()
                with trio.CancelScope(shield=True), trio.move_on_after(5):
                    await host.close()
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(5):
            await host.close()
