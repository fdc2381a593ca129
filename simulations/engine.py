"""The simulator's engine: its network, link and service models on the one virtual-time driver.

The clock, the event order, the single seeded ``random.Random`` and the execution of the
transport effects (``Send``, ``Broadcast``, ``SetTimer``, ``CancelTimer``) are
:class:`consensus.driver.Driver`, the driver the tests and the PBFT harnesses use too. This module
adds what a simulated network has that a test fake has not:

* the **topology and link model** (:class:`simulations.network.NetworkConditions`): a ``Send``
  (and each member of a ``Broadcast(MEMBERS)``) is one hop; a ``Broadcast`` on a gossip topic
  floods the graph: every node forwards a message id it sees for the first time to all its
  neighbours except the one it came from and the origin, and drops copies it has already seen
  (gossipsub's seen-cache). The sender does not receive its own broadcast. Every hop goes
  through the link model (latency, loss, duplication, reordering, bandwidth), so loss is
  masked by path redundancy. Partitions drop hops between groups while active.
* **crashes**: a crashed node drops everything addressed to it, loses its timers and its queued
  LLM jobs, and is told when it recovers.
* the **LLM servers**: ``Generate``/``Embed`` go to the node's FIFO prompt buffer
  (:class:`consensus.driver.FifoServers`), served one job at a time with service time drawn from
  the node's :class:`ServiceModel` (DMoA's ``alpha_i``, mean seconds per job); the answer comes
  from the run's *agent* (a stand-in; see :mod:`simulations.agents`). ``Deliver`` effects are
  collected in :attr:`Engine.deliveries`.

Each node is an *adapter* (:class:`NodeAdapter`, see :mod:`simulations.machines`) holding the
production machine (``adapter.machine``: a ``p2pmoa.protocol.PeerProtocol``, a
``consensus.pbft.Replica`` ...) and turning what happens to the node into that machine's OWN
event types (``FrameIn``/``TimerFired``/``GenerateDone``... for the peer protocol,
``Receive``/``TimerExpired``/``Request`` for a replica). The engine has no event types of its own.
All times are virtual seconds; nothing reads the wall clock.
"""
from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Protocol, Sequence

import networkx as nx

from consensus.driver import EVENTS_MAX_DEFAULT, Driver, EventLimitExceeded, FifoServers, Node
from p2pmoa.effects import Deliver, Embed, Generate, PeerId
from simulations.errors import SimulationError
from simulations.network import NetworkConditions, neighbours_table

log = logging.getLogger(__name__)


class NodeAdapter:
    """What the engine needs of a node: its machine and how to speak to it.

    ``machine`` is the state machine (``handle(event) -> list[effect]``). Each hook returns
    the machine's own event(s) for something that happened to the node, or ``None``/``[]``
    for "nothing to hand over". ``members``: the peers a ``Broadcast(MEMBERS)`` goes to.
    The defaults ignore everything; :mod:`simulations.machines` has the real adapters.
    """

    machine: Any = None
    members: Sequence[str] = ()

    def on_message(self, src: PeerId, msg: Any, topic: str | None, now: float) -> Any:
        """A message from ``src`` (for gossip, the publisher, as libp2p pubsub reports it)."""
        return None

    def on_timer(self, name: Any, now: float) -> Any:
        return None

    def on_start(self, now: float) -> Iterable:
        """The node joined the simulated network."""
        return ()

    def on_recover(self, now: float) -> Iterable:
        """The node is back after a crash (its timers and queued LLM jobs were lost)."""
        return ()

    def on_input(self, payload: Any, now: float) -> Iterable:
        """An input from outside the network (a user's query), injected by the experiment."""
        return ()

    def on_generate_done(self, job_id: str, generation: Any, service_s: float, now: float) -> Any:
        """The LLM server finished ``job_id`` after ``service_s`` seconds in service."""
        return None

    def on_embed_done(self, job_id: str, vectors: Any, now: float) -> Any:
        return None

    def on_output(self, effect: Any, now: float) -> Iterable | None:
        """A domain effect the engine does not execute itself (may return more effects)."""
        raise SimulationError(f"a node returned an unknown effect {effect!r}")


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


def default_size(msg: Any) -> int:
    """Bytes a message occupies on the wire when the experiment gives no codec: ``len(repr)``.

    A documented proxy; experiments that report bytes pass the real msgpack codec instead.
    """
    return len(repr(msg))


class Engine:
    """Run node adapters on the virtual-time driver over a graph. See the module docstring.

    Args:
        graph: the topology; nodes ``0 .. n-1``.
        machines: one :class:`NodeAdapter` per node (index = node).
        seed: seeds the single ``random.Random`` of the run (the driver's).
        conditions: link model, partitions and crashes. Default: 20-40 ms links, no faults.
        agent: answers ``Generate``/``Embed`` effects. Required if a machine emits them.
        service: per-node LLM service times. Default: instantaneous.
        peer_ids: the ``PeerId`` of each node. Default ``"n000000"``-style names.
        size_fn: bytes of a message on the wire (for bandwidth and byte counts).
        on_deliver: called with ``(now, node, Deliver)`` for every ``Deliver`` effect.
        events_max: abort with :class:`SimulationError` after this many events.
    """

    def __init__(self, graph: nx.Graph, machines: Sequence[NodeAdapter], *, seed: int,
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
        self.driver = Driver(seed, network=self, events_max=events_max)
        self.driver.on_effect = self._effect
        self.driver.send_unknown = self._unknown_peer  # type: ignore[method-assign]
        self.rng = self.driver.rng
        self.cond = conditions or NetworkConditions()
        self.link = self.cond.link
        self._lossy = self.link.loss_p > 0 or self.link.dup_p > 0 or self.link.reorder_p > 0
        self._bw = self.link.bandwidth_bytes_per_s
        self._partitioned = bool(self.cond.partitions)
        self.agent = agent
        self.service = service or ServiceModel()
        self.peer_ids: list[PeerId] = [PeerId(p) for p in (peer_ids or [f"n{i:06d}" for i in range(n)])]
        self.index: dict[str, int] = {p: i for i, p in enumerate(self.peer_ids)}
        self.nodes: list[Node] = [
            self.driver.add(self.peer_ids[i], a.machine, a, members=getattr(a, "members", ()))
            for i, a in enumerate(self.machines)]
        self.servers = FifoServers(self.driver, self._duration, self._job_done,
                                   buffer_max=self.service.buffer_max)
        self.size_fn = size_fn
        self.on_deliver = on_deliver
        self._link_free: dict[tuple[int, int], float] = {}
        self._seen: dict[int, set[int]] = {}
        self._origin: dict[int, int] = {}
        self._bcast_id = 0
        self._arrive_at = self._arrive  # bound once: one hop schedules it
        self.deliveries: list[tuple[float, int, Deliver]] = []
        self._c = dict(hops_sent=0, hops_delivered=0, hops_lost=0, hops_blocked=0,
                       hops_duplicated=0, bytes_sent=0, gossip_hops=0, gossip_bytes=0, broadcasts=0,
                       gossip_duplicates_dropped=0, direct_sends=0, generate_jobs=0, embed_jobs=0,
                       deliveries=0)
        for c in self.cond.crashes:
            self.driver.at(c.at_s, self._crash, c.node)
            if c.recover_s is not None:
                self.driver.at(c.recover_s, self._recover, c.node)

    @property
    def now(self) -> float:
        return self.driver.now

    @property
    def alive(self) -> list[bool]:
        return [node.up for node in self.nodes]

    # ---- inputs -------------------------------------------------------------------------------

    def start(self, at_s: float = 0.0) -> None:
        """Tell every node it joined (``adapter.on_start``) at ``at_s``, in node order."""
        for v in range(self.n):
            self.driver.at(at_s, self._hook, v, "on_start")

    def inject(self, at_s: float, node: int, payload: Any) -> None:
        """Hand ``payload`` to ``node``'s ``adapter.on_input`` at ``at_s`` (a user's query)."""
        if not (0 <= node < self.n):
            raise SimulationError(f"node {node} is not in the graph (n={self.n})")
        self.driver.at(at_s, self._hook, node, "on_input", payload)

    def run(self, until_s: float | None = None) -> EngineStatistics:
        """Process events in time order until the queue is empty or ``until_s`` is reached."""
        d = self.driver
        try:
            d.run(until_s)
        except EventLimitExceeded as exc:
            raise SimulationError(str(exc)) from None
        if until_s is not None and d.pending() and (d.next_time() or 0.0) > until_s:
            d.now = until_s
        return self.statistics()

    def _hook(self, driver: Driver, v: int, hook: str, *args: Any) -> None:
        node = self.nodes[v]
        if not node.up:
            return
        for ev in getattr(node.adapter, hook)(*args, driver.now) or ():
            driver.dispatch(node, ev)

    def _crash(self, driver: Driver, v: int) -> None:
        node = self.nodes[v]
        if node.up:
            log.info("node %d crashed at t=%.3fs", v, driver.now)
            driver.crash(node)
            self.servers.crash(node)

    def _recover(self, driver: Driver, v: int) -> None:
        node = self.nodes[v]
        if not node.up:
            log.info("node %d recovered at t=%.3fs", v, driver.now)
            driver.recover(node)
            for ev in node.adapter.on_recover(driver.now) or ():
                driver.dispatch(node, ev)

    # ---- domain effects -----------------------------------------------------------------------

    def _effect(self, node: Node, eff: Any) -> None:
        cls = type(eff)
        if cls is Generate:
            self._c["generate_jobs"] += 1
            self.servers.submit(node, eff)
        elif cls is Embed:
            self._c["embed_jobs"] += 1
            self.servers.submit(node, eff)
        elif cls is Deliver:
            self._c["deliveries"] += 1
            now = self.driver.now
            self.deliveries.append((now, node.index, eff))
            if self.on_deliver is not None:
                self.on_deliver(now, node.index, eff)
        else:
            more = node.adapter.on_output(eff, self.driver.now)
            if more:
                self.driver.execute(node, more)

    def _unknown_peer(self, node: Node, eff: Any) -> None:
        raise SimulationError(f"node {node.index} sent to unknown peer {eff.peer!r}")

    # ---- the network model (consensus.driver.Network) -----------------------------------------

    def send(self, driver: Driver, src: Node, dst: Node, msg: Any, topic: str | None) -> None:
        """One direct hop (libp2p dials peers directly)."""
        c = self._c
        c["direct_sends"] += 1
        size = self.size_fn(msg)
        c["hops_sent"] += 1
        c["bytes_sent"] += size
        self._hop(src.index, dst.index, msg, None, 0, size)

    def publish(self, driver: Driver, src: Node, topic: str, msg: Any) -> None:
        """A gossip publication: flood the graph from ``src``."""
        self._c["broadcasts"] += 1
        self._bcast_id += 1
        bid = self._bcast_id
        self._seen[bid] = {src.index}
        self._origin[bid] = src.index
        self._flood(src.index, -1, msg, topic, bid)

    def _flood(self, node: int, came_from: int, msg: Any, topic: str, bid: int) -> None:
        # Forward to every neighbour except the one the message came from and its origin (what
        # gossipsub knows locally); receivers drop copies they have seen. Flood cost per
        # broadcast is therefore about sum(deg - 1) hops, the O(N*k) of the cost experiment.
        origin = self._origin[bid]
        size = -1
        k = 0
        hop = self._hop
        for u in self.nbrs[node]:
            if u != came_from and u != origin:
                if k == 0:
                    size = self.size_fn(msg)
                k += 1
                hop(node, u, msg, topic, bid, size)
        if k:
            c = self._c
            c["hops_sent"] += k
            c["bytes_sent"] += k * size
            c["gossip_hops"] += k
            c["gossip_bytes"] += k * size

    def _hop(self, src: int, dst: int, msg: Any, topic: str | None, bid: int, size: int) -> None:
        """One hop through the partition and link models (already counted as sent)."""
        now = self.driver.now
        if self._partitioned and self.cond.blocked(src, dst, now):
            self._c["hops_blocked"] += 1
            return
        rng = self.rng
        link = self.link
        t = now
        if self._bw:
            key = (src, dst)
            start = max(now, self._link_free.get(key, 0.0))
            t = start + size / self._bw
            self._link_free[key] = t
        at = self.driver.schedule
        if self._lossy:
            if link.loss_p and rng.random() < link.loss_p:
                self._c["hops_lost"] += 1
                return
            extra = link.reorder_delay_s if (link.reorder_p and rng.random() < link.reorder_p) else 0.0
            arrive = t + link.sample_latency(rng) + extra
            at(arrive, self._arrive_at, (dst, src, msg, topic, bid))
            if link.dup_p and rng.random() < link.dup_p:
                self._c["hops_duplicated"] += 1
                at(arrive + link.sample_latency(rng), self._arrive_at, (dst, src, msg, topic, bid))
        else:
            at(t + link.sample_latency(rng), self._arrive_at, (dst, src, msg, topic, bid))

    def _arrive(self, driver: Driver, a: tuple) -> None:
        dst, src, msg, topic, bid = a
        node = self.nodes[dst]
        if not node.up:
            return
        c = self._c
        if bid:
            seen = self._seen[bid]
            if dst in seen:
                c["gossip_duplicates_dropped"] += 1
                return
            seen.add(dst)
            # forward first (gossipsub validates, then forwards, then handles locally)
            self._flood(dst, src, msg, topic, bid)
        c["hops_delivered"] += 1
        # a gossip message names its publisher (libp2p pubsub's signed ``from``), not the relay
        # that forwarded it, as the daemon's transport does (Driver.deliver, inlined: hot path)
        who = self._origin[bid] if bid else src
        ev = node.adapter.on_message(self.peer_ids[who], msg, topic, driver.now)
        if ev is not None:
            driver.handled += 1
            effects = node.machine.handle(ev)
            if effects:
                driver.execute(node, effects)

    # ---- the LLM servers (prompt buffers) -----------------------------------------------------

    def _duration(self, node: Node, job: Any) -> float:
        if type(job) is Generate:
            a = self.service.alpha(node.index)
            if self.service.distribution == "exponential":
                return self.rng.expovariate(1.0 / a) if a > 0 else 0.0
            return a
        return self.service.embed_s

    def _job_done(self, node: Node, job: Any, dur: float) -> Callable[[], None]:
        if self.agent is None:
            raise SimulationError(f"node {node.index} asked for LLM work but the run has no agent")
        now = self.driver.now
        if type(job) is Generate:
            res = self.agent.generate(node.index, job, self.rng)
            ev = node.adapter.on_generate_done(job.job_id, res, dur, now)
        else:
            res = self.agent.embed(node.index, job, self.rng)
            ev = node.adapter.on_embed_done(job.job_id, res, now)
        return lambda: None if ev is None else self.driver.dispatch(node, ev)

    def backlog(self, node: int) -> int:
        """LLM jobs waiting or in service at ``node``."""
        return self.servers.backlog(self.nodes[node])

    # ---- reporting ----------------------------------------------------------------------------

    def queue_statistics(self) -> list[dict]:
        """Per node: jobs served, time-average buffer length, mean wait (s), utilisation."""
        return self.servers.statistics(self.nodes)

    def statistics(self) -> EngineStatistics:
        d = self.driver
        return EngineStatistics(now_s=d.now, events=d.events, jobs_rejected=self.servers.rejected,
                                timers_fired=d.timers_fired, **self._c)
