"""The libp2p transport (split out of node/transport.py, issue 10): framing of streams,
:class:`Libp2pTransport` (py-libp2p host + gossipsub) and :func:`open_libp2p_transport`.
``node.transport`` re-exports every name.
"""
from __future__ import annotations

import logging
import random
from collections import defaultdict
from contextlib import asynccontextmanager
from typing import AsyncIterator, Sequence

import msgpack
import trio

from node.transport_base import (BadAddress, FrameTooLarge, GossipMessage, HELLO_PROTOCOL,
                                PIPE_PROTOCOL, PX_PROTOCOL, PeerUnreachable, RPC_PROTOCOL,
                                RequestRejected, STATUS_OK, STATUS_REJECTED, TransportError,
                                TransportLimits, _Base, _LEN, _is_loopback, _with_peer)
from p2pmoa.effects import PeerId

log = logging.getLogger("node.transport")

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
