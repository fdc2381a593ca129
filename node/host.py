"""What a libp2p host needs to live on a real LAN: private-network key, dialable addresses,
LAN discovery (mDNS), and a greeting that refuses incompatible peers and measures clock skew.

* **Network key** (``--network-key FILE``): libp2p's private-network protector (``pnet``, a
  32-byte pre-shared key; every connection is XSalsa20-encrypted with it *before* Noise), so a
  host without the key cannot complete any handshake. The file uses the format go-libp2p and
  IPFS use (``swarm.key``)::

      /key/swarm/psk/1.0.0/
      /base16/
      <64 hex digits>

* **Dialable addresses**: a host listening on ``/ip4/0.0.0.0/...`` advertises (identify, mDNS,
  peer exchange, the start-up log) one address per interface instead of ``0.0.0.0``.
* **mDNS** (``--mdns``): py-libp2p's spec mDNS (zeroconf). Private meshes use the service type
  ``_p2p-<key fingerprint>._udp.local.``, so two private meshes on one LAN do not see each other.
* **Greeting** ``/p2pmoa/hello/1.0.0``: on every new connection both sides exchange
  ``{model, space, role, time_s}``. A peer whose embedding space differs from ours is refused
  (logged on both sides, disconnected, not redialled); the clock difference seen in the
  exchange is recorded per peer, reported back to the peer, and logged when it approaches the
  protocol's replay window.
"""
from __future__ import annotations

import hashlib
import ipaddress
import logging
import os
import secrets
import stat
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import msgpack

log = logging.getLogger(__name__)

HELLO_PROTOCOL = "/p2pmoa/hello/1.0.0"
PSK_HEADER = "/key/swarm/psk/1.0.0/\n/base16/\n"
SKEW_WINDOW_S = 30.0
"""The protocol's replay window (``ProtocolConfig.skew_s``): frames stamped further than this
from the receiver's clock are refused. A peer is warned about at half of it."""
SKEW_WARN_S = SKEW_WINDOW_S / 2


class NetworkKeyError(ValueError):
    """The network key file is missing, unreadable or malformed."""


# ----------------------------------------------------------------------------------------------
# Network key (pnet)


def write_network_key(path: str | os.PathLike, force: bool = False) -> str:
    """Write a fresh 32-byte key at ``path`` (mode 0600); return its fingerprint."""
    p = Path(path).expanduser()
    if p.exists() and not force:
        raise FileExistsError(f"{p} exists; use --force to replace it")
    p.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32)
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(PSK_HEADER + key + "\n")
    os.chmod(p, 0o600)
    return key_fingerprint(key)


def read_network_key(path: str | os.PathLike) -> str:
    """The key in ``path`` as 64 lowercase hex digits (swarm.key format, or bare hex)."""
    p = Path(path).expanduser()
    try:
        text = p.read_text()
        mode = p.stat().st_mode
    except OSError as exc:
        raise NetworkKeyError(f"cannot read network key {p}: {exc.strerror or exc}") from exc
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if lines[:2] == ["/key/swarm/psk/1.0.0/", "/base16/"]:
        lines = lines[2:]
    if len(lines) != 1 or len(lines[0]) != 64:
        raise NetworkKeyError(f"network key {p} is not a swarm.key (/key/swarm/psk/1.0.0/, "
                              "/base16/, 64 hex digits); create one with `p2pmoa keygen --network-key FILE`")
    try:
        bytes.fromhex(lines[0])
    except ValueError as exc:
        raise NetworkKeyError(f"network key {p}: not hexadecimal") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("network key %s is readable by other users (mode %o); chmod 600 it",
                    p, stat.S_IMODE(mode))
    return lines[0].lower()


def key_fingerprint(psk_hex: str) -> str:
    """8 hex digits naming a private mesh (safe to show: a hash, not the key)."""
    return hashlib.sha256(b"p2pmoa-pnet\0" + bytes.fromhex(psk_hex)).hexdigest()[:8]


# ----------------------------------------------------------------------------------------------
# Addresses


def interface_ips() -> list[str]:
    """IPv4 addresses of this host's interfaces, non-loopback first (link-local skipped)."""
    import ifaddr
    out: list[str] = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if not isinstance(ip.ip, str):
                continue  # IPv6 tuples: not advertised (the lab and most LANs are IPv4)
            a = ipaddress.ip_address(ip.ip)
            if a.is_link_local or a.is_unspecified or ip.ip in out:
                continue
            out.append(ip.ip)
    return sorted(out, key=lambda s: (ipaddress.ip_address(s).is_loopback, s))


def expand_addr(addr: str, ips: list[str] | None = None) -> list[str]:
    """``/ip4/0.0.0.0/tcp/N[...]`` becomes one address per interface; others are unchanged."""
    if not addr.startswith("/ip4/0.0.0.0/"):
        return [addr]
    rest = addr[len("/ip4/0.0.0.0"):]
    return [f"/ip4/{ip}{rest}" for ip in (interface_ips() if ips is None else ips)]


def addrs_factory(candidates):
    """libp2p ``addrs_factory``: advertise interface addresses instead of wildcards."""
    import multiaddr
    out, seen = [], set()
    for c in candidates:
        for a in expand_addr(str(c)):
            if a not in seen:
                seen.add(a)
                out.append(multiaddr.Multiaddr(a))
    return out


def is_dialable(addr: str) -> bool:
    """False for addresses nobody can dial (unspecified IPs)."""
    return not (addr.startswith("/ip4/0.0.0.0/") or addr.startswith("/ip6/::/"))


def bootstrap_line(addrs: list[str]) -> str:
    """A copy-paste line for other devices: the first non-loopback address, else loopback."""
    lan = [a for a in addrs if "/ip4/127." not in a and "/ip6/::1/" not in a]
    pick = (lan or addrs)[:1]
    return "p2pmoa node run --bootstrap " + pick[0] if pick else ""


# ----------------------------------------------------------------------------------------------
# mDNS


class MdnsDiscovery:
    """py-libp2p's mDNS (zeroconf threads) bridged to the transport's maintenance loop.

    Discovered ``(peer, addrs)`` pairs go into a thread-safe queue that the maintenance loop
    drains (zeroconf calls back on its own thread). Only IPv4 TCP addresses are kept.
    """

    def __init__(self, host, local_peer: str, advertised: list[str], fingerprint: str | None) -> None:
        from libp2p.discovery.mdns.mdns import create_mdns_discovery
        self.local_peer = local_peer
        self.found: deque[tuple[str, list[str]]] = deque(maxlen=256)
        self._lock = threading.Lock()
        port = int(advertised[0].split("/tcp/")[1].split("/")[0]) if advertised else 0
        self.mdns = create_mdns_discovery(
            host.get_network(), port=port,
            listen_addrs=[a for a in advertised if "/ip4/127." not in a] or advertised,
            private_network_fingerprint=fingerprint)
        self.discovered_total = 0

    def _on_peer(self, info) -> None:  # zeroconf thread
        pid = str(info.peer_id)
        if pid == self.local_peer:
            return
        addrs = [str(a) for a in info.addrs if str(a).startswith("/ip4/") and "/tcp/" in str(a)]
        if addrs:
            self.found.append((pid, addrs))
            self.discovered_total += 1

    def start(self) -> None:
        from libp2p.discovery.events.peerDiscovery import peerDiscovery
        peerDiscovery.register_peer_discovered_handler(self._on_peer)
        self.mdns.start()
        log.info("mDNS discovery on (service %s)", self.mdns.service_type)

    def stop(self) -> None:
        from libp2p.discovery.events.peerDiscovery import peerDiscovery
        peerDiscovery.unregister_peer_discovered_handler(self._on_peer)
        try:
            self.mdns.stop()
        except Exception as exc:  # noqa: BLE001 - best effort at shutdown
            log.debug("mDNS stop: %s", exc)

    def drain(self) -> list[tuple[str, list[str]]]:
        out = []
        while self.found:
            out.append(self.found.popleft())
        return out


# ----------------------------------------------------------------------------------------------
# Greeting: who is this peer, does it speak our embedding space, how far off is its clock


@dataclass
class PeerCard:
    """What we know of one connected peer (shown by ``p2pmoa peers``)."""

    peer_id: str
    addr: str = ""
    first_addr: str = ""
    """The address of the connection the first greeting went over (kept: a relayed peer
    shows its circuit here even after hole punching made ``addr`` direct)."""
    model: str = ""
    space: str = ""
    role: str = ""
    clock_skew_s: float | None = None
    """The peer's clock minus ours, seconds (measured at the greeting, RTT/2 corrected)."""
    skew_seen_by_peer_s: float | None = None
    """Our clock minus the peer's, as the peer measured it and reported back."""
    refused: str = ""
    greeted_at: float = 0.0

    def public(self) -> dict:
        return {"addr": self.addr, "first_addr": self.first_addr or self.addr, "model": self.model, "embedding_space": self.space,
                "role": self.role, "clock_skew_s": self.clock_skew_s,
                "skew_seen_by_peer_s": self.skew_seen_by_peer_s, "refused": self.refused or None}


@dataclass
class LocalCard:
    """What this node says about itself in the greeting."""

    model: str
    space: str
    role: str = ""
    relay: bool = False
    """Serves as a circuit relay (``--relay``)."""
    clock: Callable[[], float] = time.time
    """Protocol wall clock (``time.time`` plus the ``--clock-offset-s`` fault, if any)."""


@dataclass
class Greeter:
    """Greeting state of one host: cards of peers, refusals, skew diagnostics."""

    local: LocalCard
    cards: dict[str, PeerCard] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=lambda: {"greetings": 0, "refused_space": 0,
                                                              "skew_warnings": 0})
    _warned: dict[str, float] = field(default_factory=dict)

    def hello(self) -> bytes:
        return msgpack.packb({"v": 1, "model": self.local.model, "space": self.local.space,
                              "role": self.local.role[:200], "time_s": self.local.clock(),
                              "relay": self.local.relay})

    def check(self, peer: str, msg: dict, addr: str, skew_s: float | None) -> PeerCard:
        """Record ``peer``'s greeting; refuse it if its embedding space differs from ours."""
        card = self.cards.setdefault(peer, PeerCard(peer))
        card.model = str(msg.get("model", ""))[:200]
        card.space = str(msg.get("space", ""))[:200]
        card.role = str(msg.get("role", ""))[:200]
        card.addr = addr or card.addr
        card.first_addr = card.first_addr or addr
        card.greeted_at = time.monotonic()
        if skew_s is not None:
            card.clock_skew_s = round(skew_s, 3)
            self._diagnose_peer_clock(peer, skew_s)
        if card.space != self.local.space and peer not in self.refused:
            self.refused[peer] = "space_mismatch"
            self.counters["refused_space"] += 1
            log.warning("refusing peer %s at %s: its embedding space %r differs from ours %r; "
                        "answers in different spaces cannot be compared. Give every node of a "
                        "mesh the same --embedder.", peer, addr or "?", card.space, self.local.space)
        card.refused = self.refused.get(peer, "")
        return card

    def _diagnose_peer_clock(self, peer: str, skew_s: float) -> None:
        if abs(skew_s) < SKEW_WARN_S:
            return
        now = time.monotonic()
        if now - self._warned.get(peer, -1e9) < 60:
            return
        self._warned[peer] = now
        self.counters["skew_warnings"] += 1
        side = "ahead of" if skew_s > 0 else "behind"
        verdict = ("its frames are outside the replay window and will be refused"
                   if abs(skew_s) > SKEW_WINDOW_S else "still inside the replay window")
        log.warning("clock of peer %s is %.1f s %s ours (tolerance ±%.0f s): %s; its owner "
                    "should enable NTP", peer, abs(skew_s), side, SKEW_WINDOW_S, verdict)

    def note_reported_skew(self, peer: str, seen_s: float) -> None:
        """``peer`` measured OUR clock ``seen_s`` seconds off its own; warn if most agree."""
        card = self.cards.setdefault(peer, PeerCard(peer))
        card.skew_seen_by_peer_s = round(seen_s, 3)
        seen = [c.skew_seen_by_peer_s for c in self.cards.values()
                if c.skew_seen_by_peer_s is not None and not c.refused]
        off = [s for s in seen if abs(s) >= SKEW_WARN_S]
        if off and len(off) * 2 > len(seen) and now_ok(self._warned, "self"):
            self.counters["skew_warnings"] += 1
            med = sorted(off)[len(off) // 2]
            log.warning("%d of %d peers see this node's clock %.1f s %s theirs (tolerance ±%.0f s): "
                        "fix this device's clock (enable NTP)%s", len(off), len(seen), abs(med),
                        "ahead of" if med > 0 else "behind", SKEW_WINDOW_S,
                        "; its messages are being refused" if abs(med) > SKEW_WINDOW_S else "")

    def public(self, peer: str) -> dict:
        card = self.cards.get(peer)
        return card.public() if card else {}


def now_ok(warned: dict[str, float], key: str, every_s: float = 60.0) -> bool:
    now = time.monotonic()
    if now - warned.get(key, -1e9) < every_s:
        return False
    warned[key] = now
    return True


def decode_hello(raw: bytes) -> dict:
    msg = msgpack.unpackb(raw)
    if not isinstance(msg, dict) or not isinstance(msg.get("time_s"), (int, float)):
        raise ValueError("malformed greeting")
    return msg


# ----------------------------------------------------------------------------------------------
# The greeting on the wire (t is a running node.transport.Libp2pTransport)

def remote_addr(stream) -> str:
    """The remote transport address of ``stream``'s connection, or '' (diagnostics only)."""
    try:
        for a in stream.muxed_conn.get_transport_addresses():
            return str(a)
    except Exception:  # noqa: BLE001
        pass
    try:
        host, port = stream.get_remote_address()
        return f"/ip4/{host}/tcp/{port}"
    except Exception:  # noqa: BLE001
        return ""




async def handle_hello(t, stream) -> None:
    """Answer a greeting: record the peer's card, tell it the clock skew we see, refuse it if
    its embedding space differs (after replying, so that it learns why)."""
    from node.transport import STATUS_OK, STATUS_REJECTED, _reset, read_frame, write_frame
    import trio
    peer = str(stream.muxed_conn.peer_id)
    try:
        with trio.move_on_after(t.limits.request_timeout_s):
            raw = await read_frame(stream, 4096)
            if t.greeter is None or t._admit(peer, len(raw)) is not None:
                await write_frame(stream, bytes([STATUS_REJECTED]) + b"not ready")
                await stream.close()
                return
            msg = decode_hello(raw)
            seen = float(msg["time_s"]) - t.greeter.local.clock()
            card = t.greeter.check(peer, msg, remote_addr(stream), seen)
            reply = msgpack.unpackb(t.greeter.hello())
            reply["seen_skew_s"] = seen
            reply["refused"] = card.refused
            reply["observed"] = remote_addr(stream)
            if t.relay is not None and msg.get("relay"):
                t.relay.relays.add(peer)
            await write_frame(stream, bytes([STATUS_OK]) + msgpack.packb(reply))
            await stream.close()
            if card.refused:
                t._nursery.start_soon(drop_peer, t, peer)
    except Exception as exc:  # noqa: BLE001 - a bad greeting must not crash the node
        t.counters.inc("rejected_malformed")
        log.debug("hello from %s failed: %s", peer, exc)
        await _reset(stream)


async def greet(t, peer: str) -> None:
    """Greet ``peer``: learn its card and clock (RTT/2 corrected), hear how it sees ours."""
    from node.transport import HELLO_PROTOCOL as proto
    addr = conn_addr(t, peer)  # the connection as it is when we greet, before any upgrade
    t0 = t.greeter.local.clock()
    raw = await t.request(peer, t.greeter.hello(), protocol=proto)
    t1 = t.greeter.local.clock()
    msg = decode_hello(raw)
    card = t.greeter.check(peer, msg, addr, float(msg["time_s"]) - (t0 + t1) / 2)
    if isinstance(msg.get("seen_skew_s"), (int, float)):
        t.greeter.note_reported_skew(peer, float(msg["seen_skew_s"]))
    if msg.get("refused") and not card.refused:
        log.warning("peer %s refused us: %s (our embedding space %r)",
                    peer, msg["refused"], t.greeter.local.space)
    if card.refused:
        await drop_peer(t, peer)
        return
    r = t.relay
    if r is not None:
        if isinstance(msg.get("observed"), str):
            r.note_observed(peer, msg["observed"])
        if msg.get("relay"):
            r.relays.add(peer)
        if r.behind_nat and peer in r.relays and peer not in r.reserved:
            await r.reserve(t, peer, conn_addr(t, peer), t._nursery)


async def drop_peer(t, peer: str) -> None:
    import trio
    from libp2p.peer.id import ID
    t._pipes.pop(peer, None)
    with trio.move_on_after(5):
        try:
            await t.host.disconnect(ID.from_base58(peer))
        except Exception as exc:  # noqa: BLE001 - best effort
            log.debug("disconnect %s: %s", peer, exc)
    t._notify_peers_changed()


async def greet_loop(t) -> None:
    """Greet every newly connected peer once per connection (both sides do)."""
    import trio
    greeted: set[str] = set()
    failures: dict[str, int] = {}
    while True:
        connected = {str(p) for p in t.host.get_connected_peers()}
        greeted &= connected  # a reconnect is greeted again
        for p in list(failures):
            if p not in connected:
                del failures[p]
        for p in sorted(connected - greeted):
            if p in t.greeter.refused:
                greeted.add(p)
                await drop_peer(t, p)
                continue
            try:
                with trio.fail_after(t.limits.request_timeout_s):
                    await greet(t, p)
                greeted.add(p)
                t.greeter.counters["greetings"] += 1
            except Exception as exc:  # noqa: BLE001 - retried next round, 3 times
                failures[p] = failures.get(p, 0) + 1
                log.debug("greeting %s failed: %s", p, exc)
                if failures[p] >= 3:  # not a p2pmoa node of this version: stop asking
                    greeted.add(p)
                    t.greeter.counters["greetings_unanswered"] = \
                        t.greeter.counters.get("greetings_unanswered", 0) + 1
                    log.info("peer %s does not answer the greeting (%s); its embedding space "
                             "is checked per proposal only", p, type(exc).__name__)
        with trio.move_on_after(0.5):
            await t.peers_changed.wait()


def conn_addr(t, peer: str) -> str:
    """The transport address of our connection to ``peer``, a direct one if there is one."""
    from libp2p.peer.id import ID
    addrs: list[str] = []
    try:
        for conn in t.host.get_network().get_connections(ID.from_base58(peer)):
            addrs += [str(a) for a in conn.get_transport_addresses()]
    except Exception:  # noqa: BLE001 - diagnostics only
        pass
    direct = [a for a in addrs if "/p2p-circuit" not in a]
    return (direct or addrs or [""])[0]




# ----------------------------------------------------------------------------------------------
# Daemon glue (kept here so that node/daemon.py changes by one line per feature)


def lan_options(cfg, generator, embedder) -> dict:
    """Keyword arguments of ``open_libp2p_transport`` for a node config."""
    offset = float(getattr(cfg, "clock_offset_s", 0.0))
    card = LocalCard(model=str(getattr(generator, "model_id", cfg.model)),
                     space=str(getattr(embedder, "space_id", "unknown")), role=cfg.role,
                     relay=bool(getattr(cfg, "relay", False)), clock=(lambda: time.time() + offset))
    key = read_network_key(cfg.network_key) if getattr(cfg, "network_key", "") else None
    return {"network_key": key, "mdns": cfg.mdns_on, "card": card,
            "relay": bool(getattr(cfg, "relay", False))}


def network_status(t, cfg) -> dict:
    """The ``network`` section of ``/status``."""
    g = getattr(t, "greeter", None)
    return {"private": bool(getattr(t, "network_key_fingerprint", None)),
            "network_key_fingerprint": getattr(t, "network_key_fingerprint", None),
            "mdns": getattr(t, "mdns", None) is not None,
            "relay": t.relay.status() if getattr(t, "relay", None) is not None else None,
            "bootstrap_line": bootstrap_line(
                sorted(t.relay.reserved.values()) if getattr(t, "relay", None) is not None
                and t.relay.behind_nat and t.relay.reserved else t.listen_addrs()),
            "refused_peers": dict(g.refused) if g else {},
            "greeting": dict(g.counters) if g else {}}


# ----------------------------------------------------------------------------------------------
# NAT: circuit relay v2 (py-libp2p's), reservation when a peer sees us behind a NAT


class RelaySupport:
    """Circuit relay v2 on one host.

    Every node can *accept* relayed connections (STOP) and dial through a relay (client); a
    node started with ``--relay`` also *serves* (HOP) for others. A node learns that it is
    behind a NAT when a peer reports, in the greeting, an address for us that is none of our
    interface addresses; it then reserves a slot on every relay it is connected to and
    prints its circuit address (``/ip4/RELAY/tcp/P/p2p/RELAY_ID/p2p-circuit/p2p/OUR_ID``),
    which other devices use as a ``--bootstrap`` address.
    """

    def __init__(self, host, serve: bool) -> None:
        from libp2p.relay.circuit_v2.config import RelayConfig, RelayRole
        from libp2p.relay.circuit_v2.protocol import CircuitV2Protocol
        from libp2p.relay.circuit_v2.resources import RelayLimits
        from libp2p.relay.circuit_v2.transport import CircuitV2Transport
        self.host = host
        self.serve = serve
        limits = RelayLimits(duration=3600, data=1 << 30, max_circuit_conns=32, max_reservations=32)
        roles = RelayRole.STOP | RelayRole.CLIENT | (RelayRole.HOP if serve else RelayRole(0))
        self.protocol = CircuitV2Protocol(host, limits=limits, allow_hop=serve)
        self.transport = CircuitV2Transport(host, self.protocol, RelayConfig(roles=roles, limits=limits))
        from libp2p.relay.circuit_v2.dcutr import DCUtRProtocol
        # DCUtR: upgrades a relayed connection to a direct one where the NATs allow it
        # (py-libp2p drives it by itself for every relayed connection, up to 3 attempts).
        self.dcutr = DCUtRProtocol(host)
        self.observed: dict[str, str] = {}  # peer -> the address it sees us at
        self.behind_nat = False
        self.reserved: dict[str, str] = {}  # relay peer -> our circuit address through it
        self.relays: set[str] = set()  # peers that said they serve as relays

    def note_observed(self, peer: str, addr: str) -> None:
        if not addr.startswith("/ip4/"):
            return
        self.observed[peer] = addr
        ip = addr.split("/")[2]
        if ip not in interface_ips() and not self.behind_nat:
            self.behind_nat = True
            log.warning("this node is behind a NAT: peer %s sees it as %s; it will reserve a "
                        "slot on relay peers (started with --relay) to stay reachable", peer, ip)

    async def reserve(self, t, relay_peer: str, relay_addr: str, nursery) -> None:
        from libp2p.peer.id import ID
        from libp2p.relay.circuit_v2.protocol import PROTOCOL_ID
        rid = ID.from_base58(relay_peer)
        stream = await self.host.new_stream(rid, [PROTOCOL_ID])
        if not await self.transport.reserve(stream, rid, nursery):
            log.warning("relay %s refused our reservation", relay_peer)
            return
        base = relay_addr.split("/p2p/")[0]
        circuit = f"{base}/p2p/{relay_peer}/p2p-circuit/p2p/{t.local_peer}"
        self.reserved[relay_peer] = circuit
        log.info("reserved a relay slot on %s; other devices join with: "
                 "p2pmoa node run --bootstrap %s", relay_peer, circuit)

    async def dial(self, addr: str):
        import multiaddr
        return await self.transport.dial(multiaddr.Multiaddr(addr))

    def status(self) -> dict:
        return {"serving": self.serve, "behind_nat": self.behind_nat,
                "relays_known": sorted(self.relays), "circuit_addrs": sorted(self.reserved.values())}
