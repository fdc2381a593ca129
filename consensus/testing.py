"""A deterministic in-memory PBFT cluster with a hostile network and Byzantine members.

This is the fake the tests, the benchmarks and the reliability experiments share (in the
spirit of trio's ``MockClock``): everything is driven by one seeded ``random.Random``, so a
seed reproduces a run exactly, and a failing seed is a bug report.

Model:

* **Network**: every message in flight is a ``(sender, destination, message)`` triple. Before
  *GST* (global stabilisation time, counted in scheduler steps) the scheduler delivers
  messages in random order, drops them with probability ``drop_p``, duplicates them with
  probability ``dup_p`` and fires timers early. From GST on nothing is dropped, messages take
  zero virtual time and timers fire in deadline order: the partial-synchrony assumption under
  which PBFT must make progress.
* **Authentication**: with ``authenticate=True`` (default) every member signs with its own key
  (a keyed SHA-256 standing in for Ed25519) and every replica verifies outer and nested
  messages, so a Byzantine member can replay what it saw but not forge another member's
  message. With ``authenticate=False`` the harness only enforces that the outer sender is
  the real origin (what a signed envelope gives you).
* **Byzantine members** run an honest replica internally (so they know the protocol state)
  and corrupt what it sends according to a behaviour: ``silent``, ``equivocate``,
  ``garbage`` (invalid proposals, random digests), ``wrong_view``, ``forge`` (fabricated
  certificates, other members' names) or ``random`` (a mix, chosen per message).
* **Driver**: the replicas run on the one virtual-time driver (:class:`consensus.driver.Driver`,
  which the simulator and the protocol tests use too): it hands each replica its own events
  (``Receive``, ``TimerExpired``, ``Request``) and executes the effects it returns
  (``Broadcast(MEMBERS)`` = one send per other member). The cluster is the driver's network
  and clock model: a send goes into the adversary's in-flight pool, a timer into its timer
  table, and each scheduler step takes one of them out (before GST in an order the seeded
  adversary picks, since time is not trusted then).
* **Checks**: :meth:`Cluster.violations` lists safety violations (two honest members decide
  different values at one sequence number, an honest member decides twice or decides an
  invalid value, an honest member is accused of equivocation).

Typical use::

    c = Cluster.equal(f=1, byzantine={"m3": "equivocate"}, seed=7)
    c.request_all([b"a", b"b"])
    result = c.run(gst_step=500, steps_max=20_000)
    assert not c.violations() and result.live
"""
from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field, replace
from typing import Callable, Mapping, Optional

from .driver import Driver, FunctionAdapter, Node
from .pbft import (
    Checkpoint, Commit, Decided, EquivocationDetected, MemberId,
    NewView, PreparedCert, PrePrepare, Prepare, Receive, Replica, Request,
    StateTransferNeeded, TimerExpired, ViewChange, digest_of,
    signing_bytes,
)

BEHAVIOURS = ("silent", "equivocate", "garbage", "wrong_view", "forge", "random")
"""Byzantine behaviours the harness can play."""

GARBAGE_PREFIX = b"GARBAGE"


def harness_validity(value: bytes) -> bool:
    """The validity predicate the harness gives honest replicas: no value starting GARBAGE."""
    return not value.startswith(GARBAGE_PREFIX)


class HarnessError(ValueError):
    """A :class:`Cluster` was configured wrongly (unknown member or behaviour...)."""


@dataclass(frozen=True)
class RunResult:
    """How a :meth:`Cluster.run` ended."""

    steps: int
    live: bool
    """Every honest member decided every requested value."""
    delivered: int
    dropped: int
    duplicated: int
    timers_fired: int
    virtual_time_s: float
    max_view: int


class KeyedHashAuthStandIn:
    """Sign/verify hooks for tests and simulators: a keyed SHA-256 per member standing in
    for Ed25519 (every holder of this object can sign as anyone, so it only models members
    that do not share keys). ``sign_for(m)`` and ``verify`` plug into :class:`Replica`."""

    def __init__(self, seed: object = 0) -> None:
        self._seed = repr(seed).encode()

    def _key(self, m: str) -> bytes:
        return hashlib.sha256(self._seed + b"/" + m.encode()).digest()

    def sign_for(self, m: str) -> Callable[[bytes], bytes]:
        key = self._key(m)
        return lambda data: hashlib.sha256(key + data).digest()[:16]

    def verify(self, sender: str, data: bytes, sig: bytes) -> bool:
        return hashlib.sha256(self._key(sender) + data).digest()[:16] == sig

    def hooks(self, m: str) -> dict:
        """Keyword arguments for ``Replica(m, ..., **auth.hooks(m))``."""
        return {"sign": self.sign_for(m), "verify": self.verify}


@dataclass
class _Member:
    replica: Replica
    behaviour: Optional[str]  # None = honest
    decisions: dict[int, bytes] = field(default_factory=dict)


class Cluster:
    """An in-memory PBFT group under a seeded adversarial scheduler.

    Args:
        weights: member id -> integer weight.
        byzantine: member id -> behaviour (one of :data:`BEHAVIOURS`).
        seed: the only source of randomness.
        drop_p: probability a message is dropped before GST (default 0.1).
        dup_p: probability a delivered message is also kept in flight (default 0.05).
        timer_p: probability a pre-GST step fires a random timer (default 0.02).
        authenticate: sign and verify every message (default True).
        validity: the honest replicas' validity predicate (default :func:`harness_validity`).
        replica_kwargs: extra keyword arguments for every :class:`Replica`.
    """

    def __init__(
        self,
        weights: Mapping[str, int],
        byzantine: Mapping[str, str] = {},
        *,
        seed: int = 0,
        drop_p: float = 0.1,
        dup_p: float = 0.05,
        timer_p: float = 0.02,
        authenticate: bool = True,
        validity: Callable[[bytes], bool] = harness_validity,
        **replica_kwargs,
    ) -> None:
        for m, b in byzantine.items():
            if m not in weights:
                raise HarnessError(f"byzantine member {m!r} is not a member")
            if b not in BEHAVIOURS:
                raise HarnessError(f"unknown behaviour {b!r}; choose from {BEHAVIOURS}")
        self.driver = Driver(seed, network=self, timers=self)
        self.rng = self.driver.rng
        self.weights = {MemberId(m): w for m, w in weights.items()}
        self.drop_p, self.dup_p, self.timer_p = drop_p, dup_p, timer_p
        self.authenticate = authenticate
        self.validity = validity
        self._keys = {m: hashlib.sha256(f"{seed}/{m}".encode()).digest() for m in self.weights}
        kwargs = dict(view_timeout_s=1.0, checkpoint_interval=4, watermark_window=8)
        kwargs.update(replica_kwargs)
        self.members: dict[MemberId, _Member] = {}
        for m in sorted(self.weights):
            r = Replica(m, self.weights, validity=validity,
                        sign=self._signer(m) if authenticate else None,
                        verify=self._verify if authenticate else None,
                        unauthenticated=not authenticate, **kwargs)
            self.members[m] = _Member(r, byzantine.get(m))
        ids = list(self.members)
        self.nodes: dict[MemberId, Node] = {
            m: self.driver.add(m, x.replica, self._adapter(m),
                               members=[o for o in ids if o != m])
            for m, x in self.members.items()}
        self.honest = [m for m, x in self.members.items() if x.behaviour is None]
        self.byzantine = [m for m, x in self.members.items() if x.behaviour is not None]
        self.in_flight: list[tuple[MemberId, MemberId, object]] = []
        self.timers: dict[tuple[MemberId, str], float] = {}
        self.requested: list[bytes] = []
        self.evidence: list[EquivocationDetected] = []
        self.accused: list[tuple[MemberId, MemberId]] = []  # (reporter, accused)
        self.state_transfers: list[tuple[MemberId, StateTransferNeeded]] = []
        self._problems: list[str] = []
        self._seen: list[object] = []  # honest messages a Byzantine member could replay
        self.delivered = self.dropped = self.duplicated = self.timers_fired = 0

    @classmethod
    def equal(cls, f: int, byzantine: Mapping[str, str] = {}, **kw) -> "Cluster":
        """``N = 3f + 1`` members ``m0..`` of weight 1 (ids zero-padded so sorting is numeric)."""
        n = 3 * f + 1
        return cls({f"m{i:02d}": 1 for i in range(n)}, byzantine, **kw)

    # ------------------------------------------------------------ signatures

    def _signer(self, m: MemberId) -> Callable[[bytes], bytes]:
        key = self._keys[m]
        return lambda data: hashlib.sha256(key + data).digest()[:16]

    def _verify(self, sender: MemberId, data: bytes, sig: bytes) -> bool:
        key = self._keys.get(sender)
        return key is not None and hashlib.sha256(key + data).digest()[:16] == sig

    def _resign(self, m: MemberId, msg):
        if not self.authenticate:
            return msg
        msg = replace(msg, signature=b"")
        return replace(msg, signature=self._signer(m)(signing_bytes(msg)))

    # ------------------------------------------------------------ driving

    @property
    def now(self) -> float:
        """Virtual seconds: advanced by fired timers (and by delivery after GST in subclasses)."""
        return self.driver.now

    @now.setter
    def now(self, t: float) -> None:
        self.driver.now = t

    def _adapter(self, m: MemberId) -> FunctionAdapter:
        """How the driver speaks to member ``m``'s replica: PBFT's own event types."""
        return FunctionAdapter(on_message=lambda src, msg, topic, now: Receive(msg),
                               on_timer=lambda name, now: TimerExpired(name),
                               on_output=lambda e, now: self._output(m, e))

    def request_all(self, values) -> None:
        """Give every member (Byzantine ones too) each client request, reliably."""
        for v in values:
            self.requested.append(v)
            for m in self.members:
                self.driver.dispatch(self.nodes[m], Request(v))

    def request_one(self, member: str, value: bytes) -> None:
        """Give only ``member`` a request (the daemon's one-shot round: each member asks to
        order its own answer). Not counted by :meth:`live`; pass ``until`` to :meth:`run`."""
        self.driver.dispatch(self.nodes[MemberId(member)], Request(value))

    def all_decided(self, seq: int) -> bool:
        """True when every honest member decided ``seq``."""
        return all(seq in self.members[m].decisions for m in self.honest)

    def _apply(self, m: MemberId, effects) -> None:
        """Execute member ``m``'s effects (through the driver)."""
        self.driver.execute(self.nodes[m], effects)

    def _output(self, m: MemberId, e) -> None:
        """A replica's domain outputs: decisions and evidence are checked here."""
        member = self.members[m]
        match e:
            case Decided(seq=seq, value=value):
                if member.behaviour is None:
                    if seq in member.decisions:
                        self._problems.append(f"{m} decided seq {seq} twice")
                    member.decisions[seq] = value
                    if value and not self.validity(value):
                        self._problems.append(f"{m} decided invalid value at {seq}")
            case EquivocationDetected(member=acc):
                if member.behaviour is None:
                    self.evidence.append(e)
                    self.accused.append((m, acc))
                    if self.members[acc].behaviour is None:
                        self._problems.append(f"honest {acc} accused by {m}")
            case StateTransferNeeded():
                self.state_transfers.append((m, e))

    # ------------------------------------------------------------ the driver's network and
    # clock model (consensus.driver.Network / TimerModel): the adversary's pools

    def send(self, driver: Driver, src: Node, dst: Node, msg, topic) -> None:
        if dst is not src:
            self._send(src.addr, dst.addr, msg)

    def publish(self, driver: Driver, src: Node, topic: str, msg) -> None:
        raise HarnessError(f"{src.addr} published on gossip topic {topic!r}: PBFT has none")

    def set_timer(self, driver: Driver, node: Node, name, delay_s: float) -> None:
        self.timers[(node.addr, name)] = self.now + delay_s

    def cancel_timer(self, driver: Driver, node: Node, name) -> None:
        self.timers.pop((node.addr, name), None)

    def _send(self, src: MemberId, dst: MemberId, msg) -> None:
        b = self.members[src].behaviour
        if b is None:
            if len(self._seen) < 4096:
                self._seen.append(msg)
            self.in_flight.append((src, dst, msg))
            return
        for out in self._corrupt(src, dst, msg, b):
            if getattr(out, "sender", None) != src and not self.authenticate:
                continue  # an envelope check would catch the wrong sender
            self.in_flight.append((src, dst, out))

    def _corrupt(self, src: MemberId, dst: MemberId, msg, behaviour: str) -> list:
        rng = self.rng
        if behaviour == "random":
            behaviour = rng.choice(("honest", "silent", "equivocate", "garbage", "wrong_view",
                                    "forge", "replay"))
        if behaviour == "honest":
            return [msg]
        if behaviour == "silent":
            return []
        if behaviour == "replay":
            out = [msg]
            if self._seen:
                out.append(rng.choice(self._seen))
            return out
        if behaviour == "equivocate":
            # a different but valid-looking variant for half the members
            if int(dst[-2:] if dst[-2:].isdigit() else hash(dst)) % 2 == 0:
                return [msg]
            return [self._variant(src, msg, valid=True)]
        if behaviour == "garbage":
            return [self._variant(src, msg, valid=False)]
        if behaviour == "wrong_view":
            if hasattr(msg, "view"):
                return [self._resign(src, replace(msg, view=max(0, msg.view + rng.choice((-2, -1, 1, 2, 5)))))]
            if isinstance(msg, ViewChange):
                return [msg, self._resign(src, replace(msg, new_view=msg.new_view + rng.randint(1, 3)))]
            return [msg]
        if behaviour == "forge":
            return [msg] + self._forgeries(src, dst, msg)
        raise HarnessError(behaviour)

    def _variant(self, src: MemberId, msg, *, valid: bool):
        rng = self.rng
        value = (b"" if valid else GARBAGE_PREFIX) + b"byz-%d" % rng.randrange(1 << 30)
        match msg:
            case PrePrepare():
                return self._resign(src, replace(msg, value=value, digest=digest_of(value)))
            case Prepare() | Commit():
                return self._resign(src, replace(msg, digest=digest_of(value)))
            case Checkpoint():
                return self._resign(src, replace(msg, state_digest=digest_of(value)))
            case ViewChange():
                return self._resign(src, replace(msg, prepared=()))
        return msg

    def _forgeries(self, src: MemberId, dst: MemberId, msg) -> list:
        """Messages claiming to be from others, or carrying fabricated certificates."""
        rng = self.rng
        victim = rng.choice(self.honest) if self.honest else src
        out = []
        match msg:
            case Prepare() | Commit():
                fake = replace(msg, sender=victim, digest=digest_of(b"forged"))
                out.append(self._resign(src, fake))  # signed with the wrong key
            case ViewChange(new_view=v):
                value = b"forged-%d" % rng.randrange(1 << 20)
                d = digest_of(value)
                seq = msg.stable_seq + 1
                fv = max(0, v - 1)
                r = self.members[src].replica
                pp = self._resign(src, PrePrepare(fv, seq, d, value, r.primary(fv)))
                preps = tuple(self._resign(src, Prepare(fv, seq, d, m))
                              for m in self.members if m != r.primary(fv))
                out.append(self._resign(src, replace(msg, prepared=(PreparedCert(pp, preps),))))
            case NewView():
                out.append(self._resign(src, replace(msg, pre_prepares=())))
        return out

    def _deliver(self, src: MemberId, dst: MemberId, msg) -> None:
        self.delivered += 1
        self.driver.deliver(self.nodes[dst], src, msg, None)

    def _fire(self, key: tuple[MemberId, str]) -> None:
        deadline = self.timers.pop(key)
        self.now = max(self.now, deadline)
        self.timers_fired += 1
        m, name = key
        self.driver.fire_timer(self.nodes[m], name)

    # ------------------------------------------------------------ single steps (for
    # hypothesis' RuleBasedStateMachine or hand-written schedules)

    def deliver_at(self, i: int, *, keep: bool = False) -> None:
        """Deliver in-flight message ``i % len`` (``keep``: leave a copy in flight)."""
        if not self.in_flight:
            return
        i %= len(self.in_flight)
        src, dst, msg = self.in_flight[i] if keep else self.in_flight.pop(i)
        if keep:
            self.duplicated += 1
        self._deliver(src, dst, msg)

    def drop_at(self, i: int) -> None:
        """Lose in-flight message ``i % len``."""
        if self.in_flight:
            self.in_flight.pop(i % len(self.in_flight))
            self.dropped += 1

    def fire_timer_at(self, i: int) -> None:
        """Fire pending timer ``i % len`` (in sorted order) now, whatever its deadline."""
        if self.timers:
            keys = sorted(self.timers)
            self._fire(keys[i % len(keys)])

    def live(self) -> bool:
        """True when every honest member decided every requested value."""
        want = set(self.requested)
        return all(want <= set(self.members[m].decisions.values()) for m in self.honest)

    def _step_before_gst(self) -> None:
        """One scheduler step before GST: fire a random timer (always, if nothing is in
        flight), or take a random in-flight message and drop it (``drop_p``), deliver a copy
        and keep it (``dup_p``), or deliver it. Draws from ``self.rng`` in a fixed order, so a
        seed replays byte-identically."""
        rng = self.rng
        if self.timers and (not self.in_flight or rng.random() < self.timer_p):
            self._fire(rng.choice(sorted(self.timers)))
            return
        if not self.in_flight:
            return
        i = rng.randrange(len(self.in_flight))
        src, dst, msg = self.in_flight[i]
        if rng.random() < self.drop_p:
            self.in_flight[i] = self.in_flight[-1]
            self.in_flight.pop()
            self.dropped += 1
            return
        if rng.random() < self.dup_p:
            self.duplicated += 1
        else:
            self.in_flight[i] = self.in_flight[-1]
            self.in_flight.pop()
        self._deliver(src, dst, msg)

    def run(self, *, gst_step: int = 1000, steps_max: int = 50_000,
            until: Optional[Callable[["Cluster"], bool]] = None) -> RunResult:
        """Run the scheduler until every honest member decided everything, the system is
        quiet after GST, or ``steps_max`` steps passed.

        Args:
            gst_step: the step from which messages are no longer dropped and timers respect
                their deadlines.
            steps_max: bound on scheduler steps (each delivers one message or fires a timer).
            until: stop condition (default: :meth:`live`).
        """
        rng = self.rng
        done = until if until is not None else Cluster.live
        step = 0
        while step < steps_max and not done(self):
            step += 1
            if step < gst_step:
                self._step_before_gst()
            else:
                if self.in_flight:
                    i = rng.randrange(len(self.in_flight))
                    self.in_flight[i], self.in_flight[-1] = self.in_flight[-1], self.in_flight[i]
                    src, dst, msg = self.in_flight.pop()
                    self._deliver(src, dst, msg)
                elif self.timers:
                    self._fire(min(self.timers, key=lambda k: (self.timers[k], k)))
                else:
                    break  # quiet: nothing can happen any more
        return RunResult(
            steps=step, live=self.live(), delivered=self.delivered, dropped=self.dropped,
            duplicated=self.duplicated, timers_fired=self.timers_fired,
            virtual_time_s=self.now,
            max_view=max(self.members[m].replica.view for m in self.honest) if self.honest else 0,
        )

    # ------------------------------------------------------------ checks

    def decisions(self) -> dict[MemberId, dict[int, bytes]]:
        """Honest members' decisions: member -> seq -> value."""
        return {m: dict(self.members[m].decisions) for m in self.honest}

    def violations(self) -> list[str]:
        """Every safety violation seen so far (empty when the run was safe)."""
        out = list(self._problems)
        by_seq: dict[int, dict[bytes, list[MemberId]]] = {}
        for m in self.honest:
            for seq, v in self.members[m].decisions.items():
                by_seq.setdefault(seq, {}).setdefault(v, []).append(m)
        for seq, vals in sorted(by_seq.items()):
            if len(vals) > 1:
                out.append(f"seq {seq}: honest members decided different values {vals!r:.300}")
        return out

    def byzantine_weight(self) -> int:
        return sum(self.weights[m] for m in self.byzantine)


@dataclass(frozen=True)
class ScenarioOutcome:
    seed: int
    f: int
    behaviours: tuple[str, ...]
    violations: tuple[str, ...]
    result: RunResult


def random_scenario(seed: int, *, f_max: int = 3, requests_max: int = 6,
                    steps_max: int = 60_000, weighted: bool = False) -> ScenarioOutcome:
    """One seeded scenario: ``N = 3f+1`` with ``f`` in ``1..f_max``, up to ``f`` Byzantine
    members with random behaviours, random drop/duplication rates and GST.

    With ``weighted=True`` members get integer weights 1..10 and Byzantine members are
    added while their weight stays below a third of the total (their number may exceed f).

    The reliability experiments run this for thousands of seeds; a non-empty
    ``violations`` or ``not result.live`` is a bug.
    """
    rng = random.Random(seed)
    f = rng.randint(1, f_max)
    n = 3 * f + 1
    ids = [f"m{i:02d}" for i in range(n)]
    if weighted:
        weights = {m: rng.randint(1, 10) for m in ids}
        total, bw, byz = sum(weights.values()), 0, {}
        for m in rng.sample(ids, n):
            if 3 * (bw + weights[m]) < total and rng.random() < 0.5:
                byz[m] = rng.choice(BEHAVIOURS)
                bw += weights[m]
    else:
        weights = {m: 1 for m in ids}
        nbyz = rng.randint(0, f)
        byz = {m: rng.choice(BEHAVIOURS) for m in rng.sample(ids, nbyz)}
    c = Cluster(weights, byz, seed=rng.randrange(1 << 30),
                drop_p=rng.choice((0.0, 0.1, 0.3)), dup_p=rng.choice((0.0, 0.05, 0.2)))
    c.request_all([b"req-%d-%d" % (seed, i) for i in range(rng.randint(1, requests_max))])
    res = c.run(gst_step=rng.randint(0, 3000), steps_max=steps_max)
    return ScenarioOutcome(seed, f, tuple(byz[m] for m in sorted(byz)), tuple(c.violations()), res)
