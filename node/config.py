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
        proposers_max: proposals the originator waits for (itself included); the round
            starts as soon as this many arrived, else at ``deadline_s`` with what arrived.
        buffer_max: prompt-buffer capacity (queries); when full new queries get busy errors.
        max_tokens: default generation length, tokens.
        connections_target: keep dialling discovered peers until this many connections.
        frame_bytes_max: largest frame accepted on a stream or topic, bytes.
        body_bytes_max: largest HTTP request body accepted by the API, bytes.
        threads: llama.cpp threads (default 1: the machine is shared by several nodes).
        stand_in_delay_s: with ``--model stand-in`` only: seconds each generation takes
            (simulated service time, for load tests and benchmarks; default 0).
    """

    listen: tuple[str, ...] = (DEFAULT_LISTEN,)
    bootstrap: tuple[str, ...] = ()
    model: str = "smollm2-135m"
    embedder: str = ""
    role: str = "a helpful, concise assistant"
    consensus: str = "pbft"
    data_dir: Path = Path("~/.local/share/p2pmoa").expanduser()
    api: str = DEFAULT_API
    fault: str | None = None
    deadline_s: float = 60.0
    round_timeout_s: float = 30.0
    proposers_max: int = 8
    buffer_max: int = 64
    max_tokens: int = 96
    connections_target: int = 8
    frame_bytes_max: int = 256 * 1024
    body_bytes_max: int = 64 * 1024
    threads: int = 1
    stand_in_delay_s: float = 0.0

    def __post_init__(self) -> None:
        if self.consensus not in CONSENSUS_METHODS:
            raise ConfigError(f"consensus must be one of {CONSENSUS_METHODS}, not {self.consensus!r}")
        if self.fault is not None and self.fault not in FAULTS:
            raise ConfigError(f"fault must be one of {FAULTS}, not {self.fault!r}")
        host, _, port = self.api.rpartition(":")
        if not host or not port.isdigit() or not 0 <= int(port) < 65536:
            raise ConfigError(f"api must be HOST:PORT, not {self.api!r}")
        if self.stand_in_delay_s < 0:
            raise ConfigError("stand_in_delay_s must be >= 0")
        for name in ("deadline_s", "round_timeout_s"):
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
        if name in ("deadline_s", "round_timeout_s", "stand_in_delay_s"):
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
