"""Bounded, honest execution of the protocol machine's I/O in the daemon (issue 10).

Three pieces, each with its bound stated and its overflow counted:

* :class:`Inbox` -- what the machine handles next, in two lanes. The *internal* lane holds the
  daemon's own completions (``TimerFired``, ``GenerateDone``/``Failed``, ``EmbedDone``/``Failed``,
  ``Started``, ``PeerUp``/``PeerDown``): these are answers to effects the machine asked for, so
  they are NEVER dropped (dropping one could stall a query for good); their number is bounded
  by the machine's own outstanding timers, model jobs and peers, not by the network. The
  *peer* lane holds input from outside (frames, API queries) and is bounded: pipe frames and
  API calls wait for space (backpressure), gossip that finds it full is shed and counted.
  Internal events go first.
* :class:`Outbox` -- one bounded FIFO and ONE sender task per peer, so frames to one peer
  leave in the order the machine emitted them and a peer whose stream blocks delays only its
  own queue. A frame that finds its peer's queue full is refused (tail drop: what was queued
  keeps its order), counted in ``sends_dropped_total{reason="queue_full"}``; the protocol
  retransmits what must arrive. An idle sender task ends after ``idle_s``.
* :class:`Journal` / :class:`JournaledStore` -- persistence as a deferred effect: the prompt
  buffer's and memory's writes made while the machine handles an event are recorded, then
  the daemon runs them BEFORE it executes that event's effects, so nothing is acknowledged
  before it is on disk; writes that fsync run in a worker thread, so the trio thread never
  waits for a disk.
"""
from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Any, Awaitable, Callable

import trio

log = logging.getLogger(__name__)


class Inbox:
    """Two-lane queue of ``(event, waiter)`` for the machine loop (see module doc).

    Args:
        peer_max: capacity of the peer lane (events from outside).
    """

    def __init__(self, peer_max: int) -> None:
        assert peer_max >= 1
        self.peer_max = peer_max
        self._internal: deque = deque()
        self._peer: deque = deque()
        self._ready = trio.lowlevel.ParkingLot()
        self._space = trio.lowlevel.ParkingLot()
        self.shed = 0  # peer events refused because the peer lane was full

    def __len__(self) -> int:
        return len(self._internal) + len(self._peer)

    def lanes(self) -> dict[str, int]:
        """Events waiting in each lane."""
        return {"internal": len(self._internal), "peer": len(self._peer)}

    def put_internal(self, event: Any, waiter: Any = None) -> None:
        """Queue a completion of the daemon's own work; never refused, never waits."""
        self._internal.append((event, waiter))
        self._ready.unpark()

    def try_put_peer(self, event: Any, waiter: Any = None) -> bool:
        """Queue outside input if the peer lane has room; False (and counted) if it is full."""
        if len(self._peer) >= self.peer_max:
            self.shed += 1
            return False
        self._peer.append((event, waiter))
        self._ready.unpark()
        return True

    async def put_peer(self, event: Any, waiter: Any = None) -> None:
        """Queue outside input, waiting for room in the peer lane (backpressure)."""
        await trio.lowlevel.checkpoint_if_cancelled()
        while len(self._peer) >= self.peer_max:
            await self._space.park()
        self._peer.append((event, waiter))
        self._ready.unpark()

    async def get(self) -> tuple[Any, Any]:
        """The next ``(event, waiter)``: internal completions first."""
        while not self._internal and not self._peer:
            await self._ready.park()
        if self._internal:
            return self._internal.popleft()
        item = self._peer.popleft()
        self._space.unpark()
        return item


Sender = Callable[[Any, bytes], Awaitable[None]]


class Outbox:
    """Per-peer ordered, bounded outbound queues, one sender task each (see module doc).

    Args:
        nursery: where sender tasks run.
        send: ``await send(peer, frame)`` writes one frame (exceptions are the caller's
            business: ``send`` must catch and count its own failures).
        queue_max: frames queued per peer before new ones are refused.
        idle_s: a sender task with nothing to send for this long ends (and is re-created
            on the next frame).
        on_drop: called with the peer when a frame is refused (for counters).
    """

    def __init__(self, nursery: trio.Nursery, send: Sender, queue_max: int = 256,
                 idle_s: float = 30.0, on_drop: Callable[[Any], None] | None = None) -> None:
        assert queue_max >= 1
        self._nursery, self._send = nursery, send
        self.queue_max, self.idle_s = queue_max, idle_s
        self._on_drop = on_drop
        self._queues: dict[Any, trio.MemorySendChannel] = {}
        self.dropped = 0

    def queued(self, peer: Any) -> int:
        ch = self._queues.get(peer)
        return 0 if ch is None else ch.statistics().current_buffer_used

    def senders(self) -> int:
        return len(self._queues)

    def push(self, peer: Any, frame: bytes) -> bool:
        """Queue ``frame`` for ``peer`` behind what is queued; False if the queue was full."""
        ch = self._queues.get(peer)
        if ch is None:
            ch, recv = trio.open_memory_channel[bytes](self.queue_max)
            self._queues[peer] = ch
            self._nursery.start_soon(self._run, peer, ch, recv)
        try:
            ch.send_nowait(frame)
        except trio.WouldBlock:
            self.dropped += 1
            if self._on_drop is not None:
                self._on_drop(peer)
            log.info("outbound queue to %s full (%d frames): frame dropped", peer, self.queue_max)
            return False
        return True

    async def _run(self, peer: Any, ch: trio.MemorySendChannel, recv: trio.MemoryReceiveChannel) -> None:
        try:
            while True:
                frame = None
                with trio.move_on_after(self.idle_s):
                    frame = await recv.receive()
                if frame is None:
                    try:
                        frame = recv.receive_nowait()
                    except trio.WouldBlock:
                        return  # idle: nothing is queued, retire (finally removes the queue)
                await self._send(peer, frame)
        finally:
            if self._queues.get(peer) is ch:
                del self._queues[peer]
            ch.close()
            recv.close()


class Journal:
    """Writes recorded while the machine handles an event, run later by :meth:`flush`. Order
    is kept; a flush runs under a lock so two never overlap. A flush that holds a durable
    write (an fsync, ~3.5 ms measured, more on a busy disk) runs in a worker thread; one of
    light writes only (``synchronous=NORMAL``: no fsync, ~0.1 ms) runs inline, sparing the
    thread hop."""

    def __init__(self) -> None:
        self._pending: list[tuple[Callable, tuple, dict]] = []
        self._durable = False
        self._lock = threading.Lock()
        self.flushes = 0
        self.threaded = 0
        self.writes = 0

    def record(self, fn: Callable, *args, **kwargs) -> None:
        """Record a durable write (or one whose cost is not known to be light)."""
        self._pending.append((fn, args, kwargs))
        self._durable = True

    def record_light(self, fn: Callable, *args, **kwargs) -> None:
        """Record a write that does not fsync (it sets ``synchronous=NORMAL`` itself)."""
        self._pending.append((fn, args, kwargs))

    def deferred(self, fn: Callable, light: Callable[..., bool] | None = None) -> Callable:
        """``fn`` wrapped so that calling it records the call instead of running it;
        ``light(*args)`` tells which calls do not fsync."""
        def later(*args, **kwargs):
            if light is not None and light(*args, **kwargs):
                self.record_light(fn, *args, **kwargs)
            else:
                self.record(fn, *args, **kwargs)
        return later

    def __len__(self) -> int:
        return len(self._pending)

    @property
    def busy(self) -> bool:
        return self._lock.locked()

    def take(self) -> list:
        """The recorded writes, in order; the journal is empty afterwards (trio thread)."""
        ops, self._pending, self._durable = self._pending, [], False
        return ops

    def run(self, ops: list) -> None:
        """Execute ``ops`` (from :meth:`take`) in order; in a worker thread."""
        with self._lock:
            for fn, args, kwargs in ops:
                fn(*args, **kwargs)
            self.flushes += 1
            self.writes += len(ops)

    async def flush(self) -> None:
        """Run every recorded write off the trio thread; returns when they are on disk. The
        thread is never abandoned; writes cancelled before it started stay recorded."""
        if not self._pending:
            return
        if not self._durable:
            self.run(self.take())  # no fsync: cheaper than a thread hop
            return
        ops, started = self.take(), []

        def work() -> None:
            started.append(True)
            self.run(ops)
        try:
            await trio.to_thread.run_sync(work)
            self.threaded += 1
        finally:
            if not started:
                self._pending[:0] = ops
                self._durable = True

    def flush_sync(self) -> None:
        """Run every recorded write now, in this thread (shutdown, start-up)."""
        if self._pending:
            self.run(self.take())


class JournaledStore:
    """A prompt-buffer store (:class:`p2pmoa.buffer.Store`) whose writes go through a
    :class:`Journal`; reads see the recorded but unflushed metadata."""

    def __init__(self, inner, journal: Journal) -> None:
        self.inner, self.journal = inner, journal
        self._meta: dict[str, bytes] = {}

    def put(self, query_id, state, updated_at, record, *, durable: bool = True) -> None:
        rec = self.journal.record if durable else self.journal.record_light
        rec(self.inner.put, query_id, state, updated_at, record, durable=durable)

    def delete(self, query_id) -> None:
        self.journal.record(self.inner.delete, query_id)

    def put_meta(self, key, value) -> None:
        self._meta[key] = value
        self.journal.record(self._put_meta, key, value)

    def _put_meta(self, key, value) -> None:
        self.inner.put_meta(key, value)

    def get_meta(self, key):
        return self._meta[key] if key in self._meta else self.inner.get_meta(key)

    def load_all(self):
        assert not len(self.journal), "load_all with unflushed writes"
        return self.inner.load_all()

    def close(self) -> None:
        self.journal.flush_sync()
        self.inner.close()
