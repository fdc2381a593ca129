"""The one effect vocabulary of every sans-I/O machine in the project.

A PBFT replica, an averaging node and the peer protocol all run as
``machine.handle(event) -> list[Effect]``; the transport-level effects they return are these
four types, defined here once and nowhere else (``tests/test_layering.py`` checks that). The
driver that executes them (the daemon on trio and libp2p, the simulator on a virtual clock,
the test harnesses) needs one table, not one per machine.

Domain outputs (PBFT's ``Decided``, the peer protocol's ``Generate``/``Deliver`` …) stay with
the machine that produces them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MEMBERS = "members"
"""The topic of a :class:`Broadcast` to every *other member of the machine's own group* (a
PBFT replica's members, an averaging node's neighbours). The machine that hosts the group
turns it into one direct send per member; gossip topics are any other string."""


@dataclass(frozen=True, slots=True)
class Send:
    """Send ``msg`` to one peer (a group member) over a direct stream."""

    peer: Any
    msg: Any


@dataclass(frozen=True, slots=True)
class Broadcast:
    """Publish ``msg`` on ``topic``: a gossip topic, or :data:`MEMBERS` for the group."""

    topic: str
    msg: Any


@dataclass(frozen=True, slots=True)
class SetTimer:
    """Fire a timer event named ``name`` after ``delay_s`` seconds (replaces one of that name)."""

    name: Any
    delay_s: float


@dataclass(frozen=True, slots=True)
class CancelTimer:
    """Cancel the timer named ``name`` (no-op if it already fired or never existed)."""

    name: Any


__all__ = ["MEMBERS", "Broadcast", "CancelTimer", "Send", "SetTimer"]
