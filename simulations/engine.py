"""Discrete-event engine: runs sans-I/O node machines on a virtual clock over a NetworkX graph.

The engine is the simulator's counterpart of the daemon's trio driver. Each node is a *node
machine*, any object with ``handle(event) -> list[Effect]``; the events it receives are the
frozen dataclasses below (``Started``, ``Received``, ``TimerFired``, ``GenerateDone``,
``EmbedDone``, ``Recovered``, ``External``), and the effects it returns are the production
effects of :mod:`p2pmoa.effects` (``Send``, ``Broadcast``, ``SetTimer``, ``CancelTimer``,
``Generate``, ``Embed``, ``Deliver``). Adapters in :mod:`simulations.machines` translate these
events into the event types of the production machines (the peer protocol, a PBFT replica).

Execution model (all times are virtual seconds; nothing reads the wall clock):

* One ``heapq`` of ``(time, seq, kind, ...)`` tuples; ``seq`` is a global counter, so ties are
  broken by scheduling order and the run is a pure function of the seed.
* One ``random.Random(seed)`` draws every latency, loss, duplication and service time.
* ``Send(peer, msg)`` is one hop (libp2p dials peers directly) through the link model.
* ``Broadcast(topic, msg)`` floods the graph: every node forwards a message id it sees for the
  first time to all its neighbours except the one it came from, and drops copies it has
  already seen (the dedup of gossipsub's seen-cache). The sender does not receive its own
  broadcast. Each hop goes through the link model, so loss is masked by path redundancy.
* ``Generate``/``Embed`` go to the node's LLM server: a FIFO prompt buffer served one job at a
  time with service time drawn from the node's :class:`ServiceModel` (DMoA's ``alpha_i``, mean
  seconds per job). The answer itself comes from the run's *agent* (a stand-in; see
  :mod:`simulations.agents`).
* Partitions drop hops between groups while active; a crashed node drops everything addressed to
  it, loses its timers and its queued LLM jobs, and gets ``Recovered`` when it comes back.
"""
from __future__ import annotations

import heapq
import logging
import random
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Protocol, Sequence

import networkx as nx

from p2pmoa.effects import (Broadcast, CancelTimer, Deliver, Embed, Generate, PeerId, Send,
                            SetTimer)
from simulations.errors import SimulationError
from simulations.network import NetworkConditions, neighbours_table

log = logging.getLogger(__name__)

EVENTS_MAX_DEFAULT = 50_000_000
"""Safety limit on processed events per run (a protocol bug must not hang an experiment)."""

# ---- events delivered to node machines ------------------------------------------------------


@dataclass(frozen=True)
class Started:
    """The node has joined the simulated network at time ``now`` (virtual seconds)."""

    now: float


@dataclass(frozen=True)
class Received:
    """A message arrived from ``src``; ``topic`` is the gossip topic, ``None`` for a direct Send.
    For gossip, ``src`` is the publisher (as libp2p pubsub reports it), not the relay."""

    now: float
    src: PeerId
    msg: Any
    topic: str | None


@dataclass(frozen=True)
class TimerFired:
    now: float
    name: str


@dataclass(frozen=True)
class GenerateDone:
    """The LLM server finished ``job_id``; ``generation`` is what the run's agent returned and
    ``service_s`` the virtual seconds the job occupied the server (what a daemon would measure
    as ``llm_s``)."""

    now: float
    job_id: str
    generation: Any
    service_s: float = 0.0


@dataclass(frozen=True)
class EmbedDone:
    now: float
    job_id: str
    vectors: Any


@dataclass(frozen=True)
class Recovered:
    """The node is back after a crash (its timers and queued LLM jobs were lost)."""

    now: float


@dataclass(frozen=True)
class External:
    """An input from outside the network (a user's query), injected by the experiment."""

    now: float
    payload: Any


SimEvent = Started | Received | TimerFired | GenerateDone | EmbedDone | Recovered | External


class NodeMachine(Protocol):
    def handle(self, event: SimEvent) -> list: ...


class Agent(Protocol):
    """Answers the LLM work of a node: a stand-in for the local model and embedder."""

    def generate(self, node: int, job: Generate, rng: random.Random) -> Any: ...

    def embed(self, node: int, job: Embed, rng: random.Random) -> Any: ...


@dataclass(frozen=True)
class ServiceModel:
    """Per-node LLM service times (DMoA's alpha), in seconds per job.

    Args:
        alpha_s: mean service time of each node (index = node), or one value for all.
        distribution: ``exponential`` (M/M/1-like servers, the DMoA analysis) or ``const``.
        embed_s: service time of an ``Embed`` job (constant). Default 0.005.
        buffer_max: longest prompt buffer; jobs beyond it are rejected (counted). Default 10,000.
    """

    alpha_s: float | Sequence[float] = 0.0
    distribution: str = "exponential"
    embed_s: float = 0.0
    buffer_max: int = 10_000

    def alpha(self, node: int) -> float:
        a = self.alpha_s
        return float(a) if isinstance(a, (int, float)) else float(a[node])


@dataclass(frozen=True)
class EngineStatistics:
    """Frozen snapshot of one engine's counters."""

    now_s: float
    events: int
    hops_sent: int
    hops_delivered: int
    hops_lost: int
    hops_blocked: int
    hops_duplicated: int
    bytes_sent: int
    gossip_hops: int
    gossip_bytes: int
    broadcasts: int
    gossip_duplicates_dropped: int
    direct_sends: int
    generate_jobs: int
    embed_jobs: int
    jobs_rejected: int
    deliveries: int
    timers_fired: int


# event kinds (ints: cheap to compare inside the hot loop)
_MSG, _TIMER, _JOB_DONE, _CRASH, _RECOVER, _EXTERNAL, _START = range(7)


def default_size(msg: Any) -> int:
    """Bytes a message occupies on the wire when the experiment gives no codec: ``len(repr)``.

    A documented proxy; experiments that report bytes pass the real msgpack codec instead.
    """
    return len(repr(msg))


@dataclass
class _Server:
    queue: list = field(default_factory=list)  # FIFO of (kind, job, enqueue_time)
    head: int = 0
    busy: bool = False
    busy_s: float = 0.0
    served: int = 0
    wait_s_total: float = 0.0
    qlen_area: float = 0.0  # integral of queue length over time
    qlen_last_t: float = 0.0
    epoch: int = 0  # bumped on crash so that a job finishing after the crash is ignored


class Engine:
    """Run node machines on a virtual clock. See the module docstring for the model.

    Args:
        graph: the topology; nodes ``0 .. n-1``.
        machines: one node machine per node (index = node).
        seed: seeds the single ``random.Random`` of the run.
        conditions: link model, partitions and crashes. Default: 20-40 ms links, no faults.
        agent: answers ``Generate``/``Embed`` effects. Required if a machine emits them.
        service: per-node LLM service times. Default: instantaneous.
        peer_ids: the ``PeerId`` of each node. Default ``"n000000"``-style names.
        size_fn: bytes of a message on the wire (for bandwidth and byte counts).
        on_deliver: called with ``(now, node, Deliver)`` for every ``Deliver`` effect.
        events_max: abort with :class:`SimulationError` after this many events.
    """

    def __init__(self, graph: nx.Graph, machines: Sequence[NodeMachine], *, seed: int,
                 conditions: NetworkConditions | None = None, agent: Agent | None = None,
                 service: ServiceModel | None = None, peer_ids: Sequence[str] | None = None,
                 size_fn: Callable[[Any], int] = default_size,
                 on_deliver: Callable[[float, int, Deliver], None] | None = None,
                 events_max: int = EVENTS_MAX_DEFAULT) -> None:
        n = graph.number_of_nodes()
        if len(machines) != n:
            raise SimulationError(f"{len(machines)} machines for a graph of {n} nodes")
        self.n = n
        self.graph = graph
        self.nbrs = neighbours_table(graph)
        self.machines = list(machines)
        self.rng = random.Random(seed)
        self.cond = conditions or NetworkConditions()
        self.link = self.cond.link
        self._lossy = self.link.loss_p > 0 or self.link.dup_p > 0 or self.link.reorder_p > 0
        self._bw = self.link.bandwidth_bytes_per_s
        self._partitioned = bool(self.cond.partitions)
        self.agent = agent
        self.service = service or ServiceModel()
        self.peer_ids: list[PeerId] = [PeerId(p) for p in (peer_ids or [f"n{i:06d}" for i in range(n)])]
        self.index: dict[str, int] = {p: i for i, p in enumerate(self.peer_ids)}
        self.size_fn = size_fn
        self.on_deliver = on_deliver
        self.events_max = events_max
        self.now = 0.0
        self._heap: list = []
        self._seq = 0
        self.alive = [True] * n
        self._timers: list[dict[str, int]] = [dict() for _ in range(n)]
        self._timer_token = 0
        self._servers = [_Server() for _ in range(n)]
        self._link_free: dict[tuple[int, int], float] = {}
        self._seen: dict[int, set[int]] = {}
        self._origin: dict[int, int] = {}
        self._bcast_id = 0
        self.deliveries: list[tuple[float, int, Deliver]] = []
        self._c = dict(events=0, hops_sent=0, hops_delivered=0, hops_lost=0, hops_blocked=0,
                       hops_duplicated=0, bytes_sent=0, gossip_hops=0, gossip_bytes=0, broadcasts=0, gossip_duplicates_dropped=0,
                       direct_sends=0, generate_jobs=0, embed_jobs=0, jobs_rejected=0,
                       deliveries=0, timers_fired=0)
        for c in self.cond.crashes:
            self._push(c.at_s, _CRASH, c.node, None)
            if c.recover_s is not None:
                self._push(c.recover_s, _RECOVER, c.node, None)

    # ---- scheduling ---------------------------------------------------------------------------

    def _push(self, t: float, kind: int, node: int, payload: Any) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (t, self._seq, kind, node, payload))

    def start(self, at_s: float = 0.0) -> None:
        """Deliver ``Started`` to every node at ``at_s`` (in node order)."""
        for v in range(self.n):
            self._push(at_s, _START, v, None)

    def inject(self, at_s: float, node: int, payload: Any) -> None:
        """Deliver ``External(payload)`` to ``node`` at virtual time ``at_s`` (a user's query)."""
        if not (0 <= node < self.n):
            raise SimulationError(f"node {node} is not in the graph (n={self.n})")
        self._push(at_s, _EXTERNAL, node, payload)

    def run(self, until_s: float | None = None) -> EngineStatistics:
        """Process events in time order until the queue is empty or ``until_s`` is reached."""
        heap = self._heap
        pop = heapq.heappop
        c = self._c
        machines = self.machines
        alive = self.alive
        while heap:
            if until_s is not None and heap[0][0] > until_s:
                self.now = until_s
                break
            t, _seq, kind, node, payload = pop(heap)
            self.now = t
            c["events"] += 1
            if c["events"] > self.events_max:
                raise SimulationError(f"event limit {self.events_max} exceeded at t={t:.3f}s; "
                                      "a machine is probably looping")
            if kind == _MSG:
                src, msg, topic, bid = payload
                if not alive[node]:
                    continue
                if bid:
                    seen = self._seen[bid]
                    if node in seen:
                        c["gossip_duplicates_dropped"] += 1
                        continue
                    seen.add(node)
                    # forward first (gossipsub validates, then forwards, then handles locally)
                    self._flood(node, src, msg, topic, bid)
                c["hops_delivered"] += 1
                # a gossip message names its publisher (libp2p pubsub's signed ``from``), not
                # the relay that forwarded it, as the daemon's transport does
                who = self._origin[bid] if bid else src
                self._apply(node, machines[node].handle(Received(t, self.peer_ids[who], msg, topic)))
            elif kind == _TIMER:
                name, token = payload
                if not alive[node] or self._timers[node].get(name) != token:
                    continue
                del self._timers[node][name]
                c["timers_fired"] += 1
                self._apply(node, machines[node].handle(TimerFired(t, name)))
            elif kind == _JOB_DONE:
                self._job_done(node, payload)
            elif kind == _EXTERNAL:
                if alive[node]:
                    self._apply(node, machines[node].handle(External(t, payload)))
            elif kind == _START:
                if alive[node]:
                    self._apply(node, machines[node].handle(Started(t)))
            elif kind == _CRASH:
                if alive[node]:
                    log.info("node %d crashed at t=%.3fs", node, t)
                    alive[node] = False
                    self._timers[node].clear()
                    srv = self._servers[node]
                    srv.queue.clear()
                    srv.head = 0
                    srv.busy = False
                    srv.epoch += 1
            elif kind == _RECOVER:
                if not alive[node]:
                    log.info("node %d recovered at t=%.3fs", node, t)
                    alive[node] = True
                    self._apply(node, machines[node].handle(Recovered(t)))
        return self.statistics()

    # ---- effects ------------------------------------------------------------------------------

    def _apply(self, node: int, effects: list | None) -> None:
        if not effects:
            return
        for eff in effects:
            match eff:
                case Send(peer=peer, msg=msg):
                    dst = self.index.get(peer)
                    if dst is None:
                        raise SimulationError(f"node {node} sent to unknown peer {peer!r}")
                    self._c["direct_sends"] += 1
                    self._hop(node, dst, msg, None, 0)
                case Broadcast(topic=topic, msg=msg):
                    self._c["broadcasts"] += 1
                    self._bcast_id += 1
                    bid = self._bcast_id
                    self._seen[bid] = {node}
                    self._origin[bid] = node
                    self._flood(node, -1, msg, topic, bid)
                case SetTimer(name=name, delay_s=delay):
                    self._timer_token += 1
                    self._timers[node][name] = self._timer_token
                    self._push(self.now + max(0.0, float(delay)), _TIMER, node, (name, self._timer_token))
                case CancelTimer(name=name):
                    self._timers[node].pop(name, None)
                case Generate():
                    self._c["generate_jobs"] += 1
                    self._enqueue(node, eff)
                case Embed():
                    self._c["embed_jobs"] += 1
                    self._enqueue(node, eff)
                case Deliver():
                    self._c["deliveries"] += 1
                    self.deliveries.append((self.now, node, eff))
                    if self.on_deliver is not None:
                        self.on_deliver(self.now, node, eff)
                case _:
                    raise SimulationError(f"node {node} returned an unknown effect {eff!r}")

    def _flood(self, node: int, came_from: int, msg: Any, topic: str, bid: int) -> None:
        # Forward to every neighbour except the one the message came from and its origin (what
        # gossipsub knows locally); receivers drop copies they have seen. Flood cost per
        # broadcast is therefore about sum(deg - 1) hops, the O(N*k) of the cost experiment.
        origin = self._origin[bid]
        for u in self.nbrs[node]:
            if u != came_from and u != origin:
                self._hop(node, u, msg, topic, bid)

    def _hop(self, src: int, dst: int, msg: Any, topic: str | None, bid: int) -> None:
        c = self._c
        c["hops_sent"] += 1
        size = self.size_fn(msg)
        c["bytes_sent"] += size
        if bid:
            c["gossip_hops"] += 1
            c["gossip_bytes"] += size
        now = self.now
        if self._partitioned and self.cond.blocked(src, dst, now):
            c["hops_blocked"] += 1
            return
        rng = self.rng
        link = self.link
        t = now
        if self._bw:
            key = (src, dst)
            start = max(now, self._link_free.get(key, 0.0))
            t = start + size / self._bw
            self._link_free[key] = t
        if self._lossy:
            if link.loss_p and rng.random() < link.loss_p:
                c["hops_lost"] += 1
                return
            extra = link.reorder_delay_s if (link.reorder_p and rng.random() < link.reorder_p) else 0.0
            arrive = t + link.sample_latency(rng) + extra
            self._push(arrive, _MSG, dst, (src, msg, topic, bid))
            if link.dup_p and rng.random() < link.dup_p:
                c["hops_duplicated"] += 1
                self._push(arrive + link.sample_latency(rng), _MSG, dst, (src, msg, topic, bid))
        else:
            self._push(t + link.sample_latency(rng), _MSG, dst, (src, msg, topic, bid))

    # ---- the LLM server (prompt buffer) -------------------------------------------------------

    def _enqueue(self, node: int, job: Generate | Embed) -> None:
        srv = self._servers[node]
        pending = len(srv.queue) - srv.head
        self._account_queue(srv)
        if pending >= self.service.buffer_max:
            self._c["jobs_rejected"] += 1
            return
        srv.queue.append((job, self.now))
        if not srv.busy:
            self._serve_next(node)

    def _account_queue(self, srv: _Server) -> None:
        waiting = len(srv.queue) - srv.head + (1 if srv.busy else 0)
        srv.qlen_area += waiting * (self.now - srv.qlen_last_t)
        srv.qlen_last_t = self.now

    def _serve_next(self, node: int) -> None:
        srv = self._servers[node]
        if srv.head >= len(srv.queue):
            srv.queue.clear()
            srv.head = 0
            srv.busy = False
            return
        job, t_in = srv.queue[srv.head]
        srv.head += 1
        srv.busy = True
        srv.wait_s_total += self.now - t_in
        if isinstance(job, Generate):
            a = self.service.alpha(node)
            dur = (self.rng.expovariate(1.0 / a) if a > 0 else 0.0) \
                if self.service.distribution == "exponential" else a
        else:
            dur = self.service.embed_s
        srv.busy_s += dur
        self._push(self.now + dur, _JOB_DONE, node, (job, srv.epoch, dur))

    def _job_done(self, node: int, payload: tuple) -> None:
        job, epoch, dur = payload
        srv = self._servers[node]
        if not self.alive[node] or epoch != srv.epoch:
            return
        self._account_queue(srv)
        srv.served += 1
        if self.agent is None:
            raise SimulationError(f"node {node} asked for LLM work but the run has no agent")
        if isinstance(job, Generate):
            res = self.agent.generate(node, job, self.rng)
            event: SimEvent = GenerateDone(self.now, job.job_id, res, dur)
        else:
            res = self.agent.embed(node, job, self.rng)
            event = EmbedDone(self.now, job.job_id, res)
        srv.busy = False
        self._serve_next(node)
        self._apply(node, self.machines[node].handle(event))

    # ---- reporting ----------------------------------------------------------------------------

    def queue_statistics(self) -> list[dict]:
        """Per node: jobs served, time-average buffer length, mean wait (s), utilisation."""
        out = []
        horizon = max(self.now, 1e-12)
        for v, srv in enumerate(self._servers):
            self._account_queue(srv)
            out.append({"node": v, "served": srv.served,
                        "queue_mean": srv.qlen_area / horizon,
                        "wait_mean_s": srv.wait_s_total / srv.served if srv.served else 0.0,
                        "utilisation": srv.busy_s / horizon})
        return out

    def statistics(self) -> EngineStatistics:
        return EngineStatistics(now_s=self.now, **self._c)


def run_machines(graph: nx.Graph, machines: Sequence[NodeMachine], *, seed: int,
                 injections: Mapping[int, Sequence[tuple[float, Any]]] | None = None,
                 until_s: float | None = None, **kwargs: Any) -> Engine:
    """Convenience: build an :class:`Engine`, start every node, inject inputs, run, return it."""
    eng = Engine(graph, machines, seed=seed, **kwargs)
    eng.start()
    for node, items in sorted((injections or {}).items()):
        for at_s, payload in items:
            eng.inject(at_s, node, payload)
    eng.run(until_s)
    return eng
