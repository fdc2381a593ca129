"""The node daemon: runs the sans-I/O peer protocol on trio, libp2p and llama.cpp.

This module is deliberately thin. The peer logic (announce, buffer, propose, aggregate,
PBFT/averaging/vote, trust) lives in :mod:`p2pmoa.protocol` as a state machine
``handle(event) -> [effects]`` (each event carries its own ``now``); the daemon only

* feeds it events: inbound frames (gossip and direct streams), timer expiries, results of
  model calls, queries from the local API;
* executes its effects: ``Send`` -> the peer's bounded outbound queue, written in order by
  one sender task per peer onto its long-lived pipe stream (the protocol acknowledges and
  retransmits what must arrive; see node/transport.py for why a pipe rather than a stream
  per message), ``Broadcast`` -> gossipsub publish,
  ``SetTimer``/``CancelTimer`` -> trio tasks, ``Generate``/``Embed`` -> llama.cpp in a worker
  thread behind ``CapacityLimiter(1)``, ``Deliver`` -> wake the waiting API request.

One task (:meth:`Daemon._machine_loop`) owns the machine: events are queued in a two-lane
inbox and handled one at a time, so the machine never sees concurrency. The daemon's own
completions (timers, model results) are never dropped; input from peers is bounded (pipes
wait, gossip is shed and counted). The prompt buffer's, memory's and trust's SQLite writes
made while handling an event run before that event's effects are executed (nothing is
acknowledged before it is on disk), those that fsync in a worker thread (the trio thread
never waits for the disk). See node/execution.py.

Shutdown: SIGINT/SIGTERM set a shutdown event; the API stops accepting, in-flight work is
given ``shutdown_grace_s`` to finish, and whatever is unfinished stays in the durable prompt
buffer (SQLite, WAL) to be resumed at the next start; the libp2p host is closed explicitly.
"""
from __future__ import annotations

import logging
import os
import random
import secrets
import signal
import sys
import time
from dataclasses import dataclass
from typing import Any

import trio

from node.api import (ApiError, BadRequest, Busy, InternalError, CompletionRequest, CompletionResult, DecisionTimeout, DuplicateQuery,
                      build_app, serve_api)
from node.cascade_run import CascadeRunner
from node.config import STAND_IN_MODEL, NodeConfig, protocol_settings
from node.execution import Inbox, Journal, JournaledStore, Outbox
from node.local_model import (embed_and_release, generate_and_collect, load_embedder,  # noqa: F401
                              load_generator, release_memory, warm_up)
from node.metrics import Metrics, record_generation
from node.observe import asdict_json, register_daemon_metrics
from node.querylog import observed_query
from node.host import bootstrap_line, lan_options, network_status
from node.trust_store import (TRUST_FORMAT, TrustStateError, check_roster, check_trust_state,
                              load_trust)
from node.transport import (PeerUnreachable, RequestRejected, Transport, TransportError,
                            TransportLimits, load_or_create_identity, open_libp2p_transport)
from p2pmoa.effects import (Accepted, Broadcast, CancelTimer, Deliver, Embed, Failed, Generate,
                            PeerId, QueryId, Rate, Refused, Send, SetTimer)
from p2pmoa.settings import protocol_config, select_ppm_for

log = logging.getLogger(__name__)

INBOX_MAX = 4096
"""Outside events waiting for the machine; when full, pipes and API calls wait (backpressure)
and gossip is shed (counted). The daemon's own completions are never refused."""
PEER_QUEUE_MAX = 256
"""Frames queued for one peer; more are dropped (counted), the protocol retransmits."""
SHUTDOWN_GRACE_S = 5.0


@dataclass
class _Waiter:
    event: trio.Event
    result: Any = None


class Daemon:
    """One running node. Build with :func:`run_node` (which opens transport, API, signals)."""

    def __init__(self, cfg: NodeConfig, transport: Transport, generator, embedder,
                 identity, metrics: Metrics | None = None) -> None:
        self.cfg = cfg
        self.transport = transport
        self.generator = generator
        self.embedder = embedder
        self.identity = identity
        self.metrics = metrics or Metrics()
        self.local_model = getattr(generator, "model_id", str(cfg.model))
        self.started_at = time.time()
        self.inbox = Inbox(INBOX_MAX)
        self.journal = Journal()  # SQLite writes, run off the trio thread (node/execution.py)
        self.outbox: Outbox | None = None  # per-peer ordered senders, made in run()
        self._timers: dict[str, trio.CancelScope] = {}
        self._waiters: dict[QueryId, _Waiter] = {}
        self._llm_limiter = trio.CapacityLimiter(1)
        self._embed_limiter = trio.CapacityLimiter(1)
        self._nursery: trio.Nursery | None = None
        self.machine = self._build_machine()
        self.cascades = CascadeRunner(self.submit, cfg.deadline_s)  # method "cascade"
        self._register_metrics()
        from node.nodeinfo import InfoService
        self.model_meta: dict = {}  # from the GGUF header, read when the daemon runs
        self.info = InfoService(transport, self.local_info, time.time)

    # ------------------------------------------------------------------ protocol adapter
    # Everything that knows the names in p2pmoa.protocol is in this section.

    def _build_machine(self):
        from p2pmoa import protocol as P
        from p2pmoa.buffer import PromptBuffer, SQLiteStore
        from p2pmoa.identity import Ed25519Verifier
        self.P = P
        self.store = JournaledStore(SQLiteStore(self.cfg.buffer_path), self.journal)
        self.buffer = PromptBuffer(self.store, capacity=self.cfg.buffer_max,
                                   rate_window_s=self.cfg.admission_window_s,
                                   alpha_window_s=self.cfg.alpha_window_s,
                                   slack=self.cfg.admission_slack)
        self.trust = load_trust(self.store.get_meta("trust"), P.TrustBookPort)
        self._save_trust()  # an old state, once migrated, is stored in the current format
        self.journal.flush_sync()
        roster = None
        if self.cfg.roster:
            from p2pmoa.roster import load_roster
            pin = self.store.get_meta("roster_signer")
            r = load_roster(self.cfg.roster, Ed25519Verifier(),
                            pinned=pin.decode() if pin else None)
            if pin is None:
                self.store.put_meta("roster_signer", r.signer.encode())
            roster = r.peers
            log.info("roster: %d peers, signed by %s", len(r.peers), r.signer)
        self._open_memory()
        self._roster, self._mesh_size = roster, (len(roster) if roster else None)
        return P.PeerProtocol(self.identity, Ed25519Verifier(), self._protocol_config(),
                              rng=random.SystemRandom(), buffer=self.buffer, trust=self.trust,
                              memory=self.memory)

    def _protocol_config(self):
        """The machine's configuration, through the one path the simulator uses too
        (p2pmoa/settings.py); the mesh size (roster, live peers) sets ``select_ppm``."""
        settings = protocol_settings(self.cfg, self._roster,
                                     can_rate=callable(getattr(self.generator, "rate", None)))
        return protocol_config(settings, model_id=self.local_model, mesh_size=self._mesh_size,
                               space_id=getattr(self.embedder, "space_id", "unknown"),
                               strict=False)  # a bug fails its query, not the node

    def _resize_mesh(self, live_peers: int) -> None:
        """The mesh now has about ``1 + live_peers`` nodes (at least the roster's): rebuild
        the configuration if that changes who is asked to answer (``select_ppm``)."""
        size = max(len(self._roster or ()), 1 + live_peers)
        s = self.cfg
        if select_ppm_for(s.proposers_max, s.proposers_oversample, size) != self.machine.cfg.select_ppm:
            self._mesh_size = size
            self.machine.cfg = self._protocol_config()

    def _open_memory(self) -> None:
        """Private + shared memory, persisted in ``data_dir/memory.sqlite3`` (docs/memory.md)."""
        from node.config import memory_config
        from p2pmoa.memory import Memory
        from p2pmoa.memory_store import MemorySQLite
        self.memory_store = MemorySQLite(self.cfg.memory_path)
        self.memory = Memory(memory_config(self.cfg),
                             on_change=self.journal.deferred(self.memory_store.apply,
                                                            light=lambda op, e: op == "touch"))
        self.memory.load(self.memory_store.load(), self._now())
        self.journal.flush_sync()

    def _memory_sync(self) -> None:
        """``p2pmoa memory forget|clear`` changed the file while we run: reload it."""
        if not self.journal.busy and not len(self.journal) and self.memory_store.changed():
            self.memory.load(self.memory_store.load(), self._now(), replace_all=True)
            log.info("memory reloaded after an outside change (%d private, %d shared)",
                     len(self.memory.private), len(self.memory.shared))

    def memory_entries(self, tier: str | None = None) -> list[dict]:
        """``GET /v1/memory``: the entries of this node's memory (no vectors), newest first."""
        self._memory_sync()
        tiers = [tier] if tier else ["private", "shared"]
        out = [e.summary() for t in tiers for e in self.memory.tier(t).entries()]
        return sorted(out, key=lambda d: -d["t_added"])

    def _save_trust(self) -> None:
        import json
        self.store.put_meta("trust", json.dumps(
            {"format": TRUST_FORMAT, **self.trust.to_dict()}).encode())

    def trust_snapshot(self) -> dict[str, float]:
        return {p: round(self.trust.score(p), 4) for p in self.trust.members()}

    def _now(self) -> float:
        """Protocol time: Unix seconds (timestamps in envelopes are compared across nodes);
        ``clock_offset_s`` is a fault-injection knob for clock-skew tests (0 by default)."""
        return time.time() + self.cfg.clock_offset_s

    # ------------------------------------------------------------------ event loop

    async def _push(self, event) -> Any:
        """Queue outside input for the machine (waits for room); returns what handling it
        returned (for acks and admission)."""
        done = _Waiter(trio.Event())
        await self.inbox.put_peer(event, done)
        await done.event.wait()
        return done.result

    def _internal(self, event) -> None:
        """Queue a completion of the daemon's own work: never dropped (node/execution.py)."""
        self.inbox.put_internal(event)

    async def _machine_loop(self) -> None:
        while True:
            event, done = await self.inbox.get()
            t0 = time.perf_counter()
            try:
                effects = self.machine.handle(event)
                err = None
            except Exception as exc:  # a machine bug must not take the node down: log, count
                log.exception("protocol failed on %s", type(event).__name__)
                self.metrics.inc("protocol_errors_total", "exceptions raised by the protocol machine")
                effects, err = [], exc
            self.metrics.observe("handle_seconds", time.perf_counter() - t0,
                                 "time to handle one event in the protocol machine")
            if any(isinstance(e, Deliver) for e in effects):
                self._save_trust()
            await self._persist()  # on disk before any effect of this event is executed
            for eff in effects:
                self._execute(eff)
            if done is not None:
                done.result = err if err is not None else effects
                done.event.set()

    async def _persist(self) -> None:
        """Run the SQLite writes of the last event in a worker thread."""
        if not len(self.journal):
            return
        t0 = time.perf_counter()
        try:
            await self.journal.flush()
        except Exception:  # disk full, I/O error: loud; the node keeps serving from memory
            log.exception("persisting the prompt buffer / memory failed")
            self.metrics.inc("persist_errors_total", "SQLite writes that failed")
        self.metrics.observe("persist_seconds", time.perf_counter() - t0,
                             "time to write one event's buffer/memory changes (worker thread)")

    def _execute(self, eff) -> None:
        assert self._nursery is not None and self.outbox is not None, "daemon is not running"
        match eff:
            case Send(peer=peer, msg=msg):
                self.outbox.push(peer, msg)
            case Broadcast(topic=topic, msg=msg):
                self._nursery.start_soon(self._do_broadcast, topic, msg)
            case SetTimer(name=name, delay_s=delay_s):
                self._cancel_timer(name)
                scope = trio.CancelScope()
                self._timers[name] = scope
                self._nursery.start_soon(self._do_timer, name, delay_s, scope)
            case CancelTimer(name=name):
                self._cancel_timer(name)
            case Generate():
                self._nursery.start_soon(self._do_generate, eff)
            case Embed():
                self._nursery.start_soon(self._do_embed, eff)
            case Rate():
                self._nursery.start_soon(self._do_rate, eff)
            case Deliver(query_id=qid):
                self._deliver(qid, eff.result)
            case Failed(query_id=qid, reason=reason, trace=trace):
                self.metrics.inc("queries_failed_total", "queries asked here that failed")
                w = self._waiters.pop(qid, None)
                if w is not None:
                    w.result = DecisionTimeout(f"query failed: {reason}")
                    w.event.set()
            case Accepted() | Refused():
                pass  # read by complete() from the handle() result
            case _:
                log.debug("ignoring effect %r", eff)

    def _cancel_timer(self, name: str) -> None:
        scope = self._timers.pop(name, None)
        if scope is not None:
            scope.cancel()

    async def _do_timer(self, name: str, delay_s: float, scope: trio.CancelScope) -> None:
        with scope:
            await trio.sleep(max(0.0, delay_s))
            if self._timers.get(name) is scope:
                del self._timers[name]
                self._internal(self.P.TimerFired(name, now=self._now()))

    async def _do_send(self, peer: PeerId, frame: bytes) -> None:
        try:
            await self.transport.send(peer, frame)
        except TransportError as exc:
            self.metrics.inc("sends_failed_total", "direct sends that failed", reason=type(exc).__name__)
            log.info("send to %s failed: %s", peer, exc)
            return  # the protocol retransmits what needs an acknowledgement
        self.metrics.inc("sends_total", "direct frames written to a peer's pipe")

    def _send_dropped(self, peer: PeerId) -> None:
        self.metrics.inc("sends_dropped_total", "direct frames dropped before sending",
                         reason="queue_full")

    async def _do_broadcast(self, topic: str, frame: bytes) -> None:
        try:
            await self.transport.publish(topic, frame)
            self.metrics.inc("gossip_published_total", "gossip messages published", topic=topic)
        except Exception as exc:  # noqa: BLE001 - gossip is best effort; the protocol retries
            log.warning("publish on %s failed: %s", topic, exc)

    async def _do_generate(self, eff: Generate) -> None:
        async with self._llm_limiter:
            t0 = time.perf_counter()
            try:
                gen = await trio.to_thread.run_sync(generate_and_collect, self.generator,
                                                    eff.messages, eff.params,
                                                    abandon_on_cancel=True)
                err = None
            except Exception as exc:  # noqa: BLE001 - LLMError and friends: report to the machine
                gen, err = None, f"{type(exc).__name__}: {exc}"
                log.warning("generation %s failed: %s", eff.job_id, err)
        self.metrics.observe("generate_seconds", time.perf_counter() - t0, "local LLM call time")
        self.metrics.inc("generations_total", "local LLM calls")
        if err is None:
            record_generation(self.metrics, gen)
            self._internal(self.P.GenerateDone(eff.job_id, gen, now=self._now()))
        else:
            self._internal(self.P.GenerateFailed(eff.job_id, err, now=self._now()))

    async def _do_rate(self, eff: Rate) -> None:
        """The own model rates a round's candidate answers (same one-at-a-time lane as
        generation: it is the same model)."""
        async with self._llm_limiter:
            t0 = time.perf_counter()
            try:
                scores = await trio.to_thread.run_sync(self.generator.rate, eff.question, eff.answers,
                                                       abandon_on_cancel=True)
                done = self.P.RateDone(eff.job_id, tuple(scores), now=self._now())
            except Exception as exc:  # noqa: BLE001 - the round is judged without ratings
                log.info("rating %s failed: %s: %s", eff.job_id, type(exc).__name__, exc)
                done = self.P.RateFailed(eff.job_id, f"{type(exc).__name__}: {exc}", now=self._now())
        self.metrics.observe("rate_seconds", time.perf_counter() - t0, "own-model rating time per round")
        self._internal(done)

    async def _do_embed(self, eff: Embed) -> None:
        async with self._embed_limiter:
            t0 = time.perf_counter()
            try:
                emb = await trio.to_thread.run_sync(embed_and_release, self.embedder,
                                                    list(eff.texts), abandon_on_cancel=True)
                err = None
            except Exception as exc:  # noqa: BLE001
                emb, err = None, f"{type(exc).__name__}: {exc}"
                log.warning("embedding %s failed: %s", eff.job_id, err)
        self.metrics.observe("embed_seconds", time.perf_counter() - t0, "local embedding time")
        if err is None:
            self._internal(self.P.EmbedDone(eff.job_id, emb, now=self._now()))
        else:
            self._internal(self.P.EmbedFailed(eff.job_id, err, now=self._now()))

    def _deliver(self, qid: QueryId, result) -> None:
        self.metrics.inc("queries_decided_total", "queries asked here and decided by the mesh",
                         method=str(result.trace.get("method", "?")))
        w = self._waiters.pop(qid, None)  # the waiting request holds it; nothing leaks
        if w is not None:
            w.result = result  # p2pmoa.effects.QueryResult
            w.event.set()

    # ------------------------------------------------------------------ inbound network

    async def _on_request(self, peer: PeerId, data: bytes) -> bytes:
        """A direct stream delivered one frame: hand it to the machine, ack when handled."""
        result = await self._push(self.P.FrameIn(peer, None, data, now=self._now()))
        if isinstance(result, Exception):
            raise RequestRejected("internal error")
        return b""

    async def _on_frame(self, peer: PeerId, data: bytes) -> None:
        """A one-way frame from a peer's pipe; waits for inbox space (backpressure on the pipe)."""
        await self.inbox.put_peer(self.P.FrameIn(peer, None, data, now=self._now()))

    async def _pump_gossip(self, topic: str, task_status=trio.TASK_STATUS_IGNORED) -> None:
        sub = await self.transport.subscribe(topic)
        task_status.started()
        async for m in sub:  # gossip is best effort: shed (counted) when the inbox is full
            if not self.inbox.try_put_peer(self.P.FrameIn(m.source, m.topic, m.data, now=self._now())):
                self.metrics.inc("gossip_shed_total", "gossip frames shed because the inbox was full")

    # ------------------------------------------------------------------ local API service

    @observed_query  # one INFO line + p2pmoa_queries_total{method,outcome} (node/querylog.py)
    async def complete(self, req: CompletionRequest) -> CompletionResult:
        """Ask the mesh: the query is durably buffered before this returns "accepted"."""
        wait = await self.submit(req)
        return await wait()

    async def submit(self, req: CompletionRequest):
        """Admit a query (durably buffered when this returns) and return a coroutine function
        that waits for its answer. Raises :class:`Busy` (429), :class:`BadRequest`,
        :class:`DuplicateQuery` at admission, before anything is sent to a client."""
        if (req.method or self.cfg.consensus) == "cascade":  # ordinary queries, composed
            return await self.cascades.submit(req, prompt_of(req.messages))
        qid = QueryId(req.query_id or secrets.token_hex(8))
        waiter = _Waiter(trio.Event())
        self._waiters[qid] = waiter
        self._memory_sync()
        try:
            self._sync_peers()  # queued before the query: the machine sees the live peers
            effects = await self._push(self.P.UserQuery(
                qid, prompt_of(req.messages), req.method or self.cfg.consensus, now=self._now(),
                memory=getattr(req, "memory", True), **req.generation()))
            if isinstance(effects, Exception):
                raise InternalError(f"protocol error: {effects}")
            for eff in effects:
                if isinstance(eff, Refused):
                    self.metrics.inc("queries_refused_total", "queries refused at admission",
                                     reason=eff.reason)
                    if eff.reason.startswith("invalid"):
                        raise BadRequest(f"query refused: {eff.reason}", param="messages")
                    if eff.reason == "duplicate":
                        raise DuplicateQuery(f"query {qid} was already accepted; its answer is at "
                                             f"GET /v1/queries/{qid}", param="p2pmoa.query_id")
                    raise Busy(f"node busy ({eff.reason}); retry later",
                               retry_after_s=max(1.0, eff.retry_after_s))
        except BaseException:
            self._waiters.pop(qid, None)
            raise
        self.metrics.inc("queries_accepted_total", "queries accepted into the prompt buffer")

        async def result() -> CompletionResult:
            try:
                return await self._result(qid, waiter)
            finally:
                self._waiters.pop(qid, None)
        return result

    async def _result(self, qid: QueryId, waiter: _Waiter) -> CompletionResult:
        # The protocol ends every query it accepted with Deliver or Failed (its collect,
        # round and judging timers see to that); a 504 is sent only when it gave up
        # (Failed), or as a last resort if it stopped working on the query without saying.
        wait_s = self.cfg.deadline_s + self.cfg.round_timeout_s + 30
        waited = 0.0
        while True:
            with trio.move_on_after(wait_s):
                await waiter.event.wait()
            waited += wait_s
            if waiter.result is not None or not self.machine.is_open(qid) \
                    or waited >= 20 * wait_s:
                break
        if waiter.result is None:
            raise DecisionTimeout(f"no decision after {waited:.0f} s; query {qid} stays "
                                  f"buffered: GET /v1/queries/{qid}")
        if isinstance(waiter.result, ApiError):
            raise waiter.result
        return CompletionResult.of(qid, waiter.result)

    def query(self, query_id: str) -> dict | None:
        """A buffered query's record (the buffer keeps finished ones for a while)."""
        rec = self.buffer.get(QueryId(query_id))
        if rec is None:
            return self.cascades.query(query_id)  # a cascade's id (its levels are buffered)
        return {"query_id": rec.query_id, "state": rec.state.value, "local": rec.local,
                "prompt": rec.announce.prompt, "method": rec.announce.method,
                "answer": rec.answer or None, "detail": rec.detail or None,
                "accepted_at": rec.accepted_at, "updated_at": rec.updated_at}

    def status(self) -> dict:
        st = self.transport.statistics()
        proto = asdict_json(getattr(self.machine, "statistics", lambda: None)())
        buf = asdict_json(self.buffer.statistics(self._now()))
        if proto is not None:
            proto["decisions"] = {q: {"digest": d[0], "answer": d[1][:200]}
                                  for q, d in list(proto.get("decisions", {}).items())[-20:]}
        return {
            "peer_id": self.transport.local_peer,
            "listen_addrs": self.transport.listen_addrs(),
            "model": self.local_model,
            "model_info": self.model_meta,
            "embedding_space": getattr(self.embedder, "space_id", "?"),
            "role": self.cfg.role,
            "consensus": self.cfg.consensus,
            "fault": self.cfg.fault,
            "peers": len(self.transport.peers()),
            "mesh_peers": len(self.transport.topic_peers(self.P.QUERY_TOPIC)),
            "network": network_status(self.transport, self.cfg),
            "uptime_s": round(time.time() - self.started_at, 3),
            "transport": asdict_json(st),
            "buffer": buf,
            "protocol": proto,
            "memory": asdict_json(self.memory.statistics()),
        }

    def peers(self) -> list[dict]:
        trust = self.trust_snapshot()
        mesh = set(self.transport.topic_peers(self.P.QUERY_TOPIC))
        now = time.time()
        card = getattr(self.transport, "peer_card", lambda p: {})
        return [{"peer_id": p, "trust": trust.get(p), "subscribed": p in mesh,
                 **card(p), **self.info.book.view(p, now)}
                for p in self.transport.peers()]

    def local_info(self) -> dict:
        """What this node advertises to its peers (node/nodeinfo.py) and shows on /status."""
        from p2pmoa import __version__
        return {**self.model_meta, "version": __version__, "model_id": self.local_model,
                "role": self.cfg.role, "consensus": self.cfg.consensus,
                "embedding_space": getattr(self.embedder, "space_id", "?")}

    async def _read_model_meta(self) -> None:
        """Read the model's GGUF metadata off the start-up path (the first read of a large
        vocabulary takes seconds; then it is cached) and advertise it."""
        from node.nodeinfo import model_metadata
        try:
            self.model_meta = await trio.to_thread.run_sync(model_metadata, self.cfg.model,
                                                            abandon_on_cancel=True)
        except Exception as exc:  # noqa: BLE001 - descriptive only: a node runs without it
            log.warning("cannot read the metadata of model %s: %s", self.cfg.model, exc)
            return
        self.info.poke()

    def progress(self, query_id: str) -> dict | None:
        """Live partial trace of an undecided query asked here (for the web page)."""
        fn = getattr(self.machine, "progress", None)
        return fn(QueryId(query_id), now=self._now()) if fn is not None else None

    def metrics_text(self) -> str:
        return self.metrics.render()

    def _register_metrics(self) -> None:
        register_daemon_metrics(self)

    # ------------------------------------------------------------------ running

    async def run(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Run until cancelled. ``task_status.started()`` once gossip is subscribed."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self.outbox = Outbox(nursery, self._do_send, PEER_QUEUE_MAX, on_drop=self._send_dropped)
            self.transport.set_request_handler(self._on_request)
            self.transport.set_frame_handler(self._on_frame)
            nursery.start_soon(self._machine_loop)
            await nursery.start(self._pump_gossip, self.P.QUERY_TOPIC)
            await nursery.start(self.info.run)
            nursery.start_soon(self._read_model_meta)
            self._internal(self.P.Started(now=self._now()))
            nursery.start_soon(self._tick)
            task_status.started()

    async def _tick(self) -> None:
        """Tell the machine which peers joined or left the query topic (checked each second)."""
        while True:
            self._sync_peers()
            await trio.sleep(1.0)

    def _sync_peers(self) -> None:
        """Queue PeerUp/PeerDown for changes of the query topic's peers since the last call.
        Also called right before a user query, so the round invites the peers live now (a
        query asked within a second of a peer joining would otherwise not wait for it)."""
        known = getattr(self, "_known_peers", set())
        now_peers = set(self.transport.topic_peers(self.P.QUERY_TOPIC))
        for p in sorted(now_peers - known):
            self._internal(self.P.PeerUp(p, now=self._now()))
            self.info.poke()
        for p in sorted(known - now_peers):
            self._internal(self.P.PeerDown(p, now=self._now()))
        self._known_peers = now_peers
        self._resize_mesh(len(now_peers))


def prompt_of(messages) -> str:
    """The protocol gossips one prompt string: the last user message, with earlier turns
    (if any) quoted before it so that follow-up questions keep their context."""
    last = max(i for i, m in enumerate(messages) if m.role == "user")
    earlier = [m for m in messages[:last] if m.role in ("user", "assistant")]
    if not earlier:
        return messages[last].content
    convo = "\n".join(f"{m.role}: {m.content}" for m in earlier[-6:])
    return f"Conversation so far:\n{convo}\n\nuser: {messages[last].content}"


async def run_node(cfg: NodeConfig, *, task_status=trio.TASK_STATUS_IGNORED,
                   shutdown: trio.Event | None = None) -> None:
    """Open identity, models, transport, daemon and API; run until ``shutdown`` is set."""
    from p2pmoa.identity import Ed25519Identity
    cfg.data_dir.mkdir(parents=True, exist_ok=True)
    identity = Ed25519Identity.load_or_create(cfg.identity_path)
    key_pair = load_or_create_identity(str(cfg.identity_path))
    if shutdown is None:
        shutdown = trio.Event()
    log.info("loading model %s and embedder %s", cfg.model, cfg.embedder)
    loaded: list = []
    async with trio.open_nursery() as loading:
        async def load() -> None:
            # abandon_on_cancel: a SIGTERM during a long model load exits at once
            loaded.append(await trio.to_thread.run_sync(load_generator, cfg, abandon_on_cancel=True))
            loaded.append(await trio.to_thread.run_sync(load_embedder, cfg, abandon_on_cancel=True))
            loading.cancel_scope.cancel()

        async def stop_early() -> None:
            await shutdown.wait()
            log.info("shutdown requested while loading models")
            loading.cancel_scope.cancel()
        loading.start_soon(load)
        loading.start_soon(stop_early)
    if len(loaded) < 2:
        return
    generator, embedder = loaded
    limits = TransportLimits(frame_bytes_max=cfg.frame_bytes_max,
                             connections_target=cfg.connections_target)
    net = lan_options(cfg, generator, embedder)
    async with open_libp2p_transport(key_pair, cfg.listen, cfg.bootstrap, limits, **net) as transport:
        daemon = Daemon(cfg, transport, generator, embedder, identity)
        if not cfg.model.startswith(STAND_IN_MODEL):
            await warm_up(generator, cfg)
        log.info("node %s listening on %s; model %s, role %r, consensus %s%s", transport.local_peer,
                 " ".join(transport.listen_addrs()), daemon.local_model, cfg.role, cfg.consensus,
                 f", FAULT INJECTION {cfg.fault}" if cfg.fault else "")
        log.info("other devices join with: %s", bootstrap_line(transport.listen_addrs()))
        async with trio.open_nursery() as nursery:
            await nursery.start(daemon.run)
            app = build_app(daemon, cfg.body_bytes_max, cfg.max_tokens)
            api_stop = trio.Event()
            await nursery.start(serve_api, app, cfg.api_host, cfg.api_port, api_stop)
            log.info("API on http://%s (OpenAI base_url http://%s/v1)", cfg.api, cfg.api)
            task_status.started(daemon)
            await shutdown.wait()
            log.info("shutting down: API first, then %.0f s grace for in-flight work", SHUTDOWN_GRACE_S)
            api_stop.set()
            with trio.move_on_after(SHUTDOWN_GRACE_S):
                while daemon._waiters:
                    await trio.sleep(0.05)
            nursery.cancel_scope.cancel()
        daemon.store.close()
        daemon.memory_store.close()
    log.info("node stopped")


def run_daemon(cfg: NodeConfig) -> int:
    """Blocking entry point of ``p2pmoa node run``: handles SIGINT/SIGTERM, returns an exit code."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    elif logging.getLogger().level > logging.INFO:
        logging.getLogger().setLevel(logging.INFO)
    for noisy in ("libp2p", "multiaddr", "hypercorn.error", "async_service"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    import libp2p  # noqa: F401 - configures its loggers on import; then route them through ours
    from p2pmoa.logconf import adopt_library_loggers
    adopt_library_loggers()

    try:  # refuse a trust state or roster we cannot use before anything starts
        check_trust_state(cfg.buffer_path)
        if cfg.roster:
            check_roster(cfg.roster, cfg.buffer_path)
    except (TrustStateError, ValueError) as exc:  # RosterError is a ValueError
        print(f"p2pmoa node run: {exc}", file=sys.stderr)
        return 2

    async def main() -> None:
        shutdown = trio.Event()
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                async def watch() -> None:
                    async for sig in signals:
                        log.info("received %s", signal.Signals(sig).name)
                        shutdown.set()
                        return
                nursery.start_soon(watch)
                await run_node(cfg, shutdown=shutdown)
                nursery.cancel_scope.cancel()
    try:
        trio.run(main)
        code = 0
    except OSError as exc:
        log.error("cannot start node: %s", exc)
        code = 1
    # Skip interpreter finalisation: a llama.cpp call abandoned in a worker thread at shutdown
    # would crash it (SIGSEGV seen when the model was freed under a running thread). Nothing
    # is lost: the prompt buffer and trust are committed to SQLite as they change.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
