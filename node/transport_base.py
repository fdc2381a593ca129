"""The transport's common pieces (split out of node/transport.py, issue 10): protocol ids,
errors, limits, statistics, token bucket, backoff, the :class:`Transport` interface and the
shared receive-side logic (:class:`_Base`: limits, counters, inbound admission, mesh
maintenance). ``node.transport`` re-exports every name.
"""
from __future__ import annotations

import logging
import math
import random
import struct
from collections import defaultdict
from dataclasses import dataclass
from typing import Awaitable, Callable, Protocol, Sequence

import trio

from p2pmoa.effects import PeerId

log = logging.getLogger("node.transport")

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
