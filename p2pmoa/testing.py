"""In-memory mesh for :class:`~p2pmoa.protocol.PeerProtocol`: the shared fake for tests.

:class:`InMemoryMesh` runs several peer machines on the one virtual-time driver
(:class:`consensus.driver.Driver`, which the simulator and the PBFT harnesses use too) with a
full-mesh network: ``Send``/``Broadcast`` become ``FrameIn`` events after ``latency_s``
(every other node gets a gossip publication; optional loss and a drop filter), timers fire on
the virtual clock, ``Generate`` calls the node's :class:`~p2pmoa.llm.TextGenerator` (a
``StandInGenerator`` in tests) and ``Embed`` the mesh's embedder (``HashingEmbedder``). It is
deterministic for a given seed, does no I/O and never sleeps; it is *not* the simulator
(simulations/ has the real topology, link and fault models) and not the daemon.

:class:`PeerAdapter` is the one place that turns a message or a timer into the peer
protocol's own events (``FrameIn``, ``TimerFired``); the simulator's adapters build on it.
"""
from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Any, Callable

from consensus.driver import Driver, Node
from p2pmoa.effects import Deliver, Embed, Generate, PeerId, Rate, Send
from p2pmoa.protocol import (
    Accepted,
    EmbedDone,
    EmbedFailed,
    Failed,
    FrameIn,
    GenerateDone,
    GenerateFailed,
    PeerProtocol,
    PeerUp,
    ProtocolConfig,
    RateDone,
    RateFailed,
    Refused,
    Started,
    TimerFired,
    UserQuery,
)

class PeerAdapter:
    """Driver adapter of a peer protocol: a message from ``src`` on ``topic`` (``None`` for a
    direct stream) is ``FrameIn(src, topic, data)``; a timer is ``TimerFired(name)``."""

    def on_message(self, src: Any, msg: Any, topic: str | None, now: float) -> FrameIn:
        # ``src`` is already a PeerId (the driver's addresses are the peers' ids)
        return FrameIn(src, topic, msg, now=now)

    def on_timer(self, name: Any, now: float) -> TimerFired:
        return TimerFired(name, now=now)


class _MeshAdapter(PeerAdapter):
    def __init__(self, mesh: "InMemoryMesh", peer: PeerId) -> None:
        self.mesh = mesh
        self.peer = peer

    def on_output(self, effect: Any, now: float) -> None:
        self.mesh._output(self.peer, effect)


@dataclass(eq=False)
class _Node:
    """A mesh node: the protocol, its generator and its place in the driver."""

    dn: Node
    generator: Any

    @property
    def proto(self) -> PeerProtocol:
        return self.dn.machine

    @property
    def up(self) -> bool:
        return self.dn.up

    @property
    def epoch(self) -> int:
        return self.dn.epoch

    @property
    def timers(self) -> dict:
        return self.dn.timers


class InMemoryMesh:
    """A deterministic in-memory network of peer machines.

    Args:
        embedder: the mesh's embedder (one space for everyone).
        latency_s: one-way delay of every frame, seconds (default 5 ms).
        loss: probability a frame is dropped (default 0), drawn from ``seed``.
        seed: seed of the driver's one random generator (the loss draws).
        embed_s: virtual time an embedding takes (default 1 ms).

    A frame in flight to a node that crashes or restarts before it arrives is lost (the
    connection it came over is gone).
    """

    def __init__(self, embedder, *, latency_s: float = 0.005, loss: float = 0.0, seed: int = 0,
                 embed_s: float = 0.001):
        self.embedder = embedder
        self.latency_s = latency_s
        self.loss = loss
        self.driver = Driver(seed, network=self, strict_epochs=True)
        self.driver.send_unknown = self._send_unknown  # type: ignore[method-assign]
        self.rng = self.driver.rng
        self.embed_s = embed_s
        self.nodes: dict[PeerId, _Node] = {}
        self.delivered: dict[tuple[PeerId, str], Deliver] = {}
        self.accepted: list[tuple[PeerId, str]] = []
        self.refused: list[tuple[PeerId, Refused]] = []
        self.failed: list[tuple[PeerId, Failed]] = []
        self.frames_sent = 0
        self.drop: Callable[[PeerId, PeerId, bytes], bool] | None = None
        self.tap: Callable[[PeerId, PeerId, bytes], None] | None = None

    @property
    def now(self) -> float:
        """Virtual seconds (settable: a test may move the clock forward between runs)."""
        return self.driver.now

    @now.setter
    def now(self, t: float) -> None:
        self.driver.now = t

    # ---- topology

    def add(self, proto: PeerProtocol, generator, *, peer_events: bool = True) -> PeerId:
        """Add a running node, connected to every other node (``PeerUp`` both ways unless
        ``peer_events=False``, which saves O(n²) events in large meshes)."""
        me = proto.me
        dn = self.driver.add(me, proto, _MeshAdapter(self, me))
        self.nodes[me] = _Node(dn, generator)
        self.post(me, lambda: Started(now=self.now))
        for other in (self.nodes if peer_events else ()):
            if other != me:
                self.post(me, lambda o=other: PeerUp(o, now=self.now))
                self.post(other, lambda o=me: PeerUp(o, now=self.now))
        return me

    def crash(self, peer: PeerId) -> None:
        """Stop a node abruptly: pending timers, frames in flight to it and jobs are lost."""
        self.driver.crash(self.nodes[peer].dn)

    def restart(self, proto: PeerProtocol, generator) -> None:
        """Replace a crashed node by a fresh machine with the same identity."""
        old = self.nodes.get(proto.me)
        if old is None:
            dn = self.driver.add(proto.me, proto, _MeshAdapter(self, proto.me))
        else:
            dn = old.dn
            self.driver.replace(dn, proto, dn.adapter)
        self.nodes[proto.me] = _Node(dn, generator)
        self.post(proto.me, lambda: Started(now=self.now))

    # ---- inputs

    def ask(self, peer: PeerId, query_id: str, prompt: str, method: str | None = None, *,
            memory: bool = True, proposers_max: int | None = None) -> None:
        self.post(peer, lambda: UserQuery(query_id, prompt, method, now=self.now, memory=memory,
                                          proposers_max=proposers_max))

    def inject(self, src: PeerId, dst: PeerId, data: bytes, topic: str | None = None) -> None:
        """Deliver raw bytes to ``dst`` as if ``src`` had sent them (for hostile-input tests)."""
        self.post(dst, lambda: FrameIn(src, topic, data, now=self.now))

    def post(self, peer: PeerId, make: Callable[[], Any], at_s: float | None = None) -> None:
        """Hand the event ``make()`` to ``peer``'s machine at ``at_s`` (default now), unless
        the node crashed or restarted in between. Unknown peers are ignored."""
        node = self.nodes.get(peer)
        if node is not None:
            self.driver.post(self.now if at_s is None else at_s, node.dn, make)

    def _push(self, t: float, peer: PeerId, epoch: int | None, make) -> None:
        """Older spelling of :meth:`post` (``epoch`` must be ``None``: the current one)."""
        assert epoch is None, "pass events for the node's current epoch"
        self.post(peer, make, at_s=t)

    # ---- loop

    def run(self, until_s: float = 120.0, max_events: int = 200_000) -> int:
        """Process events until the queue is empty, ``until_s`` or ``max_events`` events were
        handed to machines; returns how many were."""
        before = self.driver.handled
        self.driver.run(until_s, handled_max=max_events)
        return self.driver.handled - before

    # ---- the network model (consensus.driver.Network): a full mesh

    def send(self, driver: Driver, src: Node, dst: Node, msg: Any, topic: str | None) -> None:
        self._frame(src.addr, dst.addr, msg, topic)

    def publish(self, driver: Driver, src: Node, topic: str, msg: Any) -> None:
        for dst in self.nodes:
            if dst != src.addr:
                self._frame(src.addr, dst, msg, topic)

    def _send_unknown(self, node: Node, eff: Send) -> None:
        self._frame(node.addr, eff.peer, eff.msg, None)

    def _frame(self, src: PeerId, dst: PeerId, data: bytes, topic: str | None) -> None:
        self.frames_sent += 1
        if self.tap is not None:
            self.tap(src, dst, data)
        if self.drop is not None and self.drop(src, dst, data):
            return
        if self.loss and self.rng.random() < self.loss:
            return
        node = self.nodes.get(dst)
        if node is None:
            return
        self.driver.arrive_at(self.now + self.latency_s, node.dn, src, data, topic)

    # ---- domain effects (the transport effects are the driver's)

    def _output(self, peer: PeerId, eff) -> None:
        node = self.nodes[peer]
        now = self.now
        match eff:
            case Generate(job_id=job, messages=msgs, params=params):
                try:
                    g = node.generator.generate(msgs, params)
                except Exception as exc:  # the stand-in may refuse a prompt
                    err = f"{type(exc).__name__}: {exc}"
                    self.post(peer, lambda: GenerateFailed(job, err, now=self.now))
                    return
                self.post(peer, lambda: GenerateDone(job, g, now=self.now),
                          at_s=now + max(0.01, g.llm_s))
            case Rate(job_id=job, question=q, answers=answers):
                rate = getattr(node.generator, "rate", None)
                try:
                    if rate is None:
                        raise NotImplementedError(f"{type(node.generator).__name__} cannot rate answers")
                    sc = tuple(rate(q, answers))
                except Exception as exc:
                    err = f"{type(exc).__name__}: {exc}"
                    self.post(peer, lambda: RateFailed(job, err, now=self.now))
                    return
                self.post(peer, lambda: RateDone(job, sc, now=self.now), at_s=now + self.embed_s)
            case Embed(job_id=job, texts=texts):
                try:
                    v = self.embedder.embed(list(texts))
                except Exception as exc:
                    err = f"{type(exc).__name__}: {exc}"
                    self.post(peer, lambda: EmbedFailed(job, err, now=self.now))
                    return
                self.post(peer, lambda: EmbedDone(job, v, now=self.now), at_s=now + self.embed_s)
            case Deliver(query_id=q):
                self.delivered[(peer, q)] = eff
            case Accepted(query_id=q):
                self.accepted.append((peer, q))
            case Refused():
                self.refused.append((peer, eff))
            case Failed():
                self.failed.append((peer, eff))
            case _:
                raise TypeError(f"unknown effect {eff!r}")


def make_mesh(n: int, *, method: str = "pbft", faults: dict[int, str] | None = None,
              seed: int = 0, loss: float = 0.0, latency_s: float = 0.005,
              generators: dict[int, Any] | None = None, buffers: dict[int, Any] | None = None,
              insecure: bool = False, trust_factory: Callable[[], Any] | None = None,
              peer_events: bool = True, memories: dict[int, Any] | None = None,
              **config) -> tuple[InMemoryMesh, list[PeerId]]:
    """``n`` nodes with deterministic identities, StandInGenerator answers and one
    HashingEmbedder space; node ``i`` runs in fault mode ``faults[i]`` if given.

    ``config`` overrides :class:`ProtocolConfig` fields (``proposers_max`` defaults to ``n``).
    ``insecure=True`` uses :class:`~p2pmoa.identity.InsecureSimSigner` (fast, NOT secure).
    ``memories[i]``: node ``i``'s :class:`p2pmoa.memory.Memory` (default: no memory).
    """
    from p2pmoa.embed import HashingEmbedder  # noqa: PLC0415
    from p2pmoa.identity import (  # noqa: PLC0415
        Ed25519Identity, Ed25519Verifier, InsecureSimRegistry, InsecureSimSigner,
        InsecureSimVerifier)
    from p2pmoa.llm import StandInGenerator  # noqa: PLC0415

    faults = faults or {}
    emb = HashingEmbedder(64)
    mesh = InMemoryMesh(emb, latency_s=latency_s, loss=loss, seed=seed)
    registry = InsecureSimRegistry()
    config.setdefault("proposers_max", n)
    ids = []
    for i in range(n):
        if insecure:
            signer = InsecureSimSigner.create(random.Random(seed * 1000 + i), registry)
            verifier = InsecureSimVerifier(registry)
        else:
            signer = Ed25519Identity.from_seed(hashlib.sha256(f"node:{seed}:{i}".encode()).digest())
            verifier = Ed25519Verifier()
        cfg = ProtocolConfig(role=f"You are expert number {i}.", model_id=f"stand-in:m{i}",
                             space_id=emb.space_id, method=method, fault=faults.get(i),
                             **config)
        kw = {}
        if buffers and i in buffers:
            kw["buffer"] = buffers[i]
        if trust_factory is not None:
            kw["trust"] = trust_factory()
        if memories and i in memories:
            kw["memory"] = memories[i]
        proto = PeerProtocol(signer, verifier, cfg, rng=random.Random(seed * 7919 + i), **kw)
        gen = (generators or {}).get(i) or StandInGenerator(f"m{i}", variants=1)
        ids.append(mesh.add(proto, gen, peer_events=peer_events))
    return mesh, ids
