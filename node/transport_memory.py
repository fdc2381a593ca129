"""The in-process transport (split out of node/transport.py, issue 10): the same observable
behaviour as libp2p over a :class:`MemoryNetwork`, for fast tests of everything above the
transport. ``node.transport`` re-exports every name.
"""
from __future__ import annotations

import random
from contextlib import asynccontextmanager
from typing import AsyncIterator, Sequence

import trio

from node.transport_base import (BadAddress, FrameTooLarge, GossipMessage, PeerUnreachable,
                                RequestRejected, STATUS_OK, STATUS_REJECTED, TransportLimits,
                                _Base, _addr_peer)
from p2pmoa.effects import PeerId


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
