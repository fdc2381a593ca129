"""What a node tells its peers about itself: model metadata, role, embedding space, version.

Each node publishes a small msgpack map on the gossip topic :data:`INFO_TOPIC` at start, when
it sees new peers, and every :data:`INFO_INTERVAL_S` seconds; every node keeps the latest map
per peer in a :class:`NodeInfoBook`. ``GET /peers`` (and so ``p2pmoa peers`` and the web
page) joins it with the transport's peer list.

Why a gossip topic and not the protocol's signed messages: this is descriptive metadata that
consensus never reads (the protocol's proposals carry their own signed ``model_id``), and
gossipsub already authenticates the publisher (``source`` is the signing peer, not a relay).
Inputs are still untrusted: :func:`decode_info` keeps only known keys of the right types,
clips strings and refuses frames over :data:`INFO_BYTES_MAX`, counting what it refuses.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack

INFO_TOPIC = "p2pmoa/nodeinfo/1"
INFO_INTERVAL_S = 10.0
"""Republish period, seconds: peers that joined after the last one learn it within this."""
INFO_BYTES_MAX = 4096
STRING_CHARS_MAX = 200
INFO_SCHEMA = 1

_FIELDS: dict[str, type | tuple] = {
    "schema": int, "version": str, "model_id": str, "model_name": str, "role": str,
    "embedding_space": str, "consensus": str, "sent_at": (int, float), "api_public": bool,
    "architecture": str, "display_name": str, "size_label": str, "quantization": str,
    "chat": bool, "context_length": int, "size_bytes": int, "stand_in": bool,
}


class InfoRejected(ValueError):
    """A peer's info frame was malformed or too large; ``reason`` is the metric label."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def model_metadata(model: str) -> dict:
    """The advertised metadata of ``model`` (a name, a GGUF path or ``stand-in[:x]``).

    A stand-in says it is one; a real model's fields come from its GGUF header
    (:func:`p2pmoa.modelinfo.read_metadata`). Reads files: call it off the event loop.
    """
    if model == "stand-in" or model.startswith("stand-in:"):
        return {"model_name": model, "stand_in": True, "quantization": "none", "chat": True}
    from p2pmoa.modelinfo import read_metadata
    from p2pmoa.models import resolve
    path, spec = resolve(model)
    m = read_metadata(path)
    return {"model_name": spec.name, "architecture": m.architecture,
            "display_name": m.display_name, "size_label": m.size_label,
            "quantization": m.quantization, "chat": m.chat, "context_length": m.context_length,
            "size_bytes": m.size_bytes}


def encode_info(info: dict) -> bytes:
    frame = msgpack.packb({k: v for k, v in info.items() if k in _FIELDS}, use_bin_type=True)
    assert len(frame) <= INFO_BYTES_MAX, f"own node info is {len(frame)} bytes"
    return frame


def decode_info(frame: bytes) -> dict:
    """Validate a peer's info frame; unknown keys are dropped, bad types refuse the frame."""
    if len(frame) > INFO_BYTES_MAX:
        raise InfoRejected("oversized")
    try:
        raw = msgpack.unpackb(frame, raw=False, strict_map_key=True, max_str_len=INFO_BYTES_MAX,
                              max_bin_len=0, max_array_len=0, max_map_len=64)
    except Exception as exc:  # noqa: BLE001 - msgpack raises several types on garbage
        raise InfoRejected("malformed") from exc
    if not isinstance(raw, dict):
        raise InfoRejected("malformed")
    out: dict[str, Any] = {}
    for k, want in _FIELDS.items():
        if k not in raw:
            continue
        v = raw[k]
        if want is int and isinstance(v, bool) or not isinstance(v, want):
            raise InfoRejected("malformed")
        out[k] = v[:STRING_CHARS_MAX] if isinstance(v, str) else v
    return out


@dataclass
class _Entry:
    info: dict
    received_at: float


class NodeInfoBook:
    """Latest info per peer, bounded (``peers_max``): the oldest entry goes first."""

    def __init__(self, peers_max: int = 1024) -> None:
        self.peers_max = peers_max
        self._book: dict[str, _Entry] = {}
        self.rejected: dict[str, int] = {}

    def receive(self, peer: str, frame: bytes, now: float) -> bool:
        """Record ``peer``'s frame received at ``now`` (Unix s); False if it was refused."""
        try:
            info = decode_info(frame)
        except InfoRejected as exc:
            self.rejected[exc.reason] = self.rejected.get(exc.reason, 0) + 1
            return False
        self._book.pop(peer, None)
        self._book[peer] = _Entry(info, now)
        while len(self._book) > self.peers_max:
            self._book.pop(next(iter(self._book)))
        return True

    def view(self, peer: str, now: float) -> dict:
        """What ``GET /peers`` shows of ``peer``: its info plus ``info_age_s`` and
        ``delay_s`` (one-way delay of the last info message; assumes synchronised clocks)."""
        e = self._book.get(peer)
        if e is None:
            return {}
        out = {k: v for k, v in e.info.items() if k not in ("schema", "sent_at")}
        out["info_age_s"] = round(now - e.received_at, 3)
        sent = e.info.get("sent_at")
        if isinstance(sent, (int, float)):
            out["delay_s"] = round(max(0.0, e.received_at - float(sent)), 4)
        return out


class InfoService:
    """Publishes this node's info and records its peers' on :data:`INFO_TOPIC`.

    Args:
        transport: the node's transport (``publish``/``subscribe``).
        local_info: returns this node's info map (``sent_at`` is added at each publish).
        clock: Unix seconds (``time.time`` in the daemon).
    """

    def __init__(self, transport, local_info, clock) -> None:
        import trio
        self.transport, self.local_info, self.clock = transport, local_info, clock
        self.book = NodeInfoBook()
        self._wanted = trio.Event()
        self.published = 0

    def poke(self) -> None:
        """Publish soon (new peers joined and have not heard us yet)."""
        self._wanted.set()

    async def run(self, task_status=None) -> None:
        import trio
        sub = await self.transport.subscribe(INFO_TOPIC)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._pump, sub)
            if task_status is not None:
                task_status.started()
            while True:
                try:
                    frame = encode_info({**self.local_info(), "schema": INFO_SCHEMA,
                                         "sent_at": self.clock()})
                    await self.transport.publish(INFO_TOPIC, frame)
                    self.published += 1
                except Exception as exc:  # noqa: BLE001 - best effort; retried next period
                    import logging
                    logging.getLogger(__name__).debug("node info publish failed: %s", exc)
                poked = self._wanted.is_set()
                self._wanted = trio.Event()
                # after a poke, once more 2 s later: the new peers are in our gossip mesh by then
                with trio.move_on_after(2.0 if poked else INFO_INTERVAL_S):
                    await self._wanted.wait()

    async def _pump(self, sub) -> None:
        async for m in sub:
            if m.source != getattr(self.transport, "local_peer", None):
                self.book.receive(str(m.source), m.data, self.clock())


def describe_model(peer: dict) -> str:
    """One short text of a ``GET /peers`` entry's advertised model, for ``p2pmoa peers``:
    ``model=NAME QUANT chat|base ctx=N SIZE space=ID`` (``model=?`` before its info arrived)."""
    if "model_id" not in peer and "model_name" not in peer:
        return "model=?"
    parts = [f"model={peer.get('model_name') or peer.get('model_id')}"]
    if peer.get("stand_in"):
        parts.append("(stand-in)")
    else:
        parts.append(str(peer.get("quantization", "?")))
        parts.append("chat" if peer.get("chat") else "base")
        if peer.get("context_length"):
            parts.append(f"ctx={peer['context_length']}")
        if peer.get("size_bytes"):
            parts.append(f"{peer['size_bytes'] / 1e6:.0f}MB")
    if peer.get("embedding_space"):
        parts.append(f"space={peer['embedding_space']}")
    return " ".join(parts)
