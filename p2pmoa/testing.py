"""In-memory driver for :class:`~p2pmoa.protocol.PeerProtocol`: the shared fake for tests.

:class:`InMemoryMesh` runs several peer machines on one virtual clock and executes their
effects synchronously: ``Send``/``Broadcast`` become ``FrameIn`` events after ``latency_s``
(full-mesh gossip; optional loss and a drop filter), timers fire on the virtual clock,
``Generate`` calls the node's :class:`~p2pmoa.llm.TextGenerator` (a ``StandInGenerator`` in
tests) and ``Embed`` the mesh's embedder (``HashingEmbedder``). It is deterministic for a
given seed, does no I/O and never sleeps; it is *not* the simulator (simulations/ has the
real topology, link and fault models) and not the daemon.
"""
from __future__ import annotations

import hashlib
import heapq
import itertools
import random
from dataclasses import dataclass, field
from typing import Any, Callable

from p2pmoa.effects import Broadcast, CancelTimer, Deliver, Embed, Generate, PeerId, Send, SetTimer
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
    Refused,
    Started,
    TimerFired,
    UserQuery,
)


@dataclass
class _Node:
    proto: PeerProtocol
    generator: Any
    up: bool = True
    timers: dict = field(default_factory=dict)
    epoch: int = 0


class InMemoryMesh:
    """A deterministic in-memory network of peer machines.

    Args:
        embedder: the mesh's embedder (one space for everyone).
        latency_s: one-way delay of every frame, seconds (default 5 ms).
        loss: probability a frame is dropped (default 0), drawn from ``seed``.
        seed: seed of the loss draws.
        embed_s: virtual time an embedding takes (default 1 ms).
    """

    def __init__(self, embedder, *, latency_s: float = 0.005, loss: float = 0.0, seed: int = 0,
                 embed_s: float = 0.001):
        self.embedder = embedder
        self.latency_s = latency_s
        self.loss = loss
        self.rng = random.Random(seed)
        self.embed_s = embed_s
        self.now = 0.0
        self.nodes: dict[PeerId, _Node] = {}
        self._q: list = []
        self._seq = itertools.count()
        self.delivered: dict[tuple[PeerId, str], Deliver] = {}
        self.accepted: list[tuple[PeerId, str]] = []
        self.refused: list[tuple[PeerId, Refused]] = []
        self.failed: list[tuple[PeerId, Failed]] = []
        self.frames_sent = 0
        self.drop: Callable[[PeerId, PeerId, bytes], bool] | None = None
        self.tap: Callable[[PeerId, PeerId, bytes], None] | None = None

    # ---- topology

    def add(self, proto: PeerProtocol, generator, *, peer_events: bool = True) -> PeerId:
        """Add a running node, connected to every other node (``PeerUp`` both ways unless
        ``peer_events=False``, which saves O(n²) events in large meshes)."""
        me = proto.me
        self.nodes[me] = _Node(proto, generator)
        self._push(self.now, me, None, lambda: Started(now=self.now))
        for other in (self.nodes if peer_events else ()):
            if other != me:
                self._push(self.now, me, None, lambda o=other: PeerUp(o, now=self.now))
                self._push(self.now, other, None, lambda o=me: PeerUp(o, now=self.now))
        return me

    def crash(self, peer: PeerId) -> None:
        """Stop a node abruptly: pending timers and in-flight jobs are lost."""
        node = self.nodes[peer]
        node.up = False
        node.epoch += 1
        node.timers.clear()

    def restart(self, proto: PeerProtocol, generator) -> None:
        """Replace a crashed node by a fresh machine with the same identity."""
        old = self.nodes.get(proto.me)
        epoch = old.epoch + 1 if old else 0
        self.nodes[proto.me] = _Node(proto, generator, epoch=epoch)
        self._push(self.now, proto.me, None, lambda: Started(now=self.now))

    # ---- inputs

    def ask(self, peer: PeerId, query_id: str, prompt: str, method: str | None = None, *,
            memory: bool = True) -> None:
        self._push(self.now, peer, None,
                   lambda: UserQuery(query_id, prompt, method, now=self.now, memory=memory))

    def inject(self, src: PeerId, dst: PeerId, data: bytes, topic: str | None = None) -> None:
        """Deliver raw bytes to ``dst`` as if ``src`` had sent them (for hostile-input tests)."""
        self._push(self.now, dst, None, lambda: FrameIn(src, topic, data, now=self.now))

    # ---- loop

    def _push(self, t: float, peer: PeerId, epoch: int | None, make) -> None:
        node = self.nodes.get(peer)
        ep = node.epoch if node is not None and epoch is None else epoch
        heapq.heappush(self._q, (t, next(self._seq), peer, ep, make))

    def run(self, until_s: float = 120.0, max_events: int = 200_000) -> int:
        """Process events until the queue is empty, ``until_s`` or ``max_events``."""
        n = 0
        while self._q and n < max_events:
            t, _, peer, epoch, make = self._q[0]
            if t > until_s:
                break
            heapq.heappop(self._q)
            node = self.nodes.get(peer)
            if node is None or not node.up or node.epoch != epoch:
                continue
            self.now = max(self.now, t)
            ev = make()
            if ev is None:
                continue
            n += 1
            for eff in node.proto.handle(ev):
                self._execute(peer, node, eff)
        return n

    def _deliver_frame(self, src: PeerId, dst: PeerId, data: bytes, topic: str | None) -> None:
        self.frames_sent += 1
        if self.tap is not None:
            self.tap(src, dst, data)
        if self.drop is not None and self.drop(src, dst, data):
            return
        if self.loss and self.rng.random() < self.loss:
            return
        if dst not in self.nodes:
            return
        self._push(self.now + self.latency_s, dst, None,
                   lambda: FrameIn(src, topic, data, now=self.now))

    def _execute(self, peer: PeerId, node: _Node, eff) -> None:
        match eff:
            case Send(peer=dst, msg=data):
                self._deliver_frame(peer, dst, data, None)
            case Broadcast(topic=topic, msg=data):
                for dst in self.nodes:
                    if dst != peer:
                        self._deliver_frame(peer, dst, data, topic)
            case SetTimer(name=name, delay_s=d):
                token = next(self._seq)
                node.timers[name] = token

                def fire(name=name, token=token, node=node):
                    if node.timers.get(name) != token:
                        return None
                    del node.timers[name]
                    return TimerFired(name, now=self.now)

                self._push(self.now + d, peer, None, fire)
            case CancelTimer(name=name):
                node.timers.pop(name, None)
            case Generate(job_id=job, messages=msgs, params=params):
                try:
                    g = node.generator.generate(msgs, params)
                except Exception as exc:  # the stand-in may refuse a prompt
                    err = f"{type(exc).__name__}: {exc}"
                    self._push(self.now, peer, None,
                               lambda: GenerateFailed(job, err, now=self.now))
                    return
                self._push(self.now + max(0.01, g.llm_s), peer, None,
                           lambda: GenerateDone(job, g, now=self.now))
            case Embed(job_id=job, texts=texts):
                try:
                    v = self.embedder.embed(list(texts))
                except Exception as exc:
                    err = f"{type(exc).__name__}: {exc}"
                    self._push(self.now, peer, None, lambda: EmbedFailed(job, err, now=self.now))
                    return
                self._push(self.now + self.embed_s, peer, None,
                           lambda: EmbedDone(job, v, now=self.now))
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
