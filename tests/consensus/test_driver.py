"""The one virtual-time driver (consensus/driver.py): effects, adapters, timers, faults, order."""
from __future__ import annotations

import pytest

from consensus.driver import (Driver, DriverError, EventLimitExceeded, FifoServers, FullMesh,
                              FunctionAdapter)
from consensus.effects import MEMBERS, Broadcast, CancelTimer, Send, SetTimer


class Echo:
    """A machine with its own event types: ("msg", src, body, topic), ("timer", name), ("do", effects)."""

    def __init__(self):
        self.got = []

    def handle(self, ev):
        self.got.append(ev)
        return list(ev[1]) if ev[0] == "do" else []


def adapter(outputs=None):
    return FunctionAdapter(on_message=lambda src, msg, topic, now: ("msg", src, msg, topic, now),
                           on_timer=lambda name, now: ("timer", name, now),
                           on_output=lambda e, now: (outputs.append((e, now)) if outputs is not None else None))


def group(n=4, seed=0, **kw):
    d = Driver(seed, **kw)
    ms = {f"m{i}": Echo() for i in range(n)}
    for a, m in ms.items():
        d.add(a, m, adapter(), members=[o for o in ms if o != a])
    return d, ms


def msgs(m):
    return [e for e in m.got if e[0] == "msg"]


def test_members_broadcast_reaches_every_other_member_and_send_one_peer():
    d, ms = group(network=FullMesh(latency_s=0.5))
    d.dispatch(d.node("m0"), ("do", [Broadcast(MEMBERS, "all"), Send("m2", "one")]))
    d.run()
    assert msgs(ms["m0"]) == []
    assert [e[1:] for e in msgs(ms["m1"])] == [("m0", "all", None, 0.5)]
    assert [e[2] for e in msgs(ms["m2"])] == ["all", "one"]
    assert d.now == 0.5


def test_gossip_topic_goes_to_the_network_model_with_its_topic():
    d, ms = group()
    d.dispatch(d.node("m1"), ("do", [Broadcast("queries", "q")]))
    d.run()
    got = {a: [(e[1], e[2], e[3]) for e in msgs(m)] for a, m in ms.items()}
    assert got == {"m0": [("m1", "q", "queries")], "m1": [], "m2": [("m1", "q", "queries")],
                   "m3": [("m1", "q", "queries")]}


def test_timers_replace_cancel_and_fire_in_time_order():
    d, ms = group(n=1)
    n = d.node("m0")
    d.dispatch(n, ("do", [SetTimer("a", 5.0), SetTimer("a", 1.0), SetTimer("b", 2.0),
                          CancelTimer("b"), SetTimer("c", 0.5)]))
    d.run()
    assert [e for e in ms["m0"].got if e[0] == "timer"] == [("timer", "c", 0.5), ("timer", "a", 1.0)]
    assert d.timers_fired == 2


def test_domain_outputs_go_to_the_adapter_and_may_return_effects():
    d = Driver(0)
    out = []
    a, b = Echo(), Echo()
    d.add("a", a, FunctionAdapter(on_message=lambda *x: ("msg", *x), on_timer=lambda *x: None,
                                  on_output=lambda e, now: (out.append(e), [Send("b", e)])[1]))
    d.add("b", b, adapter())
    d.dispatch(d.node("a"), ("do", ["decided-7"]))
    d.run()
    assert out == ["decided-7"] and [e[2] for e in msgs(b)] == ["decided-7"]


def test_a_crashed_node_drops_messages_and_timers_and_a_recovered_one_gets_them_again():
    d, ms = group(n=2, network=FullMesh(latency_s=1.0))
    m0, m1 = d.node("m0"), d.node("m1")
    d.dispatch(m1, ("do", [SetTimer("t", 3.0)]))
    d.dispatch(m0, ("do", [Send("m1", "lost")]))
    d.crash(m1)
    d.run()
    assert ms["m1"].got == [("do", [SetTimer("t", 3.0)])]
    d.recover(m1)
    d.dispatch(m0, ("do", [Send("m1", "back")]))
    d.run()
    assert [e[2] for e in msgs(ms["m1"])] == ["back"]


def test_strict_epochs_lose_frames_in_flight_across_a_restart():
    d, ms = group(n=2, network=FullMesh(latency_s=1.0), strict_epochs=True)
    d.dispatch(d.node("m0"), ("do", [Send("m1", "old")]))
    fresh = Echo()
    d.replace(d.node("m1"), fresh, adapter())
    d.run()
    assert msgs(fresh) == [] and msgs(ms["m1"]) == []


def test_post_is_discarded_after_a_crash():
    d, ms = group(n=1)
    n = d.node("m0")
    d.post(1.0, n, lambda: ("job-done",))
    d.crash(n)
    d.recover(n)
    d.run()
    assert ms["m0"].got == []


def test_same_seed_same_order_and_draws():
    def run(seed):
        d, ms = group(seed=seed, network=FullMesh(latency_s=0.1, loss=0.3))
        for i, a in enumerate(ms):
            d.dispatch(d.node(a), ("do", [Broadcast(MEMBERS, i), Broadcast("t", -i)]))
        d.run()
        return [(a, [e[1:] for e in msgs(m)]) for a, m in ms.items()]

    assert run(3) == run(3)
    assert run(3) != run(4)


def test_fifo_servers_serve_one_job_at_a_time():
    d = Driver(0)
    n = d.add("a", Echo(), adapter())
    done = []
    srv = FifoServers(d, lambda node, job: 2.0, lambda node, job, s: done.append((job, d.now, s)),
                      buffer_max=2)
    assert srv.submit(n, "j1") and srv.submit(n, "j2") and srv.submit(n, "j3")
    assert not srv.submit(n, "j4") and srv.rejected == 1  # two waiting behind j1
    d.run()
    assert done == [("j1", 2.0, 2.0), ("j2", 4.0, 2.0), ("j3", 6.0, 2.0)]
    st = srv.statistics([n])[0]
    assert st["served"] == 3 and st["wait_mean_s"] == pytest.approx(2.0) and st["utilisation"] == 1.0


def test_misuse_is_a_clear_error():
    d, ms = group(n=2)
    with pytest.raises(DriverError):
        d.add("m0", Echo(), adapter())
    with pytest.raises(DriverError):
        d.node("nobody")
    loop = Driver(0, events_max=100)
    loop.add("x", Echo(), adapter(), members=["x2"])
    loop.add("x2", Echo(), FunctionAdapter(on_message=lambda *a: ("do", [Send("x", "ping")]),
                                           on_timer=lambda *a: None))
    loop.node("x").adapter = FunctionAdapter(on_message=lambda *a: ("do", [Send("x2", "pong")]),
                                             on_timer=lambda *a: None)
    loop.dispatch(loop.node("x"), ("do", [Send("x2", "go")]))
    with pytest.raises(EventLimitExceeded):
        loop.run()
