"""The events a :class:`~p2pmoa.protocol.machine.PeerProtocol` accepts: the ONE definition of each.

Every driver (the daemon, the in-memory test mesh, the simulator) builds these and passes them
to ``PeerProtocol.handle(event)`` one at a time. Time is an input: every event carries ``now``
(seconds, the driver's clock). Nothing here does I/O.
"""
from __future__ import annotations

from dataclasses import KW_ONLY, dataclass
from typing import Any, Union

from p2pmoa.effects import PeerId, QueryId


@dataclass(frozen=True)
class UserQuery:
    """A local user asks ``prompt`` (the API or CLI chose ``query_id``, unique per node).

    ``memory=False``: the client forbids memory for this query (``"p2pmoa": {"memory": "off"}``):
    no answer from memory, no retrieved notes, nothing stored or shared.

    Generation parameters and the deadline travel to EVERY proposer in the signed
    :class:`~p2pmoa.messages.QueryAnnounce` (so a client's ``max_tokens=16`` makes every peer
    stop at 16 tokens). ``None`` means the node's configured default; values are clamped to the
    node's limits (``max_tokens`` to its ``gen_params.max_tokens``, ``temperature`` to
    [0, 2], ``deadline_s`` to at most its ``collect_timeout_s``).

    ``proposers_max``: the most proposals this query collects, the originator's own included
    (clamped to [1, the node's ``proposers_max``]; None: the node's cap). Unlike the node's
    cap it also limits whom the originator *invites*: the announce names that many peers
    minus one (``QueryAnnounce.invited``) and only they generate, so a capped query makes
    fewer model calls (a cascade's cheap tier, p2pmoa/cascade.py).
    """

    query_id: QueryId
    prompt: str
    method: str | None = None
    _: KW_ONLY
    now: float
    memory: bool = True
    max_tokens: int | None = None
    temperature: float | None = None
    seed: int | None = None
    deadline_s: float | None = None
    proposers_max: int | None = None


@dataclass(frozen=True)
class FrameIn:
    """Bytes from ``peer`` (the transport-authenticated sender: stream remote peer, or the
    gossipsub message source). ``topic`` is the gossip topic, or None for a direct stream."""

    peer: PeerId
    topic: str | None
    data: bytes
    _: KW_ONLY
    now: float


@dataclass(frozen=True)
class TimerFired:
    """The timer ``name`` of a ``SetTimer`` effect expired (and was not cancelled)."""

    name: str
    _: KW_ONLY
    now: float


@dataclass(frozen=True)
class GenerateDone:
    """Result of ``Generate(job_id)``: a ``p2pmoa.llm.Generation`` (text, prompt_tokens,
    completion_tokens, llm_s, model_id)."""

    job_id: str
    generation: Any
    _: KW_ONLY
    now: float


@dataclass(frozen=True)
class GenerateFailed:
    job_id: str
    error: str
    _: KW_ONLY
    now: float


@dataclass(frozen=True, eq=False)
class EmbedDone:
    """Result of ``Embed(job_id)``: (n, dim) float32 array, rows L2-normalised."""

    job_id: str
    vectors: Any
    _: KW_ONLY
    now: float


@dataclass(frozen=True)
class EmbedFailed:
    job_id: str
    error: str
    _: KW_ONLY
    now: float


@dataclass(frozen=True)
class RateDone:
    """Result of ``Rate(job_id)``: one score per answer (mean log-probability per token; None
    for an answer the model could not rate, e.g. an empty one)."""

    job_id: str
    scores: tuple
    _: KW_ONLY
    now: float


@dataclass(frozen=True)
class RateFailed:
    job_id: str
    error: str
    _: KW_ONLY
    now: float


@dataclass(frozen=True)
class PeerUp:
    peer: PeerId
    _: KW_ONLY
    now: float


@dataclass(frozen=True)
class PeerDown:
    peer: PeerId
    _: KW_ONLY
    now: float


@dataclass(frozen=True)
class Started:
    """The driver (re)started the machine: unfinished buffered queries are resumed."""

    _: KW_ONLY
    now: float


Event = Union[UserQuery, FrameIn, TimerFired, GenerateDone, GenerateFailed, EmbedDone,
              EmbedFailed, RateDone, RateFailed, PeerUp, PeerDown, Started]

__all__ = ["EmbedDone", "EmbedFailed", "Event", "FrameIn", "GenerateDone", "GenerateFailed",
           "PeerDown", "PeerUp", "RateDone", "RateFailed", "Started", "TimerFired", "UserQuery"]
