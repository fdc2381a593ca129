"""Start-up checks of ``p2pmoa node run`` and ``keygen``: one-line errors, not tracebacks.

Each check raises :class:`StartupError` with one line that names the problem and a fix; the
CLI prints it and exits with code 2 (a usage/configuration error). They run before the
models load, so a mistake costs a second, not a minute of loading followed by a traceback
(issue 9 counted 23-133 line tracebacks for these cases). Why each one is here:

* the model and embedder must be a known name or a readable GGUF file;
* the data dir must be a writable directory (identity key, prompt buffer, trust live there);
* every ``--listen`` address must be a TCP multiaddr on an IP of this machine, with its port
  free: py-libp2p binds with SO_REUSEPORT, so two daemons silently shared one port, and a
  non-local IP logged a failure and kept running with no listener;
* the API port must be free;
* every ``--bootstrap`` address must name ``/tcp/PORT`` and ``/p2p/PEER_ID``: a malformed
  one was retried for ever.
"""
from __future__ import annotations

import errno
import os
import socket
import tempfile
from pathlib import Path

from node.config import STAND_IN_MODEL, NodeConfig, effective_embedder


class StartupError(Exception):
    """The node cannot start; the message is one line naming the problem and a fix."""


def check_model(name: str, what: str = "model", flag: str = "--model") -> None:
    if name == STAND_IN_MODEL or name.startswith(STAND_IN_MODEL + ":") or name == "hashing":
        return
    from p2pmoa.models import REGISTRY, ModelError, resolve
    try:
        resolve(name, assemble=False)
    except ModelError as exc:
        known = ", ".join(sorted(REGISTRY))
        raise StartupError(f"{what} {name!r} cannot be used: {exc}. Fix: {flag} one of "
                           f"{known}, or the path of a .gguf file") from None


def check_data_dir(path: Path, flag: str = "--data-dir") -> None:
    """The directory exists or can be made, and a file can be written in it."""
    if path.exists() and not path.is_dir():
        raise StartupError(f"data dir {path} is not a directory. Fix: {flag} a directory path")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise StartupError(f"data dir {path} is not writable ({exc.strerror or exc}). "
                           f"Fix: {flag} a directory you can write to") from None


def _tcp_endpoint(addr: str, flag: str) -> tuple[str, int, str | None]:
    """(ip, port, peer id or None) of a ``/ip4|ip6/../tcp/PORT[/p2p/ID]`` multiaddr."""
    from multiaddr import Multiaddr
    try:
        ma = Multiaddr(addr)
        protos = [p.name for p in ma.protocols()]
    except Exception as exc:  # noqa: BLE001 - the multiaddr library raises several kinds
        raise StartupError(f"{flag} {addr!r} is not a multiaddr ({exc}). Fix: use the form "
                           "/ip4/127.0.0.1/tcp/7700") from None
    ip_proto = next((p for p in ("ip4", "ip6") if p in protos), None)
    if ip_proto is None or "tcp" not in protos:
        raise StartupError(f"{flag} {addr!r} needs an /ip4 or /ip6 address and a /tcp port. "
                           "Fix: use the form /ip4/127.0.0.1/tcp/7700")
    ip = ma.value_for_protocol(ip_proto)
    port = int(ma.value_for_protocol("tcp"))
    peer = ma.value_for_protocol("p2p") if "p2p" in protos else None
    return ip, port, peer


def _check_bind(ip: str, port: int, what: str, fix: str) -> None:
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        # SO_REUSEADDR: a port with only TIME_WAIT connections left (a node just restarted)
        # is free; a socket LISTENing on it still makes this bind fail (no SO_REUSEPORT here)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((ip, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise StartupError(f"{what}: port {port} on {ip} is already in use (another "
                                   f"node?). Fix: {fix}") from None
            if exc.errno == errno.EADDRNOTAVAIL:
                raise StartupError(f"{what}: {ip} is not an address of this machine. Fix: "
                                   "listen on 127.0.0.1, 0.0.0.0 or one of this machine's "
                                   "addresses") from None
            raise StartupError(f"{what}: cannot bind {ip}:{port} ({exc.strerror or exc}). "
                               f"Fix: {fix}") from None


def check_listen(addrs, flag: str = "--listen") -> None:
    for addr in addrs:
        ip, port, _ = _tcp_endpoint(addr, flag)
        _check_bind(ip, port, f"{flag} {addr}", f"choose a free port, or /tcp/0 for any")


def check_bootstrap(addrs, flag: str = "--bootstrap") -> None:
    for addr in addrs:
        _, _, peer = _tcp_endpoint(addr, flag)
        if not peer:
            raise StartupError(f"{flag} {addr!r} has no /p2p/PEER_ID. Fix: append the peer id the "
                               "other node printed at start: /ip4/HOST/tcp/PORT/p2p/12D3KooW...")
        try:
            from libp2p.peer.id import ID
            ID.from_base58(peer)
        except Exception:  # noqa: BLE001
            raise StartupError(f"{flag} {addr!r}: {peer!r} is not a peer id. Fix: copy the "
                               "12D3KooW... id the other node printed at start") from None


def check_api(cfg: NodeConfig) -> None:
    host = cfg.api_host
    try:
        ip = socket.getaddrinfo(host, cfg.api_port, type=socket.SOCK_STREAM)[0][4][0]
    except OSError:
        raise StartupError(f"--api {cfg.api}: unknown host {host!r}. Fix: --api 127.0.0.1:PORT") \
            from None
    _check_bind(ip, cfg.api_port, f"--api {cfg.api}", "--api 127.0.0.1:PORT with a free port")


def check_node(cfg: NodeConfig) -> None:
    """Every start-up check of ``node run``, cheapest first. Raises :class:`StartupError`."""
    check_listen(cfg.listen)
    check_bootstrap(cfg.bootstrap)
    check_api(cfg)
    check_data_dir(cfg.data_dir)
    check_model(cfg.model)
    check_model(effective_embedder(cfg), "embedder", "--embedder")


__all__ = ["StartupError", "check_api", "check_bootstrap", "check_data_dir", "check_listen",
           "check_model", "check_node"]
