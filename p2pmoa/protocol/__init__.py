"""The peer protocol: one sans-I/O state machine per node, ``handle(event) -> list[Effect]``.

Rooms (each file's docstring says what it owns):

* :mod:`.events` — the events a driver passes in (``UserQuery``, ``FrameIn``, ``TimerFired`` …)
* :mod:`.config` — :class:`ProtocolConfig`
* :mod:`.trust` — :class:`TrustPort`, :class:`TrustBookPort`
* :mod:`.retransmit` — acknowledgement and retry state of reliable sends
* :mod:`.rounds` — one class per aggregation method (pbft, vote/score, averaging, aggregate)
* :mod:`.trace` — the pure trace, progress and usage builders
* :mod:`.machine` — :class:`PeerProtocol`: intake, dispatch, query lifecycle, built from
  :mod:`.core` and its parts :mod:`.proposer`, :mod:`.originator`, :mod:`.member`,
  :mod:`.memory_hooks`; :mod:`.common` and :mod:`.state` hold shared records.

Query path (Distributed MoA, Mitra et al. 2024; docs/protocol.md has the diagram): the
originator admits a ``UserQuery`` and gossips a signed ``QueryAnnounce`` carrying the query's
generation parameters; every selected peer generates and sends a signed ``Proposal``; the
originator sends the bundle in a ``RoundStart``; every member embeds and judges the candidates
itself and runs the method's round; the originator emits ``Deliver`` with the typed result.
"""
from p2pmoa.effects import Accepted, Failed, Refused
from p2pmoa.messages import QUERY_TOPIC

from .common import ProtocolStatistics, centrality, ranking, selected
from .config import FAULTS, ProtocolConfig
from .events import (EmbedDone, EmbedFailed, Event, FrameIn, GenerateDone, GenerateFailed,
                     PeerDown, PeerUp, RateDone, RateFailed, Started, TimerFired, UserQuery)
from .machine import PeerProtocol
from .trust import TrustBookPort, TrustPort



__all__ = [
    "Accepted", "EmbedDone", "EmbedFailed", "Event", "FAULTS", "Failed", "FrameIn",
    "GenerateDone", "GenerateFailed", "PeerDown", "PeerProtocol", "PeerUp", "ProtocolConfig",
    "ProtocolStatistics", "QUERY_TOPIC", "RateDone", "RateFailed", "Refused", "Started", "TimerFired", "TrustBookPort",
    "TrustPort", "UserQuery", "centrality", "ranking", "selected",
]
