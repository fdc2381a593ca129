"""Small shared pieces of the protocol package: typed tags (jobs, timers, phases), the per-event
:class:`Step`, the narrow :class:`RoundContext` a round receives, statistics, pure helpers.

Nothing here imports another file of the package (it is the bottom of its import graph).
"""
from __future__ import annotations

import enum
import hashlib
import random
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from p2pmoa.effects import PeerId, QueryId
from p2pmoa.moa import centrality


class Phase(enum.Enum):
    """Where an originator's query is: collecting proposals, in its round, finished."""

    COLLECT = "collect"
    ROUND = "round"
    DONE = "done"


class JobKind(enum.Enum):
    """What a ``Generate``/``Embed`` job was for (its ``job_id`` is ``"<kind>:<key>"``)."""

    GEN = "gen"        # this node's answer to a query (Generate)
    MEMB = "memb"      # a member embeds a round's candidates (Embed)
    SYNTH = "synth"    # the originator synthesises an answer, method aggregate (Generate)
    QEMB = "qemb"      # a query's embedding for memory retrieval (Embed)
    MEMS = "mems"      # an accepted shared memory entry's query (Embed)
    RATE = "rate"      # a member rates a round's candidates with its own model (Rate)


@dataclass(frozen=True)
class Job:
    kind: JobKind
    key: str  # the query id (or, for MEMS, the memory entry id)

    @property
    def id(self) -> str:
        return f"{self.kind.value}:{self.key}"


class TimerKind(enum.Enum):
    COLLECT = "collect"          # originator: collection deadline
    REANNOUNCE = "reannounce"    # originator: say the announce again
    ROUND = "round"              # originator: round deadline (fallback to own ranking)
    JUDGE = "judge"              # originator: judging budget after the round deadline
    RTX = "rtx"                  # retransmission of an unacknowledged frame
    PARKED = "parked"            # a stranger's query parked at restart
    EXPIRE = "expire"            # forget a remote query's state
    PBFT = "pbft"                # a PBFT replica's own timer (arg: its name)
    PBFT_RESEND = "pbft-resend"  # re-send this member's PBFT messages of the current view
    AVG = "avg"                  # an averaging round's step timeout (arg: the step)


@dataclass(frozen=True)
class Timer:
    """Owner of a timer. ``tag`` distinguishes timers of one kind and query (it is part of the
    name the driver sees); ``arg`` is payload that is not part of the name."""

    kind: TimerKind
    query_id: QueryId
    tag: str = ""
    arg: Any = None

    @property
    def name(self) -> str:
        return f"{self.kind.value}:{self.query_id}" + (f":{self.tag}" if self.tag else "")


@dataclass
class Step:
    """One ``handle`` call: its time, the effects it emits, the frame it reads (if any).
    Passed as an argument through the handlers, never kept on the machine."""

    now: float
    out: list = field(default_factory=list)
    frame: bytes = b""
    nonce: bytes = b""
    query_id: QueryId | None = None  # the query the event concerns, once known
    timer_undo: dict = field(default_factory=dict)  # name -> owner before this step
    touched: set = field(default_factory=set)  # queries this step emitted effects for


@dataclass(frozen=True)
class RoundContext:
    """What a round may do: the narrow interface between a round class and the machine.

    ``send`` signs and sends a message (returns its nonce); ``send_reliable`` also retransmits
    it until acknowledged; ``set_timer``/``cancel_timer`` take a :class:`Timer`; ``count`` and
    ``reject`` bump the machine's counters; ``quarantine`` records equivocation evidence and
    quarantines the member; ``trust`` is read-only use of the trust port.
    """

    me: PeerId
    now: float
    rng: random.Random
    fault: str | None
    send: Callable[[PeerId, Any], bytes]
    send_reliable: Callable[[PeerId, Any], None]
    set_timer: Callable[[Timer, float], None]
    cancel_timer: Callable[[Timer], None]
    count: Callable[[str], None]
    reject: Callable[[str], None]
    quarantine: Callable[[str, QueryId, str, bytes, bytes], None]
    is_quarantined: Callable[[str], bool]
    sign: Callable[[bytes], bytes]
    verify: Callable[[str, bytes, bytes], bool]


@dataclass(frozen=True)
class ProtocolStatistics:
    """Frozen snapshot of a node's protocol counters.

    ``rejects`` counts dropped inputs by reason (metric label); ``counters`` counts protocol
    events; ``decisions`` maps query id -> (digest hex, answer) recorded by this node.
    """

    peer_id: PeerId
    rejects: dict
    counters: dict
    active_queries: int
    quarantined: tuple
    verifications: int
    decisions: dict


def digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


def clip_utf8(text: str, max_bytes: int) -> str:
    b = text.encode("utf-8", "surrogatepass")
    if len(b) <= max_bytes:
        return text
    return b[:max_bytes].decode("utf-8", "ignore")


def selected(query_id: str, peer: str, select_ppm: int) -> bool:
    """Deterministic sampling of proposers: does ``peer`` answer ``query_id``?"""
    if select_ppm >= 1_000_000:
        return True
    h = hashlib.sha256(f"{query_id}\x00{peer}".encode()).digest()
    return int.from_bytes(h[:8], "big") % 1_000_000 < select_ppm


def ranking(vectors: np.ndarray) -> list[int]:
    """Candidate indices by decreasing centrality; ties to the lower index."""
    c = centrality(vectors)
    return sorted(range(len(c)), key=lambda i: (-round(float(c[i]), 6), i))


__all__ = ["Job", "JobKind", "Phase", "ProtocolStatistics", "RoundContext", "Step", "Timer",
           "TimerKind", "centrality", "clip_utf8", "digest", "ranking", "selected"]
