"""One frozen :class:`NodeConfig`, built at the edge from a TOML file and command-line flags.

Precedence: built-in defaults < TOML file (``--config``) < flags given on the command line.
Every other module receives the finished object; nothing reads flags or files later.

Example ``node.toml``::

    listen = ["/ip4/127.0.0.1/tcp/7700"]
    bootstrap = ["/ip4/127.0.0.1/tcp/7701/p2p/12D3KooW..."]
    model = "smollm2-135m"
    role = "a careful fact checker"
    consensus = "pbft"
    data_dir = "~/.local/share/p2pmoa"
    api = "127.0.0.1:8700"
"""
from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping

from p2pmoa.memory import MemoryConfig
from p2pmoa.settings import ProtocolSettings

DEFAULT_API = "127.0.0.1:8700"
DEFAULT_LISTEN = "/ip4/127.0.0.1/tcp/7700"
CONSENSUS_METHODS = ("pbft", "averaging", "vote", "aggregate", "score")
FAULTS = ("silent", "garbage", "equivocate")
STAND_IN_MODEL = "stand-in"
"""``--model stand-in``: a deterministic text generator that says it is a stand-in (tests)."""


class ConfigError(ValueError):
    """The TOML file or a flag has a bad value; the message names the key."""


def effective_embedder(cfg: "NodeConfig") -> str:
    """The embedder a node actually uses (``cfg.embedder``, or the default that fits its model)."""
    if cfg.embedder:
        return cfg.embedder
    from p2pmoa.embed import DEFAULT_EMBED_MODEL

    return "hashing" if cfg.model.startswith("stand-in") else DEFAULT_EMBED_MODEL


@dataclass(frozen=True)
class NodeConfig:
    """Everything a node needs to run. Units last in names.

    Args:
        listen: libp2p multiaddrs to listen on (TCP; default loopback port 7700).
        bootstrap: multiaddrs ``/ip4/../tcp/../p2p/<id>`` dialled at start and redialled with
            backoff while unreachable.
        model: ``smollm2-135m`` | ``gemma3-270m`` | path to a GGUF | ``stand-in``.
        embedder: the mesh-wide embedding model (name or GGUF path), or ``hashing`` (stand-in
            bag-of-words, 64-d); every node of a mesh must use the same one. Empty (default):
            ``hashing`` when ``model`` is a stand-in, else the real default embedder
            (centred ``gemma3-270m``, see docs/embeddings.md).
        role: the role prompt this node answers in (MoA role-playing proposer).
        consensus: how queries asked at THIS node are decided.
        data_dir: identity key, prompt buffer and trust state live here.
        api: ``HOST:PORT`` of the local HTTP API (loopback by default).
        fault: fault-injection mode, off by default (tests and demos only).
        deadline_s: how long the originator waits for proposals before deciding, seconds.
        round_timeout_s: how long the aggregation round (PBFT, averaging, vote) may take
            before the originator decides on its own ranking and says so in the trace.
        proposers_max: cap on the proposals one query collects (its own included; default 8).
            A query asks for ``min(cap, 1 + live peers)``; its round starts as soon as every
            invited live peer has answered or refused (or this many proposals arrived), else
            at ``deadline_s`` with what arrived (p2pmoa/round_start.py).
        proposers_oversample: in a mesh larger than ``1 + proposers_max * oversample`` nodes,
            about ``proposers_max * oversample`` peers are asked to answer each query
            (``select_ppm``, p2pmoa/settings.py; default 2.0, must be >= 1).
        buffer_max: prompt-buffer capacity (queries); when full new queries get busy errors.
        max_tokens: default generation length, tokens.
        connections_target: keep dialling discovered peers until this many connections.
        frame_bytes_max: largest frame accepted on a stream or topic, bytes.
        body_bytes_max: largest HTTP request body accepted by the API, bytes.
        threads: llama.cpp threads (default 1: the machine is shared by several nodes).
        stand_in_delay_s: with ``--model stand-in`` only: seconds each generation takes
            (simulated service time, for load tests and benchmarks; default 0).
        network_key: path of a private-mesh key (``p2pmoa keygen --network-key FILE``); only
            hosts holding the same key can connect at all (libp2p pnet). Empty: open mesh.
        mdns: find peers on the LAN by mDNS. None (default): on for a private mesh (with
            ``network_key``), off for an open one (see README "Run on your LAN").
        relay: act as a circuit-relay v2 relay for peers behind NAT (a publicly reachable node).
        clock_offset_s: FAULT INJECTION for tests: seconds added to this node's protocol clock.
        roster: path of a signed roster (p2pmoa/roster.py); empty: open mesh.
        memory: ``on`` (default) or ``off``: collaborative memory (docs/memory.md); private
            memory is kept in ``data_dir/memory.sqlite3`` and never leaves the node.
        rate_candidates: when judging a round, rate every candidate answer with this node's
            own model and break ties between equally supported answers by it (default on;
            off: embedding centrality breaks them; a stand-in model cannot rate).
        memory_k_priv, memory_k_shared, memory_tau_share, memory_capacity (C),
        memory_private_max, memory_alpha, memory_beta, memory_near_dup_cos,
        memory_retrieve_min_cos: the parameters of :class:`p2pmoa.memory.MemoryConfig`, with
            its measured defaults (documented there and in docs/memory.md).
        admission_window_s: shortest window over which the admitted arrival rate λ is
            measured, seconds (default 60; stretched to one arrival at the bound, see
            p2pmoa/buffer.py).
        alpha_window_s: the service time α is the mean of the generation times measured in
            the last this many seconds (default 600): a slow spell is forgotten after it.
        admission_slack: share of the Distributed-MoA bound ``((k+1)M+1)·λ < 1/α`` a busy
            node admits up to, in (0, 1] (default 1.0). An idle node always admits.
    """

    listen: tuple[str, ...] = (DEFAULT_LISTEN,)
    bootstrap: tuple[str, ...] = ()
    model: str = "smollm2-135m"
    embedder: str = ""
    role: str = ProtocolSettings.role
    consensus: str = ProtocolSettings.method
    data_dir: Path = Path("~/.local/share/p2pmoa").expanduser()
    api: str = DEFAULT_API
    fault: str | None = None
    deadline_s: float = ProtocolSettings.collect_timeout_s
    round_timeout_s: float = ProtocolSettings.round_timeout_s
    proposers_max: int = ProtocolSettings.proposers_max
    proposers_oversample: float = ProtocolSettings.proposers_oversample
    buffer_max: int = 64
    max_tokens: int = ProtocolSettings.max_tokens
    connections_target: int = 8
    frame_bytes_max: int = 256 * 1024
    body_bytes_max: int = 64 * 1024
    threads: int = 1
    stand_in_delay_s: float = 0.0
    network_key: str = ""
    mdns: bool | None = None
    relay: bool = False
    clock_offset_s: float = 0.0
    roster: str = ""
    memory: str = "on"
    rate_candidates: bool = True
    memory_k_priv: int = MemoryConfig.k_priv
    memory_k_shared: int = MemoryConfig.k_shared
    memory_tau_share: float = MemoryConfig.tau_share
    memory_capacity: int = MemoryConfig.capacity
    memory_private_max: int = MemoryConfig.private_max
    memory_alpha: float = MemoryConfig.alpha
    memory_beta: float = MemoryConfig.beta
    memory_near_dup_cos: float = MemoryConfig.near_dup_cos
    memory_retrieve_min_cos: float = MemoryConfig.retrieve_min_cos
    admission_window_s: float = 60.0
    alpha_window_s: float = 600.0
    admission_slack: float = 1.0

    @property
    def mdns_on(self) -> bool:
        return bool(self.network_key) if self.mdns is None else self.mdns

    def __post_init__(self) -> None:
        if self.memory not in ("on", "off"):
            raise ConfigError(f"memory must be on or off, not {self.memory!r}")
        memory_config(self)  # raises ConfigError on a bad memory_* value
        if self.consensus not in CONSENSUS_METHODS:
            raise ConfigError(f"consensus must be one of {CONSENSUS_METHODS}, not {self.consensus!r}")
        if self.fault is not None and self.fault not in FAULTS:
            raise ConfigError(f"fault must be one of {FAULTS}, not {self.fault!r}")
        host, _, port = self.api.rpartition(":")
        if not host or not port.isdigit() or not 0 <= int(port) < 65536:
            raise ConfigError(f"api must be HOST:PORT, not {self.api!r}")
        if self.stand_in_delay_s < 0:
            raise ConfigError("stand_in_delay_s must be >= 0")
        if not self.proposers_oversample >= 1:
            raise ConfigError(f"proposers_oversample must be >= 1, not {self.proposers_oversample}")
        if not 0 < self.admission_slack <= 1:
            raise ConfigError(f"admission_slack must be in (0, 1], not {self.admission_slack}")
        for name in ("deadline_s", "round_timeout_s", "admission_window_s", "alpha_window_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive")
        for name in ("buffer_max", "max_tokens", "connections_target", "frame_bytes_max",
                     "body_bytes_max", "threads", "proposers_max"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be >= 1")
        if not self.listen:
            raise ConfigError("listen must name at least one multiaddr")

    @property
    def api_host(self) -> str:
        return self.api.rpartition(":")[0]

    @property
    def api_port(self) -> int:
        return int(self.api.rpartition(":")[2])

    @property
    def identity_path(self) -> Path:
        return self.data_dir / "identity.key"

    @property
    def buffer_path(self) -> Path:
        return self.data_dir / "buffer.sqlite3"

    @property
    def trust_path(self) -> Path:
        return self.data_dir / "trust.json"

    @property
    def memory_path(self) -> Path:
        return self.data_dir / "memory.sqlite3"


def memory_config(cfg: NodeConfig) -> MemoryConfig:
    """The node's :class:`MemoryConfig` from its ``memory*`` settings."""
    try:
        return MemoryConfig(
            enabled=cfg.memory == "on", k_priv=cfg.memory_k_priv, k_shared=cfg.memory_k_shared,
            tau_share=cfg.memory_tau_share, capacity=cfg.memory_capacity,
            private_max=cfg.memory_private_max, alpha=cfg.memory_alpha, beta=cfg.memory_beta,
            near_dup_cos=cfg.memory_near_dup_cos, retrieve_min_cos=cfg.memory_retrieve_min_cos)
    except AssertionError as exc:
        raise ConfigError(f"bad memory setting: {exc}") from None


def protocol_settings(cfg: NodeConfig, roster: frozenset | None = None, *,
                      can_rate: bool = False) -> ProtocolSettings:
    """The protocol-relevant part of ``cfg`` (``roster``: the verified roster's peer ids;
    ``can_rate``: the node's model can rate answers, so ``rate_candidates`` takes effect);
    :func:`p2pmoa.settings.protocol_config` turns it into the machine's configuration."""
    return ProtocolSettings(
        role=cfg.role, method=cfg.consensus, collect_timeout_s=cfg.deadline_s,
        round_timeout_s=cfg.round_timeout_s, proposers_max=cfg.proposers_max,
        proposers_oversample=cfg.proposers_oversample, max_tokens=cfg.max_tokens,
        fault=cfg.fault, roster=roster, rate_candidates=cfg.rate_candidates and can_rate)


_TUPLES = {"listen", "bootstrap"}


def _coerce(name: str, value: Any) -> Any:
    kinds = {f.name: f.type for f in fields(NodeConfig)}
    if name not in kinds:
        raise ConfigError(f"unknown setting {name!r}")
    try:
        if name in _TUPLES:
            if isinstance(value, str):
                value = [value]
            return tuple(str(v) for v in value)
        if name == "data_dir":
            return Path(str(value)).expanduser()
        if name in ("mdns", "relay"):
            if value is None and name == "mdns":
                return None
            if not isinstance(value, bool):
                raise TypeError("must be true or false")
            return value
        if name in ("deadline_s", "round_timeout_s", "stand_in_delay_s", "clock_offset_s",
                    "admission_window_s", "alpha_window_s", "admission_slack",
                    "proposers_oversample"):
            if isinstance(value, bool):
                raise TypeError("bool")
            return float(value)
        if name in ("buffer_max", "max_tokens", "connections_target", "frame_bytes_max",
                    "body_bytes_max", "threads", "proposers_max"):
            if isinstance(value, bool):
                raise TypeError("bool")
            return int(value)
        if name == "fault":
            return None if value in (None, "", "off", "none") else str(value)
        if name.startswith("memory_"):
            if isinstance(value, bool):
                raise TypeError("bool")
            return int(value) if kinds[name] == "int" else float(value)
        if name == "memory" and isinstance(value, bool):
            return "on" if value else "off"
        return str(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"bad value for {name}: {value!r} ({exc})") from exc


def load_config(path: str | os.PathLike | None = None,
                overrides: Mapping[str, Any] | None = None) -> NodeConfig:
    """Defaults, then the TOML file at ``path``, then ``overrides`` (flags; None = not given)."""
    values: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as fh:
                raw = tomllib.load(fh)
        except OSError as exc:
            raise ConfigError(f"cannot read config {path}: {exc}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config {path} is not valid TOML: {exc}") from exc
        raw = raw.get("node", raw)
        for k, v in raw.items():
            values[k.replace("-", "_")] = _coerce(k.replace("-", "_"), v)
    for k, v in (overrides or {}).items():
        if v is None or (k in _TUPLES and v == []):
            continue
        values[k] = _coerce(k, v)
    return replace(NodeConfig(), **values)
