"""The discrete-event engine: gossip, links, partitions, crashes, timers, LLM servers, determinism.

The node machine here records the peer protocol's own events (``p2pmoa.protocol``), which the
engine's adapters hand to every node: the engine has no event types of its own."""
from __future__ import annotations

import networkx as nx
import pytest

from p2pmoa.effects import Broadcast, CancelTimer, ChatMessage, Generate, SetTimer
from simulations.agents import SyntheticAgent
from p2pmoa.protocol import FrameIn, GenerateDone, Started, TimerFired
from simulations.engine import Engine, ServiceModel
from simulations.machines import ProtocolEvents
from simulations.errors import SimulationError
from simulations.network import (Crash, LinkModel, NetworkConditions, Partition, TopologySpec,
                                 build_topology)


class Told:
    """An input telling a :class:`Recorder` which effects to return."""

    def __init__(self, effects):
        self.effects = list(effects)


class Recorder(ProtocolEvents):
    """A node machine (its own adapter) that returns the effects it is told to and records
    the events it gets: ``FrameIn``, ``TimerFired``, ``GenerateDone``, ``Started``."""

    def __init__(self):
        super().__init__()
        self.machine = self
        self.events = []
        self.recovered_at = []

    def on_input(self, payload, now):
        return (Told(payload),)

    def on_recover(self, now):
        self.recovered_at.append(now)
        return super().on_recover(now)

    def handle(self, ev):
        self.events.append(ev)
        if isinstance(ev, Told):
            return ev.effects
        return []

    def received(self):
        return [e for e in self.events if isinstance(e, FrameIn)]


def mesh(n=60, seed=1, **cond):
    g = build_topology(TopologySpec(kind="regular", n=n, degree=4), seed)
    ms = [Recorder() for _ in range(n)]
    return g, ms, Engine(g, ms, seed=seed, conditions=NetworkConditions(**cond) if cond else None)


def test_flood_reaches_every_node_once_at_O_Nk_cost():
    g, ms, eng = mesh()
    eng.inject(0.0, 0, [Broadcast("t", "hello")])
    st = eng.run()
    assert [len(m.received()) for m in ms] == [0] + [1] * 59
    assert 59 <= st.gossip_hops <= 60 * 3 + 1  # N(k-1)+1
    assert all(r.topic == "t" for m in ms for r in m.received())


def test_partition_blocks_until_it_heals():
    g = build_topology(TopologySpec(kind="regular", n=40, degree=4), 2)
    part = Partition.halves(g, 0.0, 5.0)
    ms = [Recorder() for _ in range(40)]
    eng = Engine(g, ms, seed=1, conditions=NetworkConditions(partitions=(part,)))
    eng.inject(1.0, 0, [Broadcast("t", "during")])
    eng.inject(6.0, 0, [Broadcast("t", "after")])
    eng.run()
    got = {(v, r.data) for v, m in enumerate(ms) for r in m.received()}
    side = part.group_of(0)
    for v in range(1, 40):
        assert ((v, "during") in got) == (part.group_of(v) == side)
        assert (v, "after") in got


def test_crashed_node_gets_nothing_and_is_told_when_it_recovers():
    g, ms, eng = mesh(crashes=(Crash(5, 0.5, 3.0),))
    eng.inject(1.0, 0, [Broadcast("t", "x")])
    eng.run()
    assert ms[5].received() == []
    assert ms[5].recovered_at == [3.0]
    assert any(isinstance(e, Started) and e.now == 3.0 for e in ms[5].events)


def test_total_loss_delivers_nothing_and_is_counted():
    g, ms, eng = mesh(link=LinkModel(loss_p=1.0))
    eng.inject(0.0, 0, [Broadcast("t", "x")])
    st = eng.run()
    assert st.hops_delivered == 0 and st.hops_lost == st.hops_sent == 4


def test_timers_replace_and_cancel():
    g = nx.path_graph(2)
    ms = [Recorder(), Recorder()]
    eng = Engine(g, ms, seed=0)
    eng.inject(0.0, 0, [SetTimer("a", 5.0), SetTimer("a", 1.0), SetTimer("b", 2.0), CancelTimer("b")])
    eng.run()
    fired = [(e.name, e.now) for e in ms[0].events if isinstance(e, TimerFired)]
    assert fired == [("a", 1.0)]


def test_llm_server_is_fifo_with_the_node_service_time():
    g = nx.path_graph(2)
    ms = [Recorder(), Recorder()]
    job = lambda i: Generate(f"j{i}", (ChatMessage("user", "q"),))  # noqa: E731
    eng = Engine(g, ms, seed=0, agent=SyntheticAgent(0.0), service=ServiceModel(alpha_s=[1.5, 0.1], distribution="const"))
    eng.inject(0.0, 0, [job(1), job(2), job(3)])
    eng.run()
    done = [(e.job_id, e.now) for e in ms[0].events if isinstance(e, GenerateDone)]
    assert done == [("j1", 1.5), ("j2", 3.0), ("j3", 4.5)]
    q = eng.queue_statistics()[0]
    assert q["served"] == 3 and q["wait_mean_s"] == pytest.approx(1.5)


def test_bad_inputs_raise_simulation_errors():
    g = nx.path_graph(2)
    with pytest.raises(SimulationError):
        Engine(g, [Recorder()], seed=0)
    eng = Engine(g, [Recorder(), Recorder()], seed=0)
    with pytest.raises(SimulationError):
        eng.inject(0.0, 7, None)


def test_same_seed_same_run_different_seed_different_latencies():
    def run(seed):
        g, ms, eng = mesh(seed=1, link=LinkModel(loss_p=0.1, dup_p=0.1, reorder_p=0.1))
        eng.rng.seed(seed)
        for i in range(5):
            eng.inject(i * 0.1, i, [Broadcast("t", i)])
        st = eng.run()
        return st, [[(round(r.now, 12), r.data) for r in m.received()] for m in ms]

    assert run(3) == run(3)
    assert run(3) != run(4)


def test_every_node_is_started():
    g, ms, eng = mesh(n=10)
    eng.start()
    eng.run()
    assert all(isinstance(m.events[0], Started) for m in ms)
