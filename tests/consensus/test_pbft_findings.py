"""Regression tests for the library findings of the adversarial review (issue 12, finding 5).

Each test failed on the code before the fix (commit 8339254)."""
from __future__ import annotations

import pytest

from consensus.pbft import (
    Commit, CommitProof, PbftConfigError, PrePrepare, Prepare, Receive, Replica, Request,
    TimerExpired, digest_of, primary_order,
)
from consensus.testing import Cluster, KeyedHashAuthStandIn

from .test_pbft import group, pump, request_all

W4 = {"m0": 1, "m1": 1, "m2": 1, "m3": 1}


def test_replica_without_hooks_is_refused_unless_explicitly_unauthenticated():
    with pytest.raises(PbftConfigError, match="sign/verify"):
        Replica("m0", W4)
    with pytest.raises(PbftConfigError):
        Replica("m0", W4, sign=lambda b: b"")  # one hook without the other


def test_unauthenticated_replica_refuses_a_forged_commit_proof():
    """m3 fabricates commits of m0, m1, m2 for its own value. Before the fix m1 decided
    it while the others decided the primary's value: two honest decisions differ."""
    reps = {m: Replica(m, W4, seq_max=1, unauthenticated=True) for m in W4}
    forged = b"m3's value"
    d = digest_of(forged)
    proof = CommitProof(1, 0, d, forged, tuple(Commit(0, 1, d, m) for m in ("m0", "m1", "m2")),
                        "m3")
    reps["m1"].handle(Receive(proof))
    assert reps["m1"].decided_value(1) is None
    assert reps["m1"].statistics().refused_unauthenticated == 1
    decided, _ = pump(reps, {m: reps[m].handle(Request(b"honest")) for m in ("m0", "m1", "m2")})
    assert {d[1] for d in decided.values()} == {b"honest"}


def test_one_member_cannot_fill_the_future_view_buffer():
    r = Replica("m1", W4, unauthenticated=True, buffer_max=4096)
    d = digest_of(b"x")
    for seq in range(1, 5000):
        r.handle(Receive(Prepare(1, 1 + seq % 60, d, "m3")))  # m3 floods view 1
    flooded = r.statistics().buffered
    assert flooded <= 4096 // 4
    r.handle(Receive(Prepare(1, 1, d, "m2")))  # an honest member's message for view 1
    assert r.statistics().buffered == flooded + 1


def _in_view_one(me: str = "m1", **kw) -> Replica:
    r = Replica(me, W4, unauthenticated=True, **kw)
    r.handle(Request(b"pending"))
    r.handle(TimerExpired(r.timer.name))  # the view-0 primary is suspected: view 1
    assert r.view == 1
    return r


def test_old_view_pre_prepares_are_not_stored():
    r = _in_view_one()
    before = r.statistics().values_held_bytes
    for i in range(20):
        v = bytes([i]) * 100_000
        r.handle(Receive(PrePrepare(0, 1 + i % 8, digest_of(v), v, "m2")))  # not view-0 primary
        v2 = bytes([i, 1]) * 50_000
        r.handle(Receive(PrePrepare(0, 1 + i % 8, digest_of(v2), v2, "m0")))  # nobody waits
    assert r.statistics().values_held_bytes == before


def test_old_view_pre_prepare_still_completes_a_commit_quorum_waiting_for_its_value():
    r = _in_view_one("m3")
    v = b"decided in view 0"
    d = digest_of(v)
    for m in ("m0", "m1", "m2"):
        r.handle(Receive(Commit(0, 1, d, m)))
    assert r.decided_value(1) is None  # the value is unknown
    out = r.handle(Receive(PrePrepare(0, 1, d, v, "m0")))
    assert r.decided_value(1) == v and out


def test_replica_cut_off_for_many_checkpoints_still_delivers_every_request():
    """m03 hears nothing while the others order 40 requests (10 checkpoints of 4, window 8);
    before the fix it forgot the skipped sequence numbers below one window and kept the
    requests decided there pending forever."""
    c = Cluster.equal(1, seed=5, drop_p=0.0, dup_p=0.0, checkpoint_interval=4,
                      watermark_window=8)
    values = [b"req-%d" % i for i in range(40)]
    c.request_all(values)
    cut = "m03"
    lost = 0
    while c.in_flight:  # deliver everything except to/from m03; no timers
        src, dst, msg = c.in_flight.pop(0)
        if cut in (src, dst):
            lost += 1
            continue
        c._deliver(src, dst, msg)
    others = [m for m in c.honest if m != cut]
    assert all(set(values) <= set(c.members[m].decisions.values()) for m in others)
    assert lost and not c.members[cut].decisions
    res = c.run(gst_step=0, steps_max=200_000)
    assert not c.violations()
    assert res.live, (f"{cut} delivered {len(c.members[cut].decisions)} of 40; pending "
                      f"{c.members[cut].replica.statistics().pending_requests}")


@pytest.mark.parametrize("kw", [
    {"weights": [("m0", 1)]}, {"weights": "m0"}, {"seq_max": 1.5}, {"seq_max": True},
    {"pending_max": -1}, {"buffer_max": -5}, {"value_bytes_max": -1}, {"validity": None},
    {"sign": "not callable", "verify": lambda *a: True}, {"view_timeout_s": float("inf")},
    {"weights": {"m0": 1, "x" * 1_000_000: 1}}, {"checkpoint_interval": 2.0},
])
def test_bad_constructor_arguments_raise_typed_errors(kw):
    args = {"weights": {"m0": 1, "m1": 1}, "unauthenticated": True}
    if "sign" in kw:
        del args["unauthenticated"]
    args.update(kw)
    weights = args.pop("weights")
    with pytest.raises(PbftConfigError):
        Replica("m0", weights, **args)


def test_a_zero_weight_member_is_never_primary():
    w = {"a": 0, "b": 1, "c": 1, "d": 1}
    r = Replica("b", w, unauthenticated=True)
    assert all(r.primary(v) != "a" for v in range(8))


def test_primary_order_from_a_seed_is_not_grindable_by_sort_order():
    """A key whose id sorts first is view-0 primary of every sorted-order group, but of
    about 1/N of the seeded ones."""
    honest = [f"peer-{i:02d}" for i in range(4)]
    ground = "!!!ground"  # sorts before every honest id
    members = {m: 1 for m in honest + [ground]}
    assert primary_order(members)[0] == ground
    rounds = 2000
    hits = sum(primary_order(members, b"query-%d" % k)[0] == ground for k in range(rounds))
    assert abs(hits / rounds - 1 / 5) < 0.05
    auth = KeyedHashAuthStandIn(1)
    r = Replica(ground, members, order_seed=b"query-7", **auth.hooks(ground))
    assert r.primary(0) == primary_order(members, b"query-7")[0]
