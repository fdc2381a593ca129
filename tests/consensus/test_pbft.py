"""PBFT replica behaviour, driven by hand or through the in-memory cluster."""
from __future__ import annotations

from collections import deque

import pytest
from hypothesis import given, settings, strategies as st

from consensus.pbft import (
    Broadcast, Checkpoint, Commit, CommitProof, Decided, EquivocationDetected,
    MalformedMessage, NewView, PbftConfigError, PreparedCert, PrePrepare, Prepare, Receive,
    Replica, Request, Send, SetTimer, CancelTimer, TimerExpired, ViewChange, decode,
    digest_of, encode, signing_bytes, with_signature,
)
from consensus.testing import Cluster, KeyedHashAuthStandIn

AUTH = KeyedHashAuthStandIn("test_pbft")
U = {"unauthenticated": True}  # hand-built unsigned messages; no proofs involved


def signed(msg):
    """A hand-built message signed by its sender with the group's stand-in key."""
    return with_signature(msg, AUTH.sign_for(msg.sender)(signing_bytes(msg)))

IDS = ["a", "b", "c", "d"]


def group(n=4, weights=None, **kw):
    ids = [f"m{i}" for i in range(n)]
    w = weights or {m: 1 for m in ids}
    return {m: Replica(m, w, **AUTH.hooks(m), **kw) for m in w}


def pump(reps, effects_by_member, *, drop=lambda src, dst, msg: False, rounds_max=100_000):
    """Deliver every message FIFO until quiet; return decisions and all effects seen."""
    q = deque()
    seen = []

    def emit(src, effects):
        for e in effects:
            seen.append((src, e))
            if isinstance(e, Broadcast):
                for dst in reps:
                    if dst != src:
                        q.append((src, dst, e.msg))
            elif isinstance(e, Send):
                q.append((src, e.peer, e.msg))

    for m, effs in effects_by_member.items():
        emit(m, effs)
    n = 0
    while q and n < rounds_max:
        n += 1
        src, dst, msg = q.popleft()
        if drop(src, dst, msg):
            continue
        emit(dst, reps[dst].handle(Receive(msg)))
    decided = {}
    for m, e in seen:
        if isinstance(e, Decided):
            decided.setdefault(m, {})[e.seq] = e.value
    return decided, seen


def request_all(reps, value):
    return {m: r.handle(Request(value)) for m, r in reps.items()}


def test_four_replicas_decide_the_primarys_value_in_view_zero():
    reps = group()
    decided, seen = pump(reps, request_all(reps, b"answer"))
    assert decided == {m: {1: b"answer"} for m in reps}
    # normal case: 3 pre-prepares + 3*3 prepares + 4*3 commits delivered
    sends = sum(1 for _, e in seen if isinstance(e, Broadcast))
    assert sends == 1 + 3 + 4
    # timers started for the pending request were stopped once it was decided
    started = {e.name for _, e in seen if isinstance(e, SetTimer)}
    stopped = {e.name for _, e in seen if isinstance(e, CancelTimer)}
    assert started and started <= stopped


def test_quorum_threshold_is_more_than_two_thirds_of_weight():
    r = Replica("a", {"a": 1, "b": 1, "c": 1, "d": 1}, **U)
    assert not r.is_quorum(2) and r.is_quorum(3)
    r = Replica("a", {"a": 5, "b": 3, "c": 2, "d": 2}, **U)  # W = 12
    assert not r.is_quorum(8) and r.is_quorum(9)
    assert not r.is_weak(4) and r.is_weak(5)


@given(st.lists(st.integers(0, 50), min_size=1, max_size=12).filter(lambda w: sum(w) > 0))
def test_any_two_quorums_overlap_in_more_than_a_third(ws):
    weights = {f"m{i}": w for i, w in enumerate(ws)}
    r = Replica("m0", weights, **U)
    total = sum(ws)
    q = next(w for w in range(total + 1) if r.is_quorum(w))  # the smallest quorum weight
    assert all(r.is_quorum(w) for w in range(q, total + 1))
    assert 3 * q > 2 * total and 3 * (q - 1) <= 2 * total
    # two quorums of minimal weight overlap in at least 2q - W > W/3
    assert 3 * (2 * q - total) > total


def test_a_one_shot_round_decides_and_then_goes_quiet():
    reps = group(seq_max=1)
    decided, _ = pump(reps, request_all(reps, b"first"))
    assert all(d == {1: b"first"} for d in decided.values())
    # a second request is not ordered and starts no timer
    effs = {m: r.handle(Request(b"second")) for m, r in reps.items()}
    assert all(e == [] for e in effs.values())


def test_duplicate_requests_are_ordered_once():
    reps = group()
    decided, _ = pump(reps, request_all(reps, b"x"))
    again, _ = pump(reps, request_all(reps, b"x"))
    assert again == {}
    assert all(d == {1: b"x"} for d in decided.values())


def test_messages_from_non_members_are_ignored_and_counted():
    r = Replica("m0", {"m0": 1, "m1": 1, "m2": 1, "m3": 1}, **U)
    out = r.handle(Receive(PrePrepare(0, 1, digest_of(b"v"), b"v", "mallory")))
    assert out == []
    assert r.statistics().ignored_non_member == 1


@given(st.one_of(st.none(), st.text(max_size=3), st.floats(), st.lists(st.integers(), max_size=2)),
       st.sampled_from(["view", "seq", "digest", "value"]))
def test_hand_built_messages_with_wrong_field_types_are_ignored_not_fatal(bad, field):
    r = Replica("m1", {"m0": 1, "m1": 1, "m2": 1, "m3": 1}, **U)
    fields = dict(view=0, seq=1, digest=digest_of(b"v"), value=b"v", sender="m0")
    fields[field] = bad
    r.handle(Receive(PrePrepare(**fields)))
    assert r.statistics().ignored_invalid + r.statistics().ignored_stale >= 1
    # and the replica still works
    out = r.handle(Receive(PrePrepare(0, 1, digest_of(b"ok"), b"ok", "m0")))
    assert any(isinstance(e, Broadcast) and isinstance(e.msg, Prepare) for e in out)


def test_garbage_from_the_primary_is_voted_down_and_replaced():
    valid = lambda v: not v.startswith(b"BAD")
    reps = group(validity=valid)
    primary = reps["m0"]
    # the primary proposes an invalid value; backups must not prepare it but change view
    pp = signed(PrePrepare(0, 1, digest_of(b"BAD answer"), b"BAD answer", "m0"))
    effects = {m: reps[m].handle(Request(b"good answer")) for m in ["m1", "m2", "m3"]}
    for m in ["m1", "m2", "m3"]:
        effects[m] += reps[m].handle(Receive(pp))
    for m in ["m1", "m2", "m3"]:
        kinds = [type(e.msg).__name__ for e in effects[m] if isinstance(e, Broadcast)]
        assert "Prepare" not in kinds and "ViewChange" in kinds
    primary.handle(Request(b"good answer"))
    decided, _ = pump(reps, effects)
    assert {m: d.get(1) for m, d in decided.items()} == {m: b"good answer" for m in
                                                           ["m0", "m1", "m2", "m3"]}
    assert all(r.view == 1 for r in reps.values())
    assert reps["m2"].statistics().invalid_proposals == 1


def test_equivocating_primary_is_reported_with_both_messages():
    reps = group()
    b = reps["m1"]
    p1 = signed(PrePrepare(0, 1, digest_of(b"one"), b"one", "m0"))
    p2 = signed(PrePrepare(0, 1, digest_of(b"two"), b"two", "m0"))
    b.handle(Request(b"one"))
    b.handle(Receive(p1))
    out = b.handle(Receive(p2))
    ev = [e for e in out if isinstance(e, EquivocationDetected)]
    assert ev == [EquivocationDetected("m0", p1, p2)]
    # and it is evidence against the primary: the backup starts a view change
    assert any(isinstance(e, Broadcast) and isinstance(e.msg, ViewChange) for e in out)


def test_equivocating_backup_votes_are_reported():
    r = group()["m1"]
    a = signed(Prepare(0, 1, digest_of(b"x"), "m2"))
    b = signed(Prepare(0, 1, digest_of(b"y"), "m2"))
    r.handle(Receive(a))
    out = r.handle(Receive(b))
    assert [e for e in out if isinstance(e, EquivocationDetected)] == [
        EquivocationDetected("m2", a, b)]


def test_a_value_decided_in_one_view_survives_the_view_change():
    """m0 (primary) and m1 decide; m2 and m3 lose all commits. The view change must
    re-propose the same value at the same sequence number, never another one."""
    reps = group()
    lost = lambda src, dst, msg: isinstance(msg, Commit) and dst in ("m2", "m3")
    decided, _ = pump(reps, request_all(reps, b"v1"), drop=lost)
    assert decided == {"m0": {1: b"v1"}, "m1": {1: b"v1"}}
    # m2 and m3 still wait for v1; a different client value arrives at the new primary
    reps["m1"].handle(Request(b"other"))
    effects = {}
    for m in ("m2", "m3"):
        timers = [e for e in reps[m].handle(Request(b"other")) if isinstance(e, SetTimer)]
        name = reps[m].timer.name
        effects[m] = reps[m].handle(TimerExpired(name))
    decided2, _ = pump(reps, effects)
    for m in ("m2", "m3"):
        assert decided2[m][1] == b"v1"
    # nobody ever decides anything but v1 at seq 1
    for m, d in decided2.items():
        assert d.get(1, b"v1") == b"v1"


def test_checkpoints_truncate_the_log_and_bound_memory():
    reps = group(checkpoint_interval=4, watermark_window=8)
    for i in range(40):
        pump(reps, request_all(reps, b"req-%d" % i))
    for r in reps.values():
        st_ = r.statistics()
        assert st_.decided == 40
        assert st_.low_watermark == 40 and st_.last_executed == 40
        assert len(r.log.slots) <= 8  # only the window above the stable checkpoint
    digests = {r.statistics().state_digest for r in reps.values()}
    assert len(digests) == 1


def test_primary_stops_at_the_high_watermark_until_a_checkpoint_is_stable():
    reps = group(checkpoint_interval=4, watermark_window=4)
    p = reps["m0"]
    out = []
    for i in range(6):
        out += p.handle(Request(b"r%d" % i))
    pps = [e.msg for e in out if isinstance(e, Broadcast) and isinstance(e.msg, PrePrepare)]
    assert [x.seq for x in pps] == [1, 2, 3, 4]


def test_unequal_weights_need_more_than_two_thirds_of_weight():
    weights = {"zbig": 5, "s1": 1, "s2": 1, "s3": 1, "s4": 1}  # W = 9, quorum > 6
    reps = {m: Replica(m, weights, **U) for m in weights}
    assert reps["s1"].primary(0) == "s1"  # a small member leads view 0
    # without "zbig" the four small members (4 of 9: a majority of members, not of weight)
    # cannot decide
    silent = lambda src, dst, msg: src == "zbig" or dst == "zbig"
    effects = {m: r.handle(Request(b"v")) for m, r in reps.items() if m != "zbig"}
    decided, seen = pump(reps, effects, drop=silent)
    assert decided == {}
    assert any(isinstance(e, Broadcast) and isinstance(e.msg, Prepare) for _, e in seen)
    # with it they can
    reps = {m: Replica(m, weights, **U) for m in weights}
    decided, _ = pump(reps, request_all(reps, b"v"))
    assert all(d == {1: b"v"} for d in decided.values()) and len(decided) == 5


def test_bad_configuration_raises_typed_errors():
    with pytest.raises(PbftConfigError):
        Replica("x", {"a": 1}, **U)
    with pytest.raises(PbftConfigError):
        Replica("a", {"a": 0}, **U)
    with pytest.raises(PbftConfigError):
        Replica("a", {"a": -1, "b": 3}, **U)
    with pytest.raises(PbftConfigError):
        Replica("a", {"a": 1}, checkpoint_interval=8, watermark_window=4, **U)


def test_forged_certificate_in_a_view_change_is_rejected():
    c = Cluster.equal(1, seed=3)
    r = c.members["m01"].replica
    value = b"forged"
    pp = PrePrepare(0, 1, digest_of(value), value, "m00")  # not signed by m00
    preps = tuple(Prepare(0, 1, digest_of(value), m) for m in ("m02", "m03"))
    vc = c._resign("m03", ViewChange(1, 0, (PreparedCert(pp, preps),), "m03"))
    before = r.statistics().ignored_invalid
    r.handle(Receive(vc))
    assert r.statistics().ignored_invalid == before + 1
    assert 1 not in r._votes.by_view


# ---------------------------------------------------------------- codec

digests = st.binary(min_size=32, max_size=32)
ids = st.text(min_size=1, max_size=12)
ints = st.integers(0, 2**63 - 1)
sigs = st.binary(max_size=64)
pps = st.builds(PrePrepare, ints, ints, digests, st.binary(max_size=64), ids, sigs)
preps = st.builds(Prepare, ints, ints, digests, ids, sigs)
commits = st.builds(Commit, ints, ints, digests, ids, sigs)
cks = st.builds(Checkpoint, ints, digests, ids, sigs)
certs = st.builds(PreparedCert, pps, st.lists(preps, max_size=3).map(tuple))
vcs = st.builds(ViewChange, ints, ints, st.lists(certs, max_size=2).map(tuple), ids,
                st.lists(cks, max_size=2).map(tuple), st.lists(ints, max_size=3).map(tuple), sigs)
nvs = st.builds(NewView, ints, st.lists(vcs, max_size=2).map(tuple),
                st.lists(pps, max_size=2).map(tuple), ids, sigs)
cps = st.builds(CommitProof, ints, ints, digests, st.binary(max_size=32),
                st.lists(commits, max_size=3).map(tuple), ids, sigs)
messages = st.one_of(pps, preps, commits, cks, vcs, nvs, cps)


@given(messages)
def test_encode_decode_round_trips_including_signatures(msg):
    back = decode(encode(msg))
    assert back == msg
    assert encode(back) == encode(msg)  # signatures survive too


@given(messages, st.data())
def test_decode_rejects_any_corrupted_field_with_a_typed_error(msg, data):
    obj = encode(msg)
    key = data.draw(st.sampled_from(sorted(obj)))
    bad = data.draw(st.one_of(st.none(), st.floats(), st.text(max_size=3), st.just(-1),
                              st.just(2**64), st.binary(min_size=33, max_size=40)))
    obj[key] = bad
    try:
        out = decode(obj)
    except MalformedMessage:
        return
    # the replacement happened to be valid for that field (e.g. text for the sender)
    assert type(out) is type(msg)


@given(st.one_of(st.none(), st.integers(), st.binary(), st.lists(st.integers()),
                 st.dictionaries(st.text(max_size=3), st.integers(), max_size=5)))
def test_decode_rejects_garbage(obj):
    with pytest.raises(MalformedMessage):
        decode(obj)


def test_decode_enforces_the_value_size_limit():
    msg = PrePrepare(0, 1, digest_of(b"x" * 100), b"x" * 100, "a")
    with pytest.raises(MalformedMessage):
        decode(encode(msg), value_bytes_max=50)
