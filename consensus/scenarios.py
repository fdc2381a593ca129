"""Seeded Byzantine scenarios for the reliability sweep (issue 6), on the production PBFT code.

:class:`consensus.testing.Cluster` already gives a seeded adversarial scheduler, signed
messages and the behaviours ``silent``, ``equivocate``, ``garbage``, ``wrong_view``, ``forge``
and ``random``. This module adds what the reliability sweep needs on top of it, without
touching the harness:

* more behaviours: ``crash`` (honest until a seeded step, then gone: no sends, no receives,
  no timers), ``twins`` (one key, two honest replicas: each twin talks to one half of the
  honest members and receives the requests in a different order, so when it is primary it
  proposes different values to the two halves and it prepares/commits both; the Twins method
  of Bano et al.), ``watermark`` (every normal-case message is followed by signed copies whose
  sequence number lies outside the receiver's watermarks: 0, -1, just above the high mark,
  ``2**63-1``) and ``stale`` (replays messages of earlier views it has seen);
* a network partition into two halves that heals at GST, on top of the harness's message loss;
* a fixed description of a scenario (:class:`Scenario`) derived only from a seed, and an
  :class:`Outcome` with a :meth:`Outcome.fingerprint` (SHA-256 of every honest decision and
  every counter), so a failing seed replays byte-identically.

Checks (from :meth:`Cluster.violations`): two honest members decide different values at one
sequence number, an honest member decides twice or decides an invalid value, an honest member
is accused of equivocation. Liveness: every honest member decides every request, and the
number of view changes honest members go through after the network heals is recorded
(``views_after_heal``) so the sweep can bound it.

Nothing here reads a clock or the global ``random``: the seed is the only input.
"""
from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, replace
from typing import Mapping, Optional

from .driver import Driver, FunctionAdapter, Node
from .pbft import (Checkpoint, Commit, MemberId, PrePrepare, Prepare, Replica, Request)
from .testing import BEHAVIOURS as HARNESS_BEHAVIOURS
from .testing import Cluster, RunResult, harness_validity

EXTRA_BEHAVIOURS = ("crash", "twins", "watermark", "stale")
"""Behaviours this module adds to :data:`consensus.testing.BEHAVIOURS`."""

BEHAVIOURS = ("silent", "crash", "equivocate", "twins", "garbage", "wrong_view", "stale",
              "watermark", "forge", "random")
"""Every behaviour the sweep draws from."""

INT_MAX = (1 << 63) - 1
VIEW_CHANGES_AFTER_HEAL_MAX = 12
"""Liveness bound the sweep checks: view changes honest members go through after the network
heals (10,000 seeds measured at most 6; docs/reliability.md has the distribution)."""
_TWIN_B = "\x00twinB:"  # timer-name prefix of the second twin
_B_TAG = "\x00B"  # suffix on the sender of messages in flight from the second twin


class ScenarioError(ValueError):
    """A scenario was described wrongly (unknown behaviour, bad partition...)."""


class ScenarioCluster(Cluster):
    """A :class:`Cluster` with the extra behaviours, a healing partition and crash faults.

    Args:
        weights: member id -> integer weight.
        byzantine: member id -> behaviour (one of :data:`BEHAVIOURS`).
        seed: the only source of randomness.
        partition: the members on one side of a partition (the rest form the other side);
            messages across it are lost until the heal step. Empty: no partition.
        crash_step: scheduler step at which ``crash`` members stop (default 200).
        hop_s: virtual seconds one delivered message takes after GST (default 1 ms): the
            known delay bound of partial synchrony, so timers still fire under heavy traffic.
        **kw: passed to :class:`Cluster` (``drop_p``, ``dup_p``, replica keyword arguments).
    """

    def __init__(self, weights: Mapping[str, int], byzantine: Mapping[str, str] = {}, *,
                 seed: int = 0, partition: frozenset[str] = frozenset(),
                 crash_step: int = 200, hop_s: float = 0.001, **kw) -> None:
        for m, b in byzantine.items():
            if b not in BEHAVIOURS:
                raise ScenarioError(f"unknown behaviour {b!r}; choose from {BEHAVIOURS}")
            if m not in weights:
                raise ScenarioError(f"byzantine member {m!r} is not a member")
        if partition and not set(partition) <= set(weights):
            raise ScenarioError("partition names a non-member")
        base = {m: (b if b in HARNESS_BEHAVIOURS else "silent") for m, b in byzantine.items()}
        replica_kw = {k: v for k, v in kw.items()
                      if k not in ("drop_p", "dup_p", "timer_p", "authenticate", "validity")}
        super().__init__(weights, base, seed=seed, **kw)
        for m, b in byzantine.items():
            self.members[MemberId(m)].behaviour = b
        self.partition = frozenset(MemberId(m) for m in partition)
        self.healed = not self.partition
        self.crash_step = crash_step
        self.crashed: set[MemberId] = set()
        self.step = 0
        # Twins: split the honest members into two seeded halves; each twin talks to one.
        honest = list(self.honest)
        self.rng.shuffle(honest)
        self.side_a = frozenset(honest[: len(honest) // 2])
        self.twins: dict[MemberId, Replica] = {}
        self._twin_nodes: dict[MemberId, Node] = {}
        self._twin_of: dict[str, MemberId] = {}  # driver address of twin B -> its member
        kwargs = dict(view_timeout_s=1.0, checkpoint_interval=4, watermark_window=8)
        kwargs.update(replica_kw)
        self._replica_kw = kwargs
        ids = list(self.members)
        for m, x in self.members.items():
            if x.behaviour == "twins":
                self.twins[m] = Replica(
                    m, self.weights, validity=self.validity,
                    sign=self._signer(m) if self.authenticate else None,
                    verify=self._verify if self.authenticate else None,
                    unauthenticated=not self.authenticate, **kwargs)
                # twin B is a second node of the driver under a tagged address; what it sends
                # reaches only side B (and the Byzantine members), its timers are tagged
                addr = MemberId(m + _B_TAG)
                self._twin_of[addr] = m
                self._twin_nodes[m] = self.driver.add(
                    addr, self.twins[m],
                    FunctionAdapter(on_message=self._adapter(m).on_message,
                                    on_timer=self._adapter(m).on_timer),
                    members=[o for o in ids if o != m])
        self.lost_to_partition = 0
        self.hop_s = hop_s
        self.in_flight_max = 0

    # ------------------------------------------------------------ driving

    def request_all(self, values) -> None:
        """Like :meth:`Cluster.request_all`; twin B gets the requests in reverse order."""
        values = list(values)
        super().request_all(values)
        for m in self.twins:
            for v in reversed(values):
                self.driver.dispatch(self._twin_nodes[m], Request(v))

    def _side(self, m: MemberId) -> str:
        """The twin side of an honest member."""
        return "A" if m in self.side_a else "B"

    def _apply_twin_b(self, m: MemberId, effects) -> None:
        """Execute twin B's effects (a Byzantine twin's decisions and evidence are not checked)."""
        self.driver.execute(self._twin_nodes[m], effects)

    def send(self, driver: Driver, src: Node, dst: Node, msg, topic) -> None:
        m = self._twin_of.get(src.addr)
        if m is None:
            super().send(driver, src, dst, msg, topic)
        elif dst.addr != m and dst.addr in self.members and (
                dst.addr in self.byzantine or self._side(dst.addr) == "B"):
            self.in_flight.append((src.addr, dst.addr, msg))

    def set_timer(self, driver: Driver, node: Node, name, delay_s: float) -> None:
        m = self._twin_of.get(node.addr)
        if m is None:
            super().set_timer(driver, node, name, delay_s)
        else:
            self.timers[(m, _TWIN_B + name)] = self.now + delay_s

    def cancel_timer(self, driver: Driver, node: Node, name) -> None:
        m = self._twin_of.get(node.addr)
        if m is None:
            super().cancel_timer(driver, node, name)
        else:
            self.timers.pop((m, _TWIN_B + name), None)

    def _send(self, src: MemberId, dst: MemberId, msg) -> None:
        if src in self.crashed:
            return
        super()._send(src, dst, msg)

    def _corrupt(self, src: MemberId, dst: MemberId, msg, behaviour: str) -> list:
        rng = self.rng
        if behaviour == "crash":
            return [msg]  # honest until it stops (see _send/_deliver)
        if behaviour == "twins":  # the main replica is twin A: it talks to side A
            return [msg] if (dst in self.byzantine or dst in self.side_a) else []
        if behaviour == "watermark":
            out = [msg]
            if isinstance(msg, (PrePrepare, Prepare, Commit, Checkpoint)):
                high = self.members[src].replica.high
                for seq in (0, -1, high + 1, high + rng.randint(2, 1000), INT_MAX):
                    out.append(self._resign(src, replace(msg, seq=seq)))
            return out
        if behaviour == "stale":
            out = [msg]
            old = [m for m in self._seen
                   if getattr(m, "view", None) is not None
                   and getattr(msg, "view", 1 << 62) > m.view]
            if old:
                out.append(rng.choice(old))
            return out
        return super()._corrupt(src, dst, msg, behaviour)

    def _deliver(self, src: MemberId, dst: MemberId, msg) -> None:
        # which twin sent it: "A", "B", or "AB" (anyone else: non-twin Byzantines reach both)
        if src.endswith(_B_TAG):
            src, side = MemberId(src[: -len(_B_TAG)]), "B"
        elif src in self.twins:
            side = "A"
        elif src in self.byzantine:
            side = "AB"
        else:
            side = self._side(src)
        if dst in self.crashed:
            self.dropped += 1
            return
        if not self.healed and ((src in self.partition) != (dst in self.partition)):
            self.lost_to_partition += 1
            return
        twin = self.twins.get(dst)
        if twin is None:
            super()._deliver(src, dst, msg)
            return
        # one key, two replicas: each twin hears only its own side
        if "A" in side:
            super()._deliver(src, dst, msg)
        if "B" in side:
            self.delivered += 1
            self.driver.deliver(self._twin_nodes[dst], src, msg, None)

    def _fire(self, key) -> None:
        m, name = key
        if m in self.crashed:
            self.timers.pop(key, None)
            return
        if name.startswith(_TWIN_B):
            deadline = self.timers.pop(key)
            self.now = max(self.now, deadline)
            self.timers_fired += 1
            self.driver.fire_timer(self._twin_nodes[m], name[len(_TWIN_B):])
            return
        super()._fire(key)

    def _crash_due(self) -> None:
        if self.step >= self.crash_step:
            for m in self.byzantine:
                if self.members[m].behaviour == "crash" and m not in self.crashed:
                    self.crashed.add(m)
                    for k in [k for k in self.timers if k[0] == m]:
                        del self.timers[k]

    def honest_views(self) -> dict[MemberId, int]:
        return {m: self.members[m].replica.view for m in self.honest}

    def run(self, *, gst_step: int = 1000, steps_max: int = 50_000) -> tuple[RunResult, int]:
        """Run like :meth:`Cluster.run`; the partition heals at ``gst_step``.

        Returns ``(RunResult, views_at_heal)`` where ``views_at_heal`` is the highest honest
        view when the network healed (so ``max_view - views_at_heal`` counts view changes
        needed after healing).
        """
        rng = self.rng
        views_at_heal: Optional[int] = None
        self.step = 0
        while self.step < steps_max and not self.live():
            self.step += 1
            self._crash_due()
            if self.step >= gst_step and views_at_heal is None:
                self.healed = True
                views_at_heal = max(self.honest_views().values(), default=0)
            if self.step < gst_step:
                self._step_before_gst()
            else:
                # after GST every message takes ``hop_s`` of virtual time, so timers keep
                # firing even when traffic never stops (bounded delay, partial synchrony)
                due = [k for k, t in self.timers.items() if t <= self.now]
                if due:
                    self._fire(min(due, key=lambda k: (self.timers[k], k)))
                    continue
                self.in_flight_max = max(self.in_flight_max, len(self.in_flight))
                if self.in_flight:
                    self.now += self.hop_s
                    i = rng.randrange(len(self.in_flight))
                    self.in_flight[i], self.in_flight[-1] = self.in_flight[-1], self.in_flight[i]
                    src, dst, msg = self.in_flight.pop()
                    self._deliver(src, dst, msg)
                elif self.timers:
                    self._fire(min(self.timers, key=lambda k: (self.timers[k], k)))
                else:
                    break
        if views_at_heal is None:
            views_at_heal = max(self.honest_views().values(), default=0)
        res = RunResult(
            steps=self.step, live=self.live(), delivered=self.delivered, dropped=self.dropped,
            duplicated=self.duplicated, timers_fired=self.timers_fired,
            virtual_time_s=self.now,
            max_view=max(self.honest_views().values(), default=0))
        return res, views_at_heal


# ---------------------------------------------------------------------------- scenarios

SIZES = (4, 7, 10, 13)
LOSSES = (0.0, 0.05, 0.20)


@dataclass(frozen=True)
class Scenario:
    """Everything that defines one run; :func:`scenario_from_seed` derives it from a seed.

    ``weights`` and ``byzantine`` are sorted tuples so the scenario prints and compares
    deterministically.
    """

    seed: int
    weights: tuple[tuple[str, int], ...]
    byzantine: tuple[tuple[str, str], ...]
    loss: float
    partition: tuple[str, ...]
    requests: int
    gst_step: int
    steps_max: int

    @property
    def n(self) -> int:
        return len(self.weights)

    @property
    def byzantine_share(self) -> float:
        w = dict(self.weights)
        return sum(w[m] for m, _ in self.byzantine) / sum(w.values())

    def describe(self) -> str:
        b = ",".join(f"{m}:{x}" for m, x in self.byzantine) or "-"
        return (f"seed={self.seed} N={self.n} byz={b} share={self.byzantine_share:.2f} "
                f"loss={self.loss:.2f} partition={'yes' if self.partition else 'no'} "
                f"requests={self.requests} gst={self.gst_step}")


@dataclass(frozen=True)
class Outcome:
    """What one scenario did. ``violations`` must be empty; ``live`` should be True."""

    scenario: Scenario
    violations: tuple[str, ...]
    live: bool
    steps: int
    views_after_heal: int
    max_view: int
    decisions: tuple[tuple[str, tuple[tuple[int, bytes], ...]], ...]
    counters: tuple[int, ...]
    in_flight_max: int = 0
    """Most messages in flight at once after GST (message amplification shows here)."""

    def fingerprint(self) -> str:
        """SHA-256 over decisions, violations and counters: equal iff the run replayed."""
        h = hashlib.sha256()
        h.update(repr((self.scenario, self.violations, self.live, self.steps,
                       self.views_after_heal, self.max_view, self.decisions,
                       self.counters, self.in_flight_max)).encode())
        return h.hexdigest()


def scenario_from_seed(seed: int, *, n: Optional[int] = None, behaviour: Optional[str] = None,
                       loss: Optional[float] = None, partition: Optional[bool] = None,
                       byzantine_count: Optional[int] = None, weighted: bool = False,
                       byzantine_share_max: float = 0.30, share_over: Optional[float] = None,
                       steps_max: int = 40_000) -> Scenario:
    """Derive a scenario from ``seed``; any keyword fixes that dimension instead.

    Args:
        seed: the only input.
        n: group size (default: one of :data:`SIZES`).
        behaviour: the Byzantine behaviour of every Byzantine member (default: one per member
            from :data:`BEHAVIOURS`).
        loss: message loss before GST (default: one of :data:`LOSSES`).
        partition: partition into halves until GST (default: half the seeds).
        byzantine_count: how many Byzantine members (default ``f = (N-1)//3``; pass ``f+1``
            to go beyond the bound).
        weighted: random integer weights 1..10 instead of 1; Byzantine members are picked
            so their share of the weight stays at most ``byzantine_share_max`` (unless
            ``byzantine_count`` forces more).
        byzantine_share_max: the weight share cap for weighted scenarios (default 0.30).
        share_over: instead, add Byzantine members until their weight share exceeds this
            (pass 1/3 to go beyond the bound with weighted votes).
        steps_max: scheduler steps before the run is declared not live.
    """
    rng = random.Random(seed)
    n = n if n is not None else rng.choice(SIZES)
    f = (n - 1) // 3
    ids = [f"m{i:02d}" for i in range(n)]
    weights = {m: (rng.randint(1, 10) if weighted else 1) for m in ids}
    k = f if byzantine_count is None else byzantine_count
    # worst case for liveness half the time: the primaries of the first views are Byzantine
    order = ids if rng.random() < 0.5 else rng.sample(ids, n)
    total = sum(weights.values())
    chosen: list[str] = []
    for m in order:
        share = sum(weights[x] for x in chosen) / total
        if share_over is not None:
            if share > share_over:
                break
        elif weighted and byzantine_count is None:
            # as many Byzantine members as fit under the weight cap (may exceed f)
            if share + weights[m] / total > byzantine_share_max:
                continue
        elif len(chosen) >= k:
            break
        chosen.append(m)
    byz = {m: (behaviour or rng.choice(BEHAVIOURS)) for m in chosen}
    loss = loss if loss is not None else rng.choice(LOSSES)
    part = partition if partition is not None else rng.random() < 0.5
    members = list(ids)
    rng.shuffle(members)
    side = tuple(sorted(members[: n // 2])) if part else ()
    return Scenario(seed=seed, weights=tuple(sorted(weights.items())),
                    byzantine=tuple(sorted(byz.items())), loss=loss, partition=side,
                    requests=rng.randint(2, 5), gst_step=rng.randint(200, 2500),
                    steps_max=steps_max)


def run_scenario(sc: Scenario) -> Outcome:
    """Run one scenario on the production :class:`~consensus.pbft.Replica` code."""
    rng = random.Random(sc.seed ^ 0x5EED)
    c = ScenarioCluster(dict(sc.weights), dict(sc.byzantine), seed=rng.randrange(1 << 30),
                        partition=frozenset(sc.partition), drop_p=sc.loss,
                        dup_p=rng.choice((0.0, 0.05)),
                        crash_step=rng.randint(0, sc.gst_step))
    c.request_all([b"req-%d-%d" % (sc.seed, i) for i in range(sc.requests)])
    res, at_heal = c.run(gst_step=sc.gst_step, steps_max=sc.steps_max)
    decisions = tuple((m, tuple(sorted(d.items()))) for m, d in sorted(c.decisions().items()))
    counters = (res.delivered, res.dropped, res.duplicated, res.timers_fired,
                c.lost_to_partition, len(c.evidence))
    return Outcome(scenario=sc, violations=tuple(c.violations()), live=res.live,
                   steps=res.steps, views_after_heal=max(0, res.max_view - at_heal),
                   max_view=res.max_view, decisions=decisions, counters=counters,
                   in_flight_max=c.in_flight_max)


def run_seed(seed: int, **kw) -> Outcome:
    """``run_scenario(scenario_from_seed(seed, **kw))``: the replay entry point."""
    return run_scenario(scenario_from_seed(seed, **kw))


__all__ = ["VIEW_CHANGES_AFTER_HEAL_MAX", "BEHAVIOURS", "EXTRA_BEHAVIOURS", "LOSSES", "Outcome", "SIZES", "Scenario",
           "ScenarioCluster", "ScenarioError", "harness_validity", "run_scenario", "run_seed",
           "scenario_from_seed"]
