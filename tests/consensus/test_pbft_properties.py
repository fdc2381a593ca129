"""Hypothesis-driven PBFT safety and liveness on the seeded in-memory cluster.

The scheduler (consensus.testing.Cluster) reorders, drops and duplicates messages and fires
timers early until GST; up to f members (N = 3f + 1) behave arbitrarily: they equivocate,
propose garbage, stay silent, send for wrong views, forge certificates, or mix all of it.

Invariants:
* safety: no two honest members decide different values for one sequence number, no honest
  member decides twice or decides a value its validity predicate rejects, and no honest
  member is ever accused of equivocation;
* liveness: once drops stop (GST) every honest member decides every requested value.
"""
from __future__ import annotations

from hypothesis import HealthCheck, given, settings, strategies as st

from consensus.testing import BEHAVIOURS, Cluster, random_scenario

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=False)


@st.composite
def equal_weight_scenarios(draw):
    f = draw(st.integers(1, 3))
    n = 3 * f + 1
    ids = [f"m{i:02d}" for i in range(n)]
    k = draw(st.integers(0, f))
    byz_ids = draw(st.lists(st.sampled_from(ids), min_size=k, max_size=k, unique=True))
    behaviours = {m: draw(st.sampled_from(BEHAVIOURS)) for m in byz_ids}
    return dict(
        weights={m: 1 for m in ids}, byzantine=behaviours,
        seed=draw(st.integers(0, 2**32)),
        drop_p=draw(st.sampled_from([0.0, 0.1, 0.3])),
        dup_p=draw(st.sampled_from([0.0, 0.05, 0.2])),
        requests=draw(st.integers(1, 5)),
        gst=draw(st.integers(0, 2500)),
    )


def run(sc, steps_max=80_000):
    c = Cluster(sc["weights"], sc["byzantine"], seed=sc["seed"], drop_p=sc["drop_p"],
                dup_p=sc["dup_p"])
    c.request_all([b"client-%d" % i for i in range(sc["requests"])])
    res = c.run(gst_step=sc["gst"], steps_max=steps_max)
    return c, res


@settings(max_examples=120, **SETTINGS)
@given(equal_weight_scenarios())
def test_no_two_honest_replicas_decide_differently_and_all_decide_after_gst(sc):
    c, res = run(sc)
    assert c.violations() == []
    assert res.live, f"honest replicas did not all decide after GST: {res}"
    # Every honest replica holds the same log where logs overlap. (After view changes one
    # request can be ordered at two sequence numbers, as in PBFT; the executor skips the
    # second copy, deterministically, because the logs agree.)
    logs = list(c.decisions().values())
    for a in logs:
        for b in logs:
            assert all(a[s] == b[s] for s in a.keys() & b.keys())


@st.composite
def weighted_scenarios(draw):
    n = draw(st.integers(4, 8))
    ids = [f"m{i:02d}" for i in range(n)]
    weights = {m: draw(st.integers(1, 10)) for m in ids}
    total = sum(weights.values())
    order = draw(st.permutations(ids))
    byz, w = {}, 0
    for m in order:  # greedily add Byzantine members while their weight stays < W/3
        if 3 * (w + weights[m]) < total and draw(st.booleans()):
            byz[m] = draw(st.sampled_from(BEHAVIOURS))
            w += weights[m]
    return dict(weights=weights, byzantine=byz, seed=draw(st.integers(0, 2**32)),
                drop_p=draw(st.sampled_from([0.0, 0.1, 0.3])),
                dup_p=draw(st.sampled_from([0.0, 0.1])),
                requests=draw(st.integers(1, 4)), gst=draw(st.integers(0, 2000)))


@settings(max_examples=80, **SETTINGS)
@given(weighted_scenarios())
def test_unequal_weights_are_safe_and_live_while_byzantine_weight_is_below_a_third(sc):
    c, res = run(sc)
    assert 3 * c.byzantine_weight() < sum(sc["weights"].values())
    assert c.violations() == []
    assert res.live, f"no liveness after GST: {res}"


@settings(max_examples=15, **SETTINGS)
@given(st.integers(0, 2**32))
def test_the_reliability_entry_point_is_reproducible(seed):
    a = random_scenario(seed, f_max=2, requests_max=3)
    b = random_scenario(seed, f_max=2, requests_max=3)
    assert a == b
    assert a.violations == () and a.result.live


def test_the_checker_reports_a_planted_disagreement():
    c = Cluster.equal(1, seed=1)
    c.members["m00"].decisions[1] = b"x"
    c.members["m01"].decisions[1] = b"y"
    assert any("seq 1" in v for v in c.violations())


def test_silent_byzantine_primary_is_replaced():
    c = Cluster.equal(1, {"m00": "silent"}, seed=5, drop_p=0.0, dup_p=0.0)
    c.request_all([b"q"])
    res = c.run(gst_step=0)
    assert res.live and res.max_view >= 1
    assert all(d == {1: b"q"} for d in c.decisions().values())


def test_equivocating_primary_is_caught_and_replaced():
    c = Cluster.equal(1, {"m00": "equivocate"}, seed=2, drop_p=0.0, dup_p=0.0)
    c.request_all([b"q"])
    res = c.run(gst_step=0)
    assert res.live and not c.violations()
    assert {acc for _, acc in c.accused} <= {"m00"}


def test_long_log_with_checkpoints_under_faults_stays_safe():
    c = Cluster.equal(1, {"m02": "random"}, seed=11, drop_p=0.1, dup_p=0.05,
                      checkpoint_interval=4, watermark_window=8)
    c.request_all([b"r%d" % i for i in range(30)])
    res = c.run(gst_step=3000, steps_max=200_000)
    assert not c.violations() and res.live
    lows = [c.members[m].replica.low for m in c.honest]
    assert min(lows) >= 24  # the log was truncated several times


@settings(max_examples=40, **SETTINGS)
@given(st.integers(1, 2), st.sampled_from(BEHAVIOURS), st.integers(0, 2**32),
       st.sampled_from([0.0, 0.2]), st.integers(0, 600))
def test_one_shot_round_like_the_daemons_agrees_on_one_honest_answer(f, behaviour, seed,
                                                                      drop_p, gst):
    """Each member asks to order its *own* answer (seq_max=1), the primary is Byzantine:
    every honest member still decides the same single value, and it is a valid one."""
    ids = [f"m{i:02d}" for i in range(3 * f + 1)]
    c = Cluster({m: 1 for m in ids}, {"m00": behaviour}, seed=seed, drop_p=drop_p,
                seq_max=1)
    for m in ids:
        c.request_one(m, b"answer of " + m.encode())
    c.run(gst_step=gst, steps_max=60_000, until=lambda c: c.all_decided(1))
    assert c.violations() == []
    decided = {m: d.get(1) for m, d in c.decisions().items()}
    assert None not in decided.values(), decided
    assert len(set(decided.values())) == 1
    assert next(iter(decided.values())).startswith(b"answer of m")
