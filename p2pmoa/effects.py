"""Effects: what a sans-I/O state machine asks its driver to do.

Every protocol machine in p2pmoa (the peer protocol, the MoA pipeline) is driven the same way:
``machine.handle(event) -> list[Effect]``. The daemon (node/) executes effects with libp2p,
trio and llama.cpp; the simulator (simulations/) executes them on a virtual clock and a
NetworkX graph. Nothing here performs I/O.

Names follow docs/architecture.md: ``Send``, ``Broadcast``, ``SetTimer``, ``CancelTimer``,
``Generate``, ``Embed``, ``Deliver``; and, about a user's query, ``Accepted``
(durably buffered), ``Refused`` (busy, with a retry-after hint) and ``Failed``. The results of ``Generate`` and ``Embed`` come back as
``GenerateDone`` / ``EmbedDone`` events (see p2pmoa.protocol), matched by ``job_id``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NewType, Union

from consensus.effects import Broadcast, CancelTimer, Send, SetTimer  # the one vocabulary

PeerId = NewType("PeerId", str)
"""A node's identity: the libp2p peer id string (base58 of the Ed25519 public key)."""

QueryId = NewType("QueryId", str)
"""A query's identity: hex string, unique per originating node."""


@dataclass(frozen=True)
class ChatMessage:
    role: str  # "system" | "user" | "assistant"
    content: str


@dataclass(frozen=True)
class GenParams:
    """Sampling parameters for one LLM call. Units: tokens; temperature is unitless."""

    max_tokens: int = 128
    temperature: float = 0.7
    top_p: float = 0.95
    seed: int = 0


@dataclass(frozen=True)
class Generate:
    """Ask the local LLM to answer ``messages``; result returns as ``GenerateDone(job_id, ...)``."""

    job_id: str
    messages: tuple[ChatMessage, ...]
    params: GenParams = field(default_factory=GenParams)
    model: str | None = None
    """Which local model answers (a registry name or path); None: the node's own model."""


@dataclass(frozen=True)
class Embed:
    """Embed ``texts`` in the mesh's embedding space; result returns as ``EmbedDone(job_id, ...)``."""

    job_id: str
    texts: tuple[str, ...]


@dataclass(frozen=True)
class Usage:
    """Tokens of the answer the user receives: the chosen proposal's generation (or the
    originator's synthesis for ``aggregate``; 0 for an answer from memory)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class QueryResult:
    """What a decided query gives its asker: the answer, its token usage, and the consensus
    trace (a JSON-able dict for people and the web page; programs read the typed fields)."""

    answer: str
    usage: Usage
    trace: dict


@dataclass(frozen=True)
class Deliver:
    """Hand the final answer of ``query_id`` to the local user (the API or CLI that asked).
    :attr:`result` is the typed :class:`QueryResult` (answer, usage, trace)."""

    query_id: QueryId
    answer: str
    trace: dict
    usage: Usage = field(default_factory=Usage)

    @property
    def result(self) -> QueryResult:
        return QueryResult(self.answer, self.usage, self.trace)


@dataclass(frozen=True)
class Accepted:
    """The user's query is durably buffered; the driver may acknowledge it now."""

    query_id: QueryId


@dataclass(frozen=True)
class Refused:
    """The user's query was not accepted: ``reason`` in busy/unstable/deadline/full/duplicate/invalid."""

    query_id: QueryId
    reason: str
    retry_after_s: float = 0.0


@dataclass(frozen=True)
class Rate:
    """Ask the node's OWN model how likely each of ``answers`` is as the answer to ``question``:
    per answer, the mean log-probability per token of ``" " + answer`` (and the end of its line)
    after the question. Result returns as ``RateDone(job_id, scores)``; a driver that cannot
    rate returns ``RateFailed`` and the round judges without ratings."""

    job_id: str
    question: str
    answers: tuple[str, ...]


@dataclass(frozen=True)
class Failed:
    """An accepted query could not be answered (the user must hear about it)."""

    query_id: QueryId
    reason: str
    trace: dict = field(default_factory=dict)


Effect = Union[Send, Broadcast, SetTimer, CancelTimer, Generate, Embed, Rate, Deliver, Accepted, Refused,
               Failed]
