"""The membership of one PBFT group: who votes, with what weight, who leads which view, and
the protocol parameters every honest member must share.

A :class:`Group` is immutable and identical at every honest member (weights come from
decided state, see :mod:`consensus.trust`); it is what the pure certificate checks of
:mod:`consensus.pbft.certs` are evaluated against. Quorum tests go through
:class:`consensus.quorum.Quorum`, the one quorum test of the code base: a *quorum* weighs
strictly more than two thirds of the total, a *weak certificate* strictly more than one
third (it holds at least one honest member while the faulty weight is below a third).
(Compare etcd-io/raft's ``tracker.Config`` plus ``quorum.JointConfig``.)
"""
from __future__ import annotations

import hashlib
from typing import Mapping, Optional

from ..quorum import ONE_THIRD, TWO_THIRDS, Quorum
from .messages import (
    INT_MAX, ITEMS_MAX, MEMBER_ID_CHARS_MAX, VALUE_BYTES_MAX, MemberId, PbftConfigError,
)


def primary_order(weights: Mapping[MemberId, int],
                  order_seed: Optional[bytes] = None) -> tuple[MemberId, ...]:
    """The round-robin order of primaries: members of positive weight, sorted by id, or by
    ``sha256(order_seed || len(member) || member)`` when ``order_seed`` is given (then no key
    can be ground to sort first without knowing the seed)."""
    live = [m for m, w in weights.items() if w > 0]
    if order_seed is None:
        return tuple(sorted(live))

    def key(m: str) -> tuple[bytes, str]:
        b = m.encode()
        return hashlib.sha256(order_seed + len(b).to_bytes(4, "big") + b).digest(), m

    return tuple(sorted(live, key=key))


def _is_int(x) -> bool:
    return type(x) is int


class Group:
    """Weights, quorums, primary order and the shared log parameters of one PBFT group.

    Raises:
        PbftConfigError: on impossible or wrongly typed weights or parameters.
    """

    __slots__ = ("weights", "members", "total_weight", "quorum", "_weak", "order",
                 "checkpoint_interval", "watermark_window", "value_bytes_max")

    def __init__(self, weights: Mapping[MemberId, int], *, checkpoint_interval: int = 16,
                 watermark_window: int = 64, value_bytes_max: int = VALUE_BYTES_MAX,
                 order_seed: Optional[bytes] = None) -> None:
        if not isinstance(weights, Mapping):
            raise PbftConfigError(f"weights must be a mapping member -> int, got "
                                  f"{type(weights).__name__}")
        if not weights:
            raise PbftConfigError("a PBFT group needs at least one member")
        if len(weights) > ITEMS_MAX:
            raise PbftConfigError(f"at most {ITEMS_MAX} members, got {len(weights)}")
        for m, w in weights.items():
            if not isinstance(m, str) or not (1 <= len(m) <= MEMBER_ID_CHARS_MAX):
                raise PbftConfigError(f"member ids must be strings of 1..{MEMBER_ID_CHARS_MAX} "
                                      f"chars, got {m!r:.60}")
            if type(w) is not int or not (0 <= w <= INT_MAX):
                raise PbftConfigError(f"weight of {m!r} must be an int >= 0, got {w!r:.40}")
        if sum(weights.values()) <= 0:
            raise PbftConfigError("total weight must be positive")
        if (not _is_int(checkpoint_interval) or not _is_int(watermark_window)
                or checkpoint_interval < 1 or watermark_window < checkpoint_interval):
            raise PbftConfigError("need ints 1 <= checkpoint_interval <= watermark_window")
        if not _is_int(value_bytes_max) or value_bytes_max < 1:
            raise PbftConfigError(f"value_bytes_max must be an int >= 1, got "
                                  f"{value_bytes_max!r:.40}")
        if order_seed is not None and (not isinstance(order_seed, bytes)
                                       or len(order_seed) > 1024):
            raise PbftConfigError("order_seed must be None or at most 1024 bytes")
        self.weights: dict[MemberId, int] = dict(weights)
        self.members: tuple[MemberId, ...] = tuple(sorted(self.weights))
        self.total_weight = sum(self.weights.values())
        self.quorum = Quorum(self.weights, TWO_THIRDS)
        self._weak: Optional[Quorum] = None  # built on first use (rarely needed)
        self.order: tuple[MemberId, ...] = primary_order(self.weights, order_seed)
        self.checkpoint_interval = checkpoint_interval
        self.watermark_window = watermark_window
        self.value_bytes_max = value_bytes_max

    @property
    def weak(self) -> Quorum:
        """The weak-certificate test: strictly more than one third of the weight."""
        if self._weak is None:
            self._weak = Quorum(self.weights, ONE_THIRD)
        return self._weak

    def primary(self, view: int) -> MemberId:
        """The primary of ``view``: :attr:`order` round robin (weight-0 members never lead)."""
        return self.order[view % len(self.order)]

    def is_quorum(self, weight: int) -> bool:
        """True when ``weight`` is strictly more than two thirds of the total weight."""
        return self.quorum.reached(weight)

    def is_weak(self, weight: int) -> bool:
        """True when ``weight`` is strictly more than one third (contains an honest member)."""
        return self.weak.reached(weight)

    def weight_of(self, members) -> int:
        """The weight of ``members`` (each a member id, counted as often as listed)."""
        w = self.weights
        return sum(w[m] for m in members)
