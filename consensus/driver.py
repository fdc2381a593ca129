"""The one virtual-time driver: runs sans-I/O machines and executes their effects.

Every harness that runs the project's state machines without a real network -- the
simulator's :class:`simulations.engine.Engine`, the protocol tests' in-memory mesh
(:class:`p2pmoa.testing.InMemoryMesh`) and the PBFT harnesses
(:class:`consensus.testing.Cluster`, :class:`consensus.scenarios.ScenarioCluster`) -- runs on
this one :class:`Driver` (TigerBeetle's VOPR drives its real replica through one simulator, not
four schedulers). It lives in ``consensus`` so that the PBFT harnesses may use it
(``consensus`` imports nothing of ours).

What the driver does, and only this:

* **Clock and order.** One heap of ``(time, seq, fn, arg)``; ``seq`` is a global counter, so
  ties are broken by scheduling order and a run is a pure function of its seed. One
  ``random.Random(seed)`` (:attr:`Driver.rng`) is the only source of randomness; the models
  plugged in draw from it. Nothing reads the wall clock.
* **Machines.** Each node is ``(address, machine, adapter, members)``. The machine is the
  production object (``machine.handle(event) -> list[effect]``); the adapter turns what
  happens to the node into the machine's *own* event types (``on_message(src, msg, topic,
  now)``, ``on_timer(name, now)``), so there is no second set of event types here.
* **Effects.** The one vocabulary of :mod:`consensus.effects`: ``Send(peer, msg)`` is one hop
  through the network model; ``Broadcast(MEMBERS, msg)`` is one ``Send`` per other member of
  the node's group (the ``members`` given to :meth:`Driver.add`); ``Broadcast(topic, msg)``
  for any other topic is a gossip publication, handed to the network model's ``publish``;
  ``SetTimer``/``CancelTimer`` run on the clock model (default: the heap; a timer of the same
  name replaces the pending one). Any other effect is a domain output (PBFT's ``Decided``, the
  protocol's ``Generate``/``Deliver`` ...) and goes to the output hook (default: the node
  adapter's ``on_output``), which may return further effects to execute.
* **Faults the driver owns.** :meth:`Driver.crash` (the node drops what arrives, loses its
  timers, and its epoch changes so that in-flight completions are discarded),
  :meth:`Driver.recover`, :meth:`Driver.replace` (a fresh machine with the same address).

What plugs in (the simulator's models, the tests' fakes):

* a **network** (:class:`Network`): ``send(driver, src, dst, msg, topic)`` decides latency,
  loss, duplication, partitions and calls :meth:`Driver.arrive_at`; ``publish(driver, src,
  topic, msg)`` floods a gossip topic. :class:`FullMesh` is the simplest one.
* a **clock model** (:class:`TimerModel`): where timers wait. The default is the heap; the
  adversarial PBFT scheduler holds timers itself and fires them when it chooses (before GST
  time is not trusted) by calling :meth:`Driver.fire_timer`.
* **service times**: :class:`FifoServers`, per-node FIFO job servers (one job at a time; the
  simulator's LLM stand-in, DMoA's alpha), with queue statistics.
"""
from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Iterable, Protocol, Sequence

from .effects import MEMBERS, Broadcast, CancelTimer, Send, SetTimer

EVENTS_MAX_DEFAULT = 50_000_000
"""Safety limit on processed heap events per run (a looping machine must not hang a test)."""


class DriverError(RuntimeError):
    """The driver was used wrongly (unknown node, unknown effect, event limit)."""


class EventLimitExceeded(DriverError):
    """More than ``events_max`` events: a machine is probably looping."""


class Adapter(Protocol):
    """Turns what happens to a node into its machine's own events.

    ``on_message``/``on_timer`` return the event to hand to ``machine.handle`` (or ``None``
    to drop it, e.g. a message whose claimed sender is not the peer it came from).
    ``on_output`` receives every effect that is not one of the four transport effects and may
    return more effects to execute (or ``None``).
    """

    def on_message(self, src: Any, msg: Any, topic: str | None, now: float) -> Any: ...

    def on_timer(self, name: Any, now: float) -> Any: ...

    def on_output(self, effect: Any, now: float) -> Iterable | None: ...


@dataclass
class FunctionAdapter:
    """An :class:`Adapter` from plain functions (for machines with simple event types)."""

    on_message: Callable[[Any, Any, str | None, float], Any]
    on_timer: Callable[[Any, float], Any]
    on_output: Callable[[Any, float], Iterable | None] = lambda effect, now: None


@dataclass(eq=False)
class Node:
    """One node as the driver sees it. ``index`` is its position in add order (the network
    models key their tables by it); ``epoch`` changes on every crash and replacement."""

    addr: Any
    machine: Any
    adapter: Any
    members: tuple = ()
    index: int = 0
    up: bool = True
    epoch: int = 0
    timers: dict = field(default_factory=dict)


class Network(Protocol):
    """The delivery model. ``send`` is one direct hop (also used for each member of a
    ``Broadcast(MEMBERS)``); ``publish`` a gossip publication on ``topic``."""

    def send(self, driver: "Driver", src: Node, dst: Node, msg: Any, topic: str | None) -> None: ...

    def publish(self, driver: "Driver", src: Node, topic: str, msg: Any) -> None: ...


class TimerModel(Protocol):
    """Where timers wait (default: :class:`HeapTimers`, on the virtual clock)."""

    def set_timer(self, driver: "Driver", node: Node, name: Any, delay_s: float) -> None: ...

    def cancel_timer(self, driver: "Driver", node: Node, name: Any) -> None: ...


class HeapTimers:
    """Timers on the driver's clock: fire at ``now + max(0, delay_s)``; a newer timer of the
    same name replaces the pending one (a token per timer; stale heap entries are skipped)."""

    def __init__(self) -> None:
        self._token = 0

    def set_timer(self, driver: "Driver", node: Node, name: Any, delay_s: float) -> None:
        self._token += 1
        node.timers[name] = self._token
        driver.schedule(driver.now + max(0.0, float(delay_s)), _timer_due, (node, name, self._token))

    def cancel_timer(self, driver: "Driver", node: Node, name: Any) -> None:
        node.timers.pop(name, None)


def _timer_due(driver: "Driver", a: tuple) -> None:
    node, name, token = a
    if not node.up or node.timers.get(name) != token:
        return
    del node.timers[name]
    driver.fire_timer(node, name)


class FullMesh:
    """Every node reaches every other one directly after ``latency_s``; a gossip publication
    is one send to every other node (in add order). Loss draws from the driver's ``rng``."""

    def __init__(self, latency_s: float = 0.0, loss: float = 0.0) -> None:
        self.latency_s = latency_s
        self.loss = loss

    def send(self, driver: "Driver", src: Node, dst: Node, msg: Any, topic: str | None) -> None:
        if self.loss and driver.rng.random() < self.loss:
            return
        driver.arrive_at(driver.now + self.latency_s, dst, src.addr, msg, topic)

    def publish(self, driver: "Driver", src: Node, topic: str, msg: Any) -> None:
        for dst in driver.nodes.values():
            if dst is not src:
                self.send(driver, src, dst, msg, topic)


class Driver:
    """The seeded discrete-event core (see the module docstring).

    Args:
        seed: seeds :attr:`rng`, the run's only random generator.
        network: the delivery model (default :class:`FullMesh` with zero latency).
        timers: the clock model of timers (default :class:`HeapTimers`).
        events_max: raise :class:`EventLimitExceeded` after this many heap events.
        strict_epochs: drop a message that arrives at a node whose epoch changed since it
            was sent (the node crashed or was replaced meanwhile: the connection it came
            over is gone). Default False: a recovered node receives late messages.
    """

    def __init__(self, seed: int | str = 0, *, network: Network | None = None,
                 timers: TimerModel | None = None, events_max: int = EVENTS_MAX_DEFAULT,
                 strict_epochs: bool = False) -> None:
        self.rng = random.Random(seed)
        self.network: Network = network if network is not None else FullMesh()
        self.timer_model: TimerModel = timers if timers is not None else HeapTimers()
        self.events_max = events_max
        self.strict_epochs = strict_epochs
        self.now = 0.0
        self.nodes: dict[Hashable, Node] = {}
        self.events = 0
        """Heap events processed so far."""
        self.handled = 0
        """Events handed to machines so far."""
        self.timers_fired = 0
        self.on_effect: Callable[[Node, Any], None] = self._to_adapter
        """Hook for effects that are not transport effects (an owner such as the simulator's
        engine replaces it to run ``Generate``/``Deliver`` itself and pass the rest on)."""
        self._heap: list = []
        self._seq = 0

    # ---- nodes --------------------------------------------------------------------------------

    def add(self, addr: Hashable, machine: Any, adapter: Any, *,
            members: Sequence = ()) -> Node:
        """Register a node. ``members``: the addresses a ``Broadcast(MEMBERS)`` goes to."""
        if addr in self.nodes:
            raise DriverError(f"node {addr!r} is already in the driver")
        node = Node(addr, machine, adapter, tuple(members), index=len(self.nodes))
        self.nodes[addr] = node
        return node

    def node(self, addr: Hashable) -> Node:
        try:
            return self.nodes[addr]
        except KeyError:
            raise DriverError(f"unknown node {addr!r}") from None

    def crash(self, node: Node) -> None:
        """Stop ``node``: it drops what arrives, loses its timers; in-flight completions of
        the old epoch are discarded."""
        node.up = False
        node.epoch += 1
        node.timers.clear()

    def recover(self, node: Node) -> None:
        """Bring a crashed node back (same machine; its timers stay lost)."""
        node.up = True

    def replace(self, node: Node, machine: Any, adapter: Any) -> None:
        """A fresh machine under the same address (a restart with new state)."""
        node.machine = machine
        node.adapter = adapter
        node.up = True
        node.epoch += 1
        node.timers.clear()

    # ---- scheduling ---------------------------------------------------------------------------

    def at(self, t: float, fn: Callable, *args: Any) -> None:
        """Call ``fn(driver, *args)`` at virtual time ``t`` (ties: in scheduling order)."""
        self._seq += 1
        heapq.heappush(self._heap, (t, self._seq, _call_star, (fn, args)))

    def schedule(self, t: float, fn: Callable[["Driver", Any], None], arg: Any) -> None:
        """Call ``fn(driver, arg)`` at virtual time ``t``: :meth:`at` for hot paths (one
        argument, usually a tuple the callee unpacks; a plain call is much cheaper in CPython
        than a call with ``*args``)."""
        self._seq += 1
        heapq.heappush(self._heap, (t, self._seq, fn, arg))

    def post(self, t: float, node: Node, make: Callable[[], Any]) -> None:
        """At ``t``, hand ``make()`` to ``node``'s machine unless the node crashed or was
        replaced in between (``make`` builds the event then, so it sees the current ``now``;
        ``None`` means nothing to deliver)."""
        self.schedule(t, _post_due, (node, node.epoch, make))

    def arrive_at(self, t: float, dst: Node, src: Any, msg: Any, topic: str | None) -> None:
        """A message from address ``src`` reaches ``dst`` at ``t`` (what networks call)."""
        self.schedule(t, _arrive_due, (dst, dst.epoch, src, msg, topic))

    def pending(self) -> int:
        return len(self._heap)

    def next_time(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def run(self, until_s: float | None = None, *, handled_max: int | None = None,
            stop: Callable[[], bool] | None = None) -> None:
        """Process events in time order until the heap is empty, the next event lies after
        ``until_s``, ``handled_max`` more events were handed to machines, or ``stop()``."""
        heap = self._heap
        pop = heapq.heappop
        if handled_max is None and stop is None:
            # the hot loop of large simulations: as few checks per event as possible
            horizon = float("inf") if until_s is None else until_s
            budget = self.events_max - self.events  # events left before the safety limit
            done = 0
            try:
                while heap and heap[0][0] <= horizon:
                    t, _seq, fn, arg = pop(heap)
                    if t > self.now:
                        self.now = t
                    done += 1
                    if done > budget:
                        self._too_many(t)
                    fn(self, arg)
            finally:
                self.events += done
            return
        limit = None if handled_max is None else self.handled + handled_max
        while heap:
            if until_s is not None and heap[0][0] > until_s:
                break
            if limit is not None and self.handled >= limit:
                break
            if stop is not None and stop():
                break
            t, _seq, fn, arg = pop(heap)
            if t > self.now:
                self.now = t
            self.events += 1
            if self.events > self.events_max:
                self._too_many(t)
            fn(self, arg)

    def _too_many(self, t: float) -> None:
        raise EventLimitExceeded(f"event limit {self.events_max} exceeded at t={t:.3f}s; "
                                 "a machine is probably looping")

    # ---- delivering events --------------------------------------------------------------------

    def dispatch(self, node: Node, event: Any) -> None:
        """Hand ``event`` to ``node``'s machine now and execute what it returns."""
        self.handled += 1
        self.execute(node, node.machine.handle(event))

    def deliver(self, node: Node, src: Any, msg: Any, topic: str | None) -> None:
        """``msg`` from address ``src`` arrives at ``node`` now (through its adapter)."""
        if not node.up:
            return
        ev = node.adapter.on_message(src, msg, topic, self.now)
        if ev is not None:
            self.handled += 1
            self.execute(node, node.machine.handle(ev))

    def fire_timer(self, node: Node, name: Any) -> None:
        """Timer ``name`` of ``node`` fires now (called by the clock model)."""
        self.timers_fired += 1
        ev = node.adapter.on_timer(name, self.now)
        if ev is not None:
            self.handled += 1
            self.execute(node, node.machine.handle(ev))

    # ---- executing effects --------------------------------------------------------------------

    def execute(self, node: Node, effects: Iterable | None) -> None:
        """Run ``node``'s effects: the four transport effects here, the rest via ``on_effect``."""
        if not effects:
            return
        for eff in effects:
            cls = type(eff)
            if cls is Send:
                dst = self.nodes.get(eff.peer)
                if dst is None:
                    self.send_unknown(node, eff)
                    continue
                self.network.send(self, node, dst, eff.msg, None)
            elif cls is Broadcast:
                if eff.topic == MEMBERS:
                    nodes = self.nodes
                    for m in node.members:
                        dst = nodes.get(m)
                        if dst is not None:
                            self.network.send(self, node, dst, eff.msg, None)
                else:
                    self.network.publish(self, node, eff.topic, eff.msg)
            elif cls is SetTimer:
                self.timer_model.set_timer(self, node, eff.name, eff.delay_s)
            elif cls is CancelTimer:
                self.timer_model.cancel_timer(self, node, eff.name)
            else:
                self.on_effect(node, eff)

    def send_unknown(self, node: Node, eff: Send) -> None:
        """A ``Send`` to an address that is not a node: dropped (a real network would fail
        to dial it). Owners that treat it as a bug replace this method."""

    def _to_adapter(self, node: Node, eff: Any) -> None:
        more = node.adapter.on_output(eff, self.now)
        if more:
            self.execute(node, more)


def _call_star(driver: Driver, packed: tuple) -> None:
    fn, args = packed
    fn(driver, *args)


def _post_due(driver: Driver, a: tuple) -> None:
    node, epoch, make = a
    if not node.up or node.epoch != epoch:
        return
    ev = make()
    if ev is not None:
        driver.dispatch(node, ev)


def _arrive_due(driver: Driver, a: tuple) -> None:
    dst, epoch, src, msg, topic = a
    if driver.strict_epochs and dst.epoch != epoch:
        return
    driver.deliver(dst, src, msg, topic)


# ---- service times ---------------------------------------------------------------------------


@dataclass
class _Server:
    queue: list = field(default_factory=list)  # FIFO of (job, enqueue_time)
    head: int = 0
    busy: bool = False
    busy_s: float = 0.0
    served: int = 0
    wait_s_total: float = 0.0
    qlen_area: float = 0.0  # integral of queue length over time
    qlen_last_t: float = 0.0


class FifoServers:
    """Per-node FIFO job servers: one job at a time, service time from ``duration(node,
    job)`` drawn when the job starts. When a job ends, ``done(node, job, service_s)`` runs
    first (it computes the job's result) and may return a callable that runs after the next
    job has started (it hands the result to the machine).

    A crash of the node (its epoch changes) discards the queue and any job in service
    (call :meth:`crash`). Jobs beyond ``buffer_max`` waiting are rejected and counted.
    """

    def __init__(self, driver: Driver, duration: Callable[[Node, Any], float],
                 done: Callable[[Node, Any, float], Callable[[], None] | None], *, buffer_max: int = 10_000) -> None:
        self.driver = driver
        self.duration = duration
        self.done = done
        self.buffer_max = buffer_max
        self.rejected = 0
        self._servers: dict[int, _Server] = {}

    def _srv(self, node: Node) -> _Server:
        srv = self._servers.get(node.index)
        if srv is None:
            srv = self._servers[node.index] = _Server()
        return srv

    def submit(self, node: Node, job: Any) -> bool:
        """Queue ``job`` at ``node``; False if its buffer is full (the job is dropped)."""
        srv = self._srv(node)
        self._account(srv)
        if len(srv.queue) - srv.head >= self.buffer_max:
            self.rejected += 1
            return False
        srv.queue.append((job, self.driver.now))
        if not srv.busy:
            self._serve_next(node, srv)
        return True

    def crash(self, node: Node) -> None:
        srv = self._srv(node)
        srv.queue.clear()
        srv.head = 0
        srv.busy = False

    def backlog(self, node: Node) -> int:
        """Jobs waiting or in service at ``node``."""
        srv = self._srv(node)
        return len(srv.queue) - srv.head + (1 if srv.busy else 0)

    def _account(self, srv: _Server) -> None:
        now = self.driver.now
        waiting = len(srv.queue) - srv.head + (1 if srv.busy else 0)
        srv.qlen_area += waiting * (now - srv.qlen_last_t)
        srv.qlen_last_t = now

    def _serve_next(self, node: Node, srv: _Server) -> None:
        if srv.head >= len(srv.queue):
            srv.queue.clear()
            srv.head = 0
            srv.busy = False
            return
        job, t_in = srv.queue[srv.head]
        srv.head += 1
        srv.busy = True
        now = self.driver.now
        srv.wait_s_total += now - t_in
        dur = self.duration(node, job)
        srv.busy_s += dur
        self.driver.schedule(now + dur, self._finish, (node, node.epoch, job, dur))

    def _finish(self, driver: Driver, a: tuple) -> None:
        node, epoch, job, dur = a
        if not node.up or epoch != node.epoch:
            return
        srv = self._srv(node)
        self._account(srv)
        srv.served += 1
        then = self.done(node, job, dur)
        srv.busy = False
        self._serve_next(node, srv)
        if then is not None:
            then()

    def statistics(self, nodes: Sequence[Node]) -> list[dict]:
        """Per node: jobs served, time-average buffer length, mean wait (s), utilisation."""
        out = []
        horizon = max(self.driver.now, 1e-12)
        for node in nodes:
            srv = self._srv(node)
            self._account(srv)
            out.append({"node": node.index, "served": srv.served,
                        "queue_mean": srv.qlen_area / horizon,
                        "wait_mean_s": srv.wait_s_total / srv.served if srv.served else 0.0,
                        "utilisation": srv.busy_s / horizon})
        return out


__all__ = ["Adapter", "Driver", "DriverError", "EVENTS_MAX_DEFAULT", "EventLimitExceeded",
           "FifoServers", "FullMesh", "FunctionAdapter", "HeapTimers", "Network", "Node",
           "TimerModel"]
