"""Issue 10: the typed contract between the API and the protocol, internal errors, the
per-originator cap on member rounds, and proposals without a self-embedding."""
from __future__ import annotations

import dataclasses

import pytest

from p2pmoa.effects import Broadcast, Deliver, Embed, Failed, Generate, Send, Usage
from p2pmoa.llm import StandInGenerator
from p2pmoa.identity import decode_envelope
from p2pmoa.messages import QueryAnnounce, decode_body
from p2pmoa.protocol import PeerDown, UserQuery
from p2pmoa.testing import make_mesh

Q = "Name three primary colours and say why painters mix them."
LONG = " ".join(f"word{i}" for i in range(200))  # a stand-in answer far longer than 16 tokens


def _record(mesh, ids, rewrite=None):
    """Wrap every node's handle(): keep each node's effects; ``rewrite`` may change the
    UserQuery the test mesh builds (it has no field for generation parameters)."""
    seen = {pid: [] for pid in ids}
    for pid in ids:
        proto = mesh.nodes[pid].proto
        orig = proto.handle

        def handle(ev, orig=orig, pid=pid):
            if rewrite is not None and isinstance(ev, UserQuery):
                ev = rewrite(ev)
            out = orig(ev)
            seen[pid].extend(out)
            return out
        proto.handle = handle
    return seen


def test_max_tokens_16_reaches_every_proposer_through_the_signed_announce():
    # a stand-in "model" that would talk for 200 words but stops at the max_tokens it is given
    gens = {i: StandInGenerator(f"m{i}", reply=lambda m, p: " ".join(LONG.split()[:p.max_tokens]))
            for i in range(3)}
    mesh, ids = make_mesh(3, method="pbft", generators=gens)
    seen = _record(mesh, ids, lambda ev: dataclasses.replace(ev, max_tokens=16, temperature=0.1,
                                                             seed=42, deadline_s=5.0))
    mesh.ask(ids[0], "q1", Q)
    mesh.run()
    out = mesh.delivered[(ids[0], "q1")]
    generates = {pid: [e for e in effs if isinstance(e, Generate)] for pid, effs in seen.items()}
    assert all(len(g) == 1 for g in generates.values()), generates  # every node answered once
    assert {g[0].params.max_tokens for g in generates.values()} == {16}
    assert {g[0].params.temperature for g in generates.values()} == {0.1}
    # every proposal stopped at 16 tokens; the signed announce carried the parameters
    assert out.trace["n_proposals"] == 3
    assert [p["completion_tokens"] for p in out.trace["proposals"]] == [16, 16, 16]
    ann = next(e for e in seen[ids[0]] if type(e).__name__ == "Broadcast")
    a = decode_body("announce", decode_envelope(ann.msg).body)
    assert isinstance(a, QueryAnnounce) and (a.max_tokens, a.temperature, a.seed) == (16, 0.1, 42)
    assert a.deadline_s == 5.0


def test_parameters_are_clamped_to_the_nodes_limits_and_defaults_apply():
    mesh, ids = make_mesh(3, method="vote")
    limit = mesh.nodes[ids[0]].proto.cfg.gen_params.max_tokens
    seen = _record(mesh, ids, lambda ev: dataclasses.replace(
        ev, max_tokens=10 * limit, temperature=9.0, deadline_s=10_000.0))
    mesh.ask(ids[0], "q1", Q)
    mesh.run()
    assert (ids[0], "q1") in mesh.delivered
    gens = [e for effs in seen.values() for e in effs if isinstance(e, Generate)]
    assert gens and {g.params.max_tokens for g in gens} == {limit}
    assert {g.params.temperature for g in gens} == {2.0}


def test_bad_parameter_types_are_refused_not_raised():
    mesh, ids = make_mesh(2)
    proto = mesh.nodes[ids[0]].proto
    out = proto.handle(UserQuery("q1", Q, now=0.0, max_tokens="many"))
    assert [type(e).__name__ for e in out] == ["Refused"] and out[0].reason == "invalid_params"


def test_deliver_carries_a_typed_result_with_the_chosen_answers_usage():
    mesh, ids = make_mesh(4, method="pbft")
    mesh.ask(ids[0], "q1", Q)
    mesh.run()
    d = mesh.delivered[(ids[0], "q1")]
    assert isinstance(d, Deliver) and isinstance(d.usage, Usage)
    r = d.result
    assert r.answer == d.answer and r.trace is d.trace
    chosen = next(p for p in d.trace["proposals"] if p["peer"] == d.trace["decision"]["proposer"])
    assert r.usage.completion_tokens == chosen["completion_tokens"] > 0
    assert r.usage.prompt_tokens > 0 and r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_proposers_do_not_embed_their_own_answer():
    mesh, ids = make_mesh(4, method="pbft")
    seen = _record(mesh, ids)
    mesh.ask(ids[0], "q1", Q)
    mesh.run()
    assert (ids[0], "q1") in mesh.delivered
    for pid, effs in seen.items():
        embeds = [e for e in effs if isinstance(e, Embed)]
        # one Embed per node: the round's candidates, as a member; none of its own answer
        assert [len(e.texts) for e in embeds] == [4], (pid, embeds)


# ---------------------------------------------------------------- internal errors


def _break_round_start(proto):
    def boom(s, o, at_deadline=False):
        s.out.append(Send("someone", b"half-done"))  # an effect emitted before the bug
        raise RuntimeError("a bug in the round start")
    proto._start_round = boom


def test_an_internal_error_raises_in_strict_mode():
    mesh, ids = make_mesh(3, method="pbft")
    _break_round_start(mesh.nodes[ids[0]].proto)
    mesh.ask(ids[0], "q1", Q)
    with pytest.raises(RuntimeError, match="a bug in the round start"):
        mesh.run()


def test_without_strict_an_internal_error_fails_only_its_query_with_no_partial_effects():
    mesh, ids = make_mesh(3, method="pbft", strict=False)
    proto = mesh.nodes[ids[0]].proto
    seen = _record(mesh, ids[:1])
    real_start = proto._start_round
    _break_round_start(proto)
    mesh.ask(ids[0], "q1", Q)
    mesh.run()
    assert proto.statistics().rejects.get("internal_error") == 1
    assert not any(isinstance(e, Send) and e.msg == b"half-done" for e in seen[ids[0]])
    failed = [f for p, f in mesh.failed if p == ids[0]]
    assert [f.query_id for f in failed] == ["q1"] and failed[0].reason == "internal error"
    assert not proto.is_open("q1") and proto.buffer.get("q1").state.name == "FAILED"
    assert not [t for t in proto._timers.values() if t.query_id == "q1"]
    # the node itself keeps working: the next query is answered
    proto._start_round = real_start
    mesh.ask(ids[0], "q2", Q)
    mesh.run()
    assert (ids[0], "q2") in mesh.delivered


# ---------------------------------------------------------------- member rounds per originator


def test_one_originator_cannot_hold_more_member_rounds_than_the_cap():
    mesh, ids = make_mesh(3, method="pbft", member_rounds_per_origin_max=1,
                          round_timeout_s=3.0)
    for q in ("q1", "q2", "q3"):
        mesh.ask(ids[0], q, f"{Q} ({q})")
    mesh.run()
    refused = sum(mesh.nodes[p].proto.statistics().rejects.get("member_rounds_cap", 0)
                  for p in ids[1:])
    assert refused >= 2  # each other node refused at least one concurrent round of ids[0]
    # refused rounds still end: the originator decides on its own ranking at the deadline
    assert all((ids[0], q) in mesh.delivered for q in ("q1", "q2", "q3"))
    assert not [f for _, f in mesh.failed]


def test_the_member_round_cap_is_a_config_field_with_a_sane_bound():
    from p2pmoa.protocol import ProtocolConfig  # noqa: PLC0415
    assert ProtocolConfig().member_rounds_per_origin_max >= 1
    with pytest.raises(AssertionError):
        ProtocolConfig(member_rounds_per_origin_max=0)


def test_without_strict_every_query_the_failed_step_touched_is_failed_cleanly():
    """A PeerDown starts the rounds of two collecting queries; the bug hits the second after
    the first emitted its effects. Both effects lists are dropped, so BOTH queries must end
    (Failed), none may wait for a timer the driver never set."""
    slow = {i: StandInGenerator(f"m{i}", variants=1, seconds_per_token=1.0) for i in (1, 2)}
    mesh, ids = make_mesh(3, method="pbft", generators=slow, strict=False)
    proto = mesh.nodes[ids[0]].proto
    for q in ("q1", "q2"):
        mesh.ask(ids[0], q, f"{Q} {q}")
    mesh.run(until_s=0.5)  # own answers in, the slow peers still generating
    assert proto.is_open("q1") and proto.is_open("q2")
    proto.handle(PeerDown(ids[1], now=mesh.now))
    real, calls = proto._start_round, []

    def second_breaks(s, o, at_deadline=False):
        calls.append(o.query_id)
        if len(calls) == 2:
            raise RuntimeError("bug in the second round start")
        return real(s, o, at_deadline)
    proto._start_round = second_breaks
    out = proto.handle(PeerDown(ids[2], now=mesh.now))
    assert len(calls) == 2
    assert not [e for e in out if isinstance(e, (Send, Broadcast, Embed, Generate))]
    assert sorted(e.query_id for e in out if isinstance(e, Failed)) == ["q1", "q2"]
    assert not proto.is_open("q1") and not proto.is_open("q2")
    assert not [t for t in proto._timers.values() if t.query_id in ("q1", "q2")
                and t.kind.value in ("round", "judge")]
    assert proto.statistics().rejects.get("internal_error") == 1


@pytest.mark.parametrize("field,value", [("max_tokens", 0), ("max_tokens", 1 << 20),
                                         ("temperature", -1.0), ("temperature", 50.0),
                                         ("seed", "7"), ("max_tokens", 16.5)])
def test_announce_generation_parameters_are_schema_checked(field, value):
    from p2pmoa.messages import MalformedFrame, encode_body, pack  # noqa: PLC0415
    ann = QueryAnnounce("q1", "origin", Q, "pbft", 1.0, 5.0, 3, 1_000_000, 16, 0.5, 1)
    assert decode_body("announce", encode_body(ann)) == ann
    body = {f.name: getattr(ann, f.name) for f in dataclasses.fields(ann)}
    body[field] = value
    with pytest.raises(MalformedFrame):
        decode_body("announce", pack(body))


def test_a_peer_bounds_what_an_announce_asks_of_it():
    import hashlib  # noqa: PLC0415

    from p2pmoa.identity import Ed25519Identity, seal  # noqa: PLC0415
    from p2pmoa.messages import QUERY_TOPIC  # noqa: PLC0415
    mesh, ids = make_mesh(2)
    seen = _record(mesh, ids)
    mesh.run(until_s=0.1)
    other = Ed25519Identity.from_seed(hashlib.sha256(b"asker").digest())
    ann = QueryAnnounce("big", other.peer_id, Q, "pbft", mesh.now, 60.0, 4, 1_000_000,
                        50_000, 9.0, 3)
    mesh.inject(other.peer_id, ids[1], seal(other, ann, now=mesh.now, nonce=b"n" * 16),
                QUERY_TOPIC)
    mesh.run(until_s=5.0)
    gens = [e for e in seen[ids[1]] if isinstance(e, Generate)]
    limit = mesh.nodes[ids[1]].proto.cfg.gen_params.max_tokens
    assert [(g.params.max_tokens, g.params.temperature) for g in gens] == [(limit, 2.0)]


def test_without_strict_a_bug_at_admission_still_tells_the_asker():
    mesh, ids = make_mesh(2, strict=False)
    proto = mesh.nodes[ids[0]].proto

    def boom(s, ann):
        raise RuntimeError("bug after admission")
    proto._start_origin = boom
    out = proto.handle(UserQuery("q1", Q, now=mesh.now))
    # no half-done Accepted: the asker gets one clean Failed, the buffer says FAILED
    assert [type(e).__name__ for e in out] == ["Failed"] and out[0].query_id == "q1"
    assert proto.buffer.get("q1").state.name == "FAILED"
