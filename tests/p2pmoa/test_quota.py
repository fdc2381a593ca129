"""Work only for those entitled to ask (issue 12, finding 6). Each test failed before the
fix (commit 8339254)."""
from __future__ import annotations

import hashlib

from p2pmoa.buffer import MemoryStore, PromptBuffer, QueryState, SQLiteStore
from p2pmoa.identity import Ed25519Identity, seal
from p2pmoa.llm import StandInGenerator
from p2pmoa.messages import QUERY_TOPIC, QueryAnnounce
from p2pmoa.quota import QuotaPolicy
from p2pmoa.testing import make_mesh


def _fresh(i: int) -> Ed25519Identity:
    return Ed25519Identity.from_seed(hashlib.sha256(f"stranger:{i}".encode()).digest())


def _announce(signer, qid: str, now: float, *, tokens: int = 2000) -> bytes:
    ann = QueryAnnounce(qid, signer.peer_id, "Write a very long essay about everything.", "pbft",
                        now, 3600.0, 8, 1_000_000, tokens, 0.7, 0)
    return seal(signer, ann, now=now, nonce=hashlib.sha256(qid.encode()).digest()[:16])


def _slow(i: int) -> StandInGenerator:
    return StandInGenerator(f"m{i}", variants=1, seconds_per_token=5.0)  # ~minutes per answer


def test_a_relay_cannot_inject_announces_signed_by_other_keys():
    mesh, ids = make_mesh(2)
    gen = mesh.nodes[ids[1]].generator
    for i in range(3):  # node 0 relays announces signed by three fresh keys
        mesh.inject(ids[0], ids[1], _announce(_fresh(i), f"s{i}", mesh.now), QUERY_TOPIC)
    mesh.run(until_s=5.0)
    node = mesh.nodes[ids[1]].proto
    assert node.statistics().rejects.get("announce_publisher_mismatch") == 3
    assert gen.calls == 0 and not any(f"s{i}" in node.buffer for i in range(3))


def test_remote_queries_never_starve_the_local_user():
    """Before: three strangers' announces filled the node and the local user got 429."""
    buf = PromptBuffer(MemoryStore(), capacity=4)
    mesh, ids = make_mesh(2, buffers={1: buf}, generators={1: _slow(1)})
    node = mesh.nodes[ids[1]].proto
    mesh.run(until_s=0.1)
    for i in range(4):  # four strangers, each publishing its own announce
        mesh.inject(_fresh(i).peer_id, ids[1], _announce(_fresh(i), f"s{i}", mesh.now),
                    QUERY_TOPIC)
    for k in range(3):  # and a connected peer asking three times at once
        mesh.ask(ids[0], f"p{k}", f"Peer question {k}?")
    mesh.run(until_s=2.0)
    remote = [r for r in buf.unfinished() if not r.local]
    pol = QuotaPolicy()
    assert len(remote) <= pol.remote_slots(4) == 3
    strangers = [r for r in remote if r.query_id.startswith("s")]
    assert len(strangers) <= pol.strangers_max(4) == 1
    assert sum(r.query_id.startswith("p") for r in remote) <= pol.per_origin_max(4) == 1
    rejects = node.statistics().rejects
    assert rejects.get("strangers_quota", 0) >= 3 and rejects.get("origin_quota", 0) >= 1
    mesh.ask(ids[1], "mine", "My own question?")
    mesh.run(until_s=3.0)
    assert (ids[1], "mine") in mesh.accepted
    assert not [r for p, r in mesh.refused if p == ids[1]]


def test_remote_work_is_bounded_by_the_nodes_own_max_tokens():
    mesh, ids = make_mesh(2)
    seen = []
    gen = mesh.nodes[ids[1]].generator
    orig = gen.generate
    gen.generate = lambda msgs, params: (seen.append(params.max_tokens), orig(msgs, params))[1]
    mesh.run(until_s=0.1)
    mesh.inject(_fresh(9).peer_id, ids[1], _announce(_fresh(9), "big", mesh.now), QUERY_TOPIC)
    mesh.run(until_s=5.0)
    own = mesh.nodes[ids[1]].proto.cfg.gen_params.max_tokens
    assert seen and max(seen) <= own < 2000


def test_a_strangers_query_is_not_resumed_after_a_restart(tmp_path):
    db = tmp_path / "n1.sqlite"
    mesh, ids = make_mesh(2, buffers={1: PromptBuffer(SQLiteStore(db))},
                          generators={1: _slow(1)})
    mesh.run(until_s=0.1)
    stranger = _fresh(7)
    mesh.inject(stranger.peer_id, ids[1], _announce(stranger, "st", mesh.now), QUERY_TOPIC)
    mesh.run(until_s=1.0)
    old = mesh.nodes[ids[1]].proto
    assert old.buffer.get("st").state == QueryState.GENERATING
    mesh.crash(ids[1])
    gen = StandInGenerator("m1", variants=1)
    again = type(old)(old.signer, old._verifier, old.cfg, rng=old.rng,
                      buffer=PromptBuffer(SQLiteStore(db)))
    mesh.restart(again, gen)
    mesh.run(until_s=4000.0)
    assert gen.calls == 0, "the stranger's query was generated again after the restart"
    assert again.buffer.get("st").state == QueryState.FAILED
    assert again.statistics().counters.get("recovered_remote_parked") == 1
