"""A hypothesis state machine over the PBFT cluster: hypothesis itself picks every step
(deliver, duplicate, drop, fire a timer early, a new client request), so a failing schedule
shrinks to a minimal one. Invariant after every step: safety. At the end the network turns
synchronous (GST) and every honest replica must decide every request."""
from __future__ import annotations

from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from consensus.testing import BEHAVIOURS, Cluster

INDEX = st.integers(0, 10**6)


class PbftSchedules(RuleBasedStateMachine):
    @initialize(f=st.integers(1, 2), behaviour=st.sampled_from(BEHAVIOURS),
                byzantine=st.integers(0, 2), seed=st.integers(0, 2**16))
    def setup(self, f, behaviour, byzantine, seed):
        ids = [f"m{i:02d}" for i in range(3 * f + 1)]
        byz = {m: behaviour for m in ids[:min(byzantine, f)]}  # the first primaries lie
        self.c = Cluster({m: 1 for m in ids}, byz, seed=seed, checkpoint_interval=2,
                         watermark_window=4)
        self.n = 0
        self.c.request_all([b"req-0"])

    @rule(i=INDEX)
    def deliver(self, i):
        self.c.deliver_at(i)

    @rule(i=INDEX)
    def duplicate(self, i):
        self.c.deliver_at(i, keep=True)

    @rule(i=INDEX)
    def drop(self, i):
        self.c.drop_at(i)

    @rule(i=INDEX)
    def fire_timer_early(self, i):
        self.c.fire_timer_at(i)

    @rule()
    def client_request(self):
        if self.n < 4:
            self.n += 1
            self.c.request_all([b"req-%d" % self.n])

    @invariant()
    def safe(self):
        assert self.c.violations() == []

    def teardown(self):
        res = self.c.run(gst_step=0, steps_max=100_000)
        assert self.c.violations() == []
        assert res.live, res


PbftSchedules.TestCase.settings = settings(
    max_examples=150, stateful_step_count=80, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
TestPbftSchedules = PbftSchedules.TestCase
