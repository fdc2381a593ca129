"""Acknowledgement and retry state of reliable sends (:class:`Retransmitter`).

A reliable message (proposal, round start, score vote, decision) is sent sealed with a fresh
nonce; the receiver answers with an :class:`~p2pmoa.messages.Ack` naming that nonce. Until
then the sender re-seals and re-sends it after ``retransmit_s``, doubling each time, at most
``retransmits_max`` times. This class owns only the bookkeeping (which nonces belong to which
message, how many tries); the machine seals, sends and sets the timers it asks for.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from p2pmoa.effects import PeerId, QueryId


@dataclass(frozen=True)
class RtxKey:
    """One reliable message: to ``peer``, of message kind ``kind``, about ``query_id``."""

    peer: PeerId
    kind: str
    query_id: QueryId


@dataclass
class _Entry:
    msg: Any
    tries: int = 0
    nonces: list = field(default_factory=list)


class Retransmitter:
    def __init__(self, retransmit_s: float, retransmits_max: int):
        self.retransmit_s = retransmit_s
        self.retransmits_max = retransmits_max
        self._entries: dict[RtxKey, _Entry] = {}
        self._by_nonce: dict[bytes, RtxKey] = {}

    def track(self, key: RtxKey, msg: Any, nonce: bytes) -> float:
        """``msg`` was just sent with ``nonce`` (replacing any earlier message of ``key``);
        returns the delay of its first retransmission."""
        self.stop(key)
        self._entries[key] = _Entry(msg, 0, [nonce])
        self._by_nonce[nonce] = key
        return self.retransmit_s

    def key_of(self, nonce: bytes) -> RtxKey | None:
        """The reliable message an Ack/Nack with ``ref=nonce`` refers to (None: not ours)."""
        return self._by_nonce.get(nonce)

    def active(self, key: RtxKey) -> bool:
        return key in self._entries

    def stop(self, key: RtxKey) -> bool:
        """Forget ``key`` (acknowledged or given up); True if it was pending."""
        e = self._entries.pop(key, None)
        if e is None:
            return False
        for n in e.nonces:
            self._by_nonce.pop(n, None)
        return True

    def due(self, key: RtxKey) -> tuple[Any | None, bool]:
        """The retry timer of ``key`` fired: ``(message to send again, False)``; ``(None,
        True)`` when it has been retried ``retransmits_max`` times (it is then forgotten);
        ``(None, False)`` when it is no longer pending."""
        e = self._entries.get(key)
        if e is None:
            return None, False
        if e.tries >= self.retransmits_max:
            self.stop(key)
            return None, True
        return e.msg, False

    def resent(self, key: RtxKey, nonce: bytes) -> float:
        """``key``'s message was sent again with ``nonce``; returns the next delay."""
        e = self._entries[key]
        e.nonces.append(nonce)
        e.tries += 1
        self._by_nonce[nonce] = key
        return self.retransmit_s * (2 ** e.tries)

    def pending_for(self, query_id: QueryId) -> list[RtxKey]:
        return [k for k in self._entries if k.query_id == query_id]


__all__ = ["Retransmitter", "RtxKey"]
