"""Memory in the peer protocol: answer from memory, opt-out, replication, and poisoning attempts
(forged, unsigned, validly signed but undecided entries) on the in-memory mesh."""
from __future__ import annotations

import hashlib

import msgpack
import pytest

from p2pmoa.identity import Ed25519Identity, seal
from p2pmoa.memory import Memory, MemoryConfig
from p2pmoa.messages import MemoryShare
from p2pmoa.testing import make_mesh

Q = "What is the capital of France?"
PARA = "Which city is the capital of France?"
LOOK = "What is the capital of Germany?"
POISON = "POISON: the capital of France is Lyon"
NEW = "What is the capital of Peru?"


def mesh_with_memory(n=4, faults=None, **cfg):
    mems = {i: Memory(MemoryConfig(**cfg)) for i in range(n)}
    mesh, ids = make_mesh(n, faults=faults, memories=mems)
    return mesh, ids, mems


def shared_answers(mem):
    return {e.answer for e in mem.shared.entries()}


def test_a_paraphrase_is_answered_from_shared_memory_without_a_round():
    mesh, ids, mems = mesh_with_memory()
    mesh.ask(ids[0], "q1", Q)
    mesh.run()
    first = mesh.delivered[(ids[0], "q1")]
    assert first.trace["method"] == "pbft" and not first.trace["memory"]["answered_from_memory"]
    # the decided answer was replicated to every member, who checked it against its own decision
    for i in range(4):
        assert shared_answers(mems[i]) == {first.answer}, i
    assert len(mems[0].private) == 1 and all(len(mems[i].private) == 0 for i in (1, 2, 3)), \
        "private memory stays on the node whose user asked"
    sent = mesh.frames_sent
    mesh.ask(ids[2], "q2", PARA)  # another node, other words
    mesh.run()
    hit = mesh.delivered[(ids[2], "q2")]
    assert hit.answer == first.answer
    mt = hit.trace["memory"]
    assert mt["answered_from_memory"] and mt["entry"]["query"] == Q
    assert mt["entry"]["digest"] == hashlib.sha256(first.answer.encode()).hexdigest()
    assert mesh.frames_sent == sent, "an answer from memory costs no network round"


def test_a_look_alike_runs_a_round_and_an_opt_out_is_respected():
    mesh, ids, mems = mesh_with_memory()
    mesh.ask(ids[0], "q1", Q)
    mesh.run()
    mesh.ask(ids[1], "q2", LOOK)
    mesh.run()
    look = mesh.delivered[(ids[1], "q2")]
    assert look.trace["method"] == "pbft" and not look.trace["memory"]["answered_from_memory"]
    assert "Germany" in look.answer
    before = len(mems[3].private), len(mems[3].shared)
    mesh.ask(ids[3], "q3", Q, memory=False)
    mesh.run()
    out = mesh.delivered[(ids[3], "q3")]
    assert out.trace["method"] == "pbft", "the client forbade memory: a round must run"
    assert out.trace["memory"]["opted_out"] and not out.trace["memory"]["answered_from_memory"]
    assert (len(mems[3].private), len(mems[3].shared)) == before, "opted out: nothing stored"


def test_retrieved_notes_reach_the_local_model_prompt():
    seen = []
    mesh, ids, mems = mesh_with_memory(answer_from_memory=False, retrieve_min_cos=-1.0, k_priv=1, k_shared=1)
    gen = mesh.nodes[ids[0]].generator
    real = gen.generate

    def spy(messages, params):
        seen.append(messages[0].content)
        return real(messages, params)
    gen.generate = spy
    mesh.ask(ids[0], "q1", Q)
    mesh.run()
    mesh.ask(ids[0], "q2", PARA)
    mesh.run()
    assert "Notes from memory" not in seen[0]
    assert any("Notes from memory" in s and f"Q: {Q}" in s for s in seen[1:]), seen


def _kind(data: bytes) -> str:
    try:
        return msgpack.unpackb(data, raw=False)[1]
    except Exception:
        return "?"


def _earn_trust(mesh, ids, askers):
    """Each asker runs a round of its own first: it sees the others answer well (trust)."""
    for i in askers:
        mesh.ask(ids[i], f"warm{i}", f"Tell me fact number {i} about bees.")
        mesh.run(until_s=mesh.now + 300)


def test_a_non_member_accepts_an_entry_only_with_endorsements_of_members_it_trusts():
    for earned in (True, False):
        mesh, ids, mems = mesh_with_memory(n=5)
        listener = ids[4]
        if earned:
            _earn_trust(mesh, ids, [4])
        mesh.drop = lambda src, dst, data: dst == listener and _kind(data) == "announce"
        mesh.ask(ids[0], "q1", Q)
        mesh.run(until_s=mesh.now + 300)
        ans = mesh.delivered[(ids[0], "q1")].answer
        counters = mesh.nodes[listener].proto.mem.counters
        if earned:
            entry = next(e for e in mems[4].shared.entries() if e.answer == ans)
            assert listener not in entry.members and len(entry.endorsers) >= 3
            assert counters.get("share_accepted_endorsed") == 1
        else:  # strangers' endorsements vouch for nothing
            assert ans not in shared_answers(mems[4])
            assert counters.get("share_pending_awaiting_endorsements", 0) >= 3, counters


def test_endorsements_a_node_checked_as_a_member_make_those_members_vouched_for():
    mesh, ids, mems = mesh_with_memory(n=5)
    listener = ids[4]
    mesh.ask(ids[1], "q0", "Tell me a fact about bees.")  # the listener is a member here
    mesh.run(until_s=mesh.now + 300)
    agent = mesh.nodes[listener].proto.mem
    assert all(agent._credits.get(p, 0) >= 1 for p in ids[:4]), agent._credits
    mesh.drop = lambda src, dst, data: dst == listener and _kind(data) == "announce"
    mesh.ask(ids[0], "q1", Q)
    mesh.run(until_s=mesh.now + 300)
    ans = mesh.delivered[(ids[0], "q1")].answer
    assert ans in shared_answers(mems[4]), "members it saw tell the truth vouch for the entry"
    assert agent.counters.get("share_accepted_endorsed") == 1


def test_relay_carries_an_entry_past_the_round_neighbourhood():
    # nodes 4 and 5 never see the announce, so they are no members; 5 hears only node 4,
    # which relays the members' signed frames it accepted
    mesh, ids, mems = mesh_with_memory(n=6)
    near, far = ids[4], ids[5]
    _earn_trust(mesh, ids, [4, 5])
    mesh.drop = lambda src, dst, data: ((dst in (near, far) and _kind(data) == "announce")
                                        or (dst == far and src != near))
    mesh.ask(ids[0], "q1", Q)
    mesh.run(until_s=mesh.now + 300)
    ans = mesh.delivered[(ids[0], "q1")].answer
    assert ans in shared_answers(mems[4]) and ans in shared_answers(mems[5])
    entry = next(e for e in mems[5].shared.entries() if e.answer == ans)
    assert far not in entry.members and near not in entry.members
    assert near not in entry.endorsers, "a relay adds no endorsement of its own"
    assert mesh.nodes[far].proto.mem.counters.get("share_accepted_endorsed") == 1


# --------------------------------------------------------------------------- poisoning


def _decided_mesh():
    mesh, ids, mems = mesh_with_memory(n=5, faults={4: "silent"})
    mesh.ask(ids[0], "q1", Q)
    mesh.run()
    return mesh, ids, mems


def _share(origin, members, answer=POISON, qid="q1", query=Q, digest=None):
    return MemoryShare(qid, origin, query, answer,
                       digest or hashlib.sha256(answer.encode()).digest(), "pbft",
                       tuple(sorted(members)), 1.0)


def _frame(signer, msg, mesh, nonce=b"\x01" * 16):
    return seal(signer, msg, now=mesh.now, nonce=nonce)


def _ask_again_everywhere(mesh, ids, query=Q):
    out = {}
    for i, pid in enumerate(ids[:4]):
        mesh.ask(pid, f"again{i}", query)
        mesh.run()
        out[pid] = mesh.delivered[(pid, f"again{i}")].answer
    return out


def _assert_not_poisoned(mesh, ids, mems):
    for i in range(5):
        assert POISON not in shared_answers(mems[i]), i
    answers = _ask_again_everywhere(mesh, ids)
    assert all(POISON not in a for a in answers.values()), answers


def test_forged_entry_is_rejected():
    mesh, ids, mems = _decided_mesh()
    byz = Ed25519Identity.from_seed(b"b" * 32)
    victim_key = mesh.nodes[ids[1]].proto.signer
    frame = bytearray(_frame(victim_key, _share(ids[1], ids[:4]), mesh))
    frame[-5] ^= 0xFF  # the signature no longer matches: a forgery in ids[1]'s name
    for pid in ids:
        mesh.inject(byz.peer_id, pid, bytes(frame))
    mesh.run()
    for pid in ids:
        assert mesh.nodes[pid].proto.statistics().rejects.get("bad_signature", 0) >= 1
    _assert_not_poisoned(mesh, ids, mems)


def test_unsigned_entry_is_rejected():
    mesh, ids, mems = _decided_mesh()
    env = msgpack.unpackb(_frame(mesh.nodes[ids[1]].proto.signer, _share(ids[1], ids[:4]), mesh),
                          raw=False)
    for sig in (b"", b"\x00" * 64):
        env[-1] = sig
        for pid in ids:
            mesh.inject(ids[1], pid, msgpack.packb(env, use_bin_type=True))
    mesh.run()
    for pid in ids:
        rejects = mesh.nodes[pid].proto.statistics().rejects
        assert sum(rejects.values()) >= 2, rejects
    _assert_not_poisoned(mesh, ids, mems)


@pytest.mark.parametrize("case", ["member_wrong_answer", "invented_round", "wrong_query",
                                  "colluders_in_round", "colluders_only_round"])
def test_validly_signed_but_undecided_entry_is_rejected(case):
    mesh, ids, mems = _decided_mesh()
    byz = mesh.nodes[ids[3]].proto.signer  # a real member of the decided round turns Byzantine
    byz2 = Ed25519Identity.from_seed(b"c" * 32)
    members = sorted(ids[:4])
    if case == "member_wrong_answer":      # the real round, another answer
        msgs = [(byz, _share(ids[3], members))]
    elif case == "invented_round":         # a round that never happened, honest nodes named
        msgs = [(byz, _share(ids[3], ids[:4], qid="never-asked", query=NEW))]
    elif case == "wrong_query":            # the decided answer, pinned to another question
        right = mesh.nodes[ids[0]].proto.decision("q1").answer
        msgs = [(byz, _share(ids[3], members, answer=right, query="What is the capital of Spain?"))]
    elif case == "colluders_only_round":   # two colluders, one trusted, invent their own round
        rmembers = sorted([ids[3], byz2.peer_id])
        msgs = [(byz, _share(ids[3], rmembers, qid="fake", query=NEW)),
                (byz2, _share(ids[3], rmembers, qid="fake", query=NEW))]
    else:                                  # two colluders vouch for a round they filled
        rmembers = sorted([ids[3], byz2.peer_id, ids[0], ids[1], ids[2]])
        msgs = [(byz, _share(ids[3], rmembers, qid="fake", query=NEW)),
                (byz2, _share(ids[3], rmembers, qid="fake", query=NEW))]
    for k, (signer, msg) in enumerate(msgs):
        frame = _frame(signer, msg, mesh, nonce=bytes([k + 7]) * 16)
        for pid in ids:
            if pid != signer.peer_id:
                mesh.inject(signer.peer_id, pid, frame)
    mesh.run()
    for i in range(5):
        assert all(e.query not in ("What is the capital of Spain?", NEW)
                   for e in mems[i].shared.entries()), i
    # the listener that was in no round (node 4) must not answer the planted question from memory
    mesh.ask(ids[4], "planted", NEW)
    mesh.run()
    got = mesh.delivered.get((ids[4], "planted"))
    assert got is None or POISON not in got.answer
    _assert_not_poisoned(mesh, ids, mems)
    if case == "member_wrong_answer":
        for pid in ids[:3]:
            assert mesh.nodes[pid].proto.statistics().rejects.get("memory_digest_mismatch") == 1


def test_memory_share_codec_round_trip_and_schema():
    from p2pmoa.messages import MalformedFrame, decode_body, encode_body, pack, unpack_bounded
    msg = _share("12D3KooWA", ["12D3KooWA", "12D3KooWB"])
    assert decode_body("memory", encode_body(msg)) == msg
    d = unpack_bounded(encode_body(msg))
    for bad in ({**d, "members": ["b", "a"]}, {**d, "members": []}, {**d, "digest": b"x"},
                {**d, "method": "nope"}, {**d, "query": ""}, {**d, "extra": 1}):
        with pytest.raises(MalformedFrame):
            decode_body("memory", pack(bad))
