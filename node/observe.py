"""The daemon's scrape-time metrics and JSON-safe status snapshots (split out of
node/daemon.py, issue 10)."""
from __future__ import annotations

import dataclasses
import math

from node.metrics import register_admission, register_build_info, register_process_metrics


def register_daemon_metrics(d) -> None:
    """Register the gauges and counters computed from daemon ``d``'s state at scrape time."""
    m = d.metrics
    t = d.transport
    register_build_info(m)
    register_process_metrics(m)
    register_admission(m, d.buffer, d._now)
    m.gauge_fn("peers", "connected libp2p peers", lambda: [({}, len(t.peers()))])
    m.gauge_fn("buffer_unfinished", "queries in the prompt buffer not yet finished",
               lambda: [({}, d.buffer.statistics(d._now()).unfinished)])
    m.counter_fn("transport_rejected_total", "frames refused by the transport before decoding",
                 lambda: [({"reason": k}, getattr(t.statistics(), "rejected_" + k)) for k in
                          ("oversized", "rate_limited", "too_many_streams", "malformed")])

    def proto_rejects():
        st = getattr(d.machine, "statistics", None)
        snap = st() if callable(st) else None
        rej = getattr(snap, "rejects", None) or {}
        return [({"reason": k}, v) for k, v in sorted(dict(rej).items())]
    m.counter_fn("frames_rejected_total", "protocol frames dropped (forged, replayed, "
                 "malformed, oversized, stale, unknown sender)", proto_rejects)

    def trust():
        return [({"peer": p}, v) for p, v in sorted(d.trust_snapshot().items())]
    m.gauge_fn("trust", "trust weight of each known peer", trust)
    m.gauge_fn("inbox_events", "events waiting for the protocol machine, by lane",
               lambda: [({"lane": k}, v) for k, v in d.inbox.lanes().items()])
    m.gauge_fn("outbound_senders", "peers with a live outbound queue and sender task",
               lambda: [({}, d.outbox.senders() if d.outbox is not None else 0)])


def asdict_json(obj) -> dict | None:
    """A JSON-safe dict of a statistics snapshot (non-finite floats become strings)."""
    if obj is None:
        return None
    d = dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else dict(obj)

    def clean(v):
        if isinstance(v, float) and not math.isfinite(v):
            return str(v)
        if isinstance(v, dict):
            return {str(k): clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        if isinstance(v, bytes):
            return v.hex()
        return v
    return clean(d)
