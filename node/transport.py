"""The node's transport: gossip topics, one-request-per-stream RPC, and mesh maintenance.

The daemon never talks to libp2p directly; it talks to a :class:`Transport`, which has two
implementations sharing one conformance suite (tests/node/test_transport_conformance.py):

* :class:`Libp2pTransport`: py-libp2p 0.8.1 on TCP with Noise only (plaintext is refused,
  because its handshake does not prove key possession), gossipsub tuned so that it does not
  drop messages silently (heartbeat 1 s, adaptive gossip off, per-topic rate raised), one
  request per stream (a looping stream handler was seen to stall later streams), an explicit
  ``host.close()`` on exit (leaving ``host.run()`` leaves sockets open).
* :class:`MemoryTransport`: the same behaviour in one process over a :class:`MemoryNetwork`,
  for fast tests of everything above the transport.

Limits enforced on the receiving side, before any decoding, in both implementations:
``frame_bytes_max`` (length prefix checked before the body is read), a token bucket per
remote peer (``rate_per_s`` / ``burst``), and at most ``streams_per_peer_max`` concurrent
inbound streams per peer. Every reject is counted in :meth:`Transport.statistics`.

Wire format of a request stream ``/p2pmoa/rpc/1.0.0``: the dialer writes one frame
(4-byte big-endian length + payload) and reads one frame back; the first byte of the
response payload is a status (0 ok, 1 rejected) followed by the handler's reply. Peer
exchange ``/p2pmoa/px/1.0.0``: an empty request, answered with a msgpack list of
``[peer_id, [multiaddr, ...]]`` pairs of the responder's connected peers.

The code lives in three modules (split along its seams, issue 10); every name keeps working
from here: ``node/transport_base.py`` (protocol ids, errors, limits, statistics, the
:class:`Transport` interface and the shared receive-side logic), ``node/transport_memory.py``
(the in-process transport) and ``node/transport_libp2p.py`` (stream framing, the libp2p host
wrapper).
"""
from __future__ import annotations

from node.transport_base import (Backoff, BadAddress, FrameHandler, FrameTooLarge, GossipMessage,
                                 HELLO_PROTOCOL, PIPE_PROTOCOL, PX_PROTOCOL, PeerUnreachable,
                                 RPC_PROTOCOL, RequestHandler, RequestRejected, STATUS_OK,
                                 STATUS_REJECTED, TokenBucket, Transport, TransportError,
                                 TransportLimits, TransportStatistics, _Base, _Counters, _LEN,
                                 _addr_peer, _is_loopback, _with_peer)
from node.transport_memory import (MemoryNetwork, MemoryTransport, open_memory_transport)
from node.transport_libp2p import (Libp2pTransport, _null_context, _read_exact, _reset,
                                   load_or_create_identity, open_libp2p_transport, peer_id_of,
                                   read_frame, write_frame)

__all__ = ['Backoff', 'BadAddress', 'FrameHandler', 'FrameTooLarge', 'GossipMessage',
           'HELLO_PROTOCOL', 'Libp2pTransport', 'MemoryNetwork', 'MemoryTransport',
           'PIPE_PROTOCOL', 'PX_PROTOCOL', 'PeerUnreachable', 'RPC_PROTOCOL', 'RequestHandler',
           'RequestRejected', 'STATUS_OK', 'STATUS_REJECTED', 'TokenBucket', 'Transport',
           'TransportError', 'TransportLimits', 'TransportStatistics', '_Base', '_Counters',
           '_LEN', '_addr_peer', '_is_loopback', '_null_context', '_read_exact', '_reset',
           '_with_peer', 'load_or_create_identity', 'open_libp2p_transport',
           'open_memory_transport', 'peer_id_of', 'read_frame', 'write_frame']
