"""Who gets a seat in a round (issue 12, findings 1, 4, 7), on the in-memory mesh running the
real PeerProtocol. Each test failed before the fix (commit 8339254)."""
from __future__ import annotations

import pytest

from consensus import pbft
from p2pmoa import seats
from p2pmoa.protocol import TrustBookPort
from p2pmoa.sybil import ATTACK_ANSWER, run_sybil_mesh
from p2pmoa.testing import make_mesh


@pytest.mark.parametrize("method", ["pbft", "vote", "averaging"])
def test_eight_instant_sybils_do_not_capture_five_honest_nodes(method):
    """Before: 8 of 9 seats, 8 of 8 bundle slots, and every user got the attacker's answer."""
    out = run_sybil_mesh(honest=5, sybils=8, method=method, seed=3, queries_per_node=2)
    assert out.delivered == out.queries == 10
    assert out.honest_answers == out.queries, out
    assert out.sybil_seats_max <= seats.new_seats_max(8) == 2
    assert out.refused.get("seat_new_identity_bound", 0) > 0  # speed bought nothing more


def test_a_roster_keeps_every_sybil_out():
    out = run_sybil_mesh(honest=5, sybils=8, method="pbft", seed=4, rostered=True)
    assert out.honest_answers == out.queries and out.sybil_seats_max == 0
    assert out.refused.get("seat_not_in_roster", 0) >= 8


def test_new_seat_bound_is_strictly_below_a_third():
    for k in range(1, 200):
        assert 3 * seats.new_seats_max(k) < k


def test_established_peers_are_never_refused_and_quarantined_ones_always_are():
    trust = TrustBookPort()
    for _ in range(3):
        for p in ("a", "b", "c"):
            trust.quality(p, 0.8, 0.0)
        trust.end_round(0.0)
    pol = seats.SeatPolicy()
    seated = ["me", "new1", "new2"]
    assert pol.refuse(trust, "me", "new3", seated, 8, ["a", "b", "c"]) == "seat_new_identity_bound"
    assert pol.refuse(trust, "me", "a", seated, 8, ["a", "b", "c"]) is None
    trust.quarantine("b", "equivocation", 0.0)
    assert pol.refuse(trust, "me", "b", seated, 8, ["a", "b", "c"]) == "seat_quarantined"
    w = pol.weights(trust, "me", ("a", "me", "new1"), {"a": 5, "me": 5, "new1": 5})
    assert w["new1"] == 0 and w["a"] == 5


def test_pbft_primary_order_comes_from_the_round_not_the_peer_id_sort():
    mesh, ids = make_mesh(4, method="pbft", seed=2)
    primaries = set()
    for q in range(6):
        mesh.ask(ids[q % 4], f"q{q}", f"Question {q}: what is {q} times three?")
        mesh.run(until_s=mesh.now + 30)  # decided, member state not yet expired
        assert (ids[q % 4], f"q{q}") in mesh.delivered
        member = mesh.nodes[ids[(q + 1) % 4]].proto._members[f"q{q}"]
        r = member.replica
        domain = member.domain
        assert r.primary_order == pbft.primary_order(r.weights, domain)
        primaries.add(r.primary(0))
    assert len(primaries) > 1, "the same peer led every round: the order is not per round"


def test_a_garbage_node_loses_quality_at_every_honest_node():
    """Before: only originators rated, the garbage node kept 0.5 (the start value) at the
    others, sometimes above an honest peer."""
    mesh, ids = make_mesh(5, method="pbft", faults={2: "garbage"}, seed=1)
    bad = ids[2]
    for q in range(4):
        asker = ids[[0, 1, 3, 4][q]]
        mesh.ask(asker, f"q{q}", f"Question {q}: what is the capital of France?")
        mesh.run(until_s=mesh.now + 100)
        assert "garbage" not in mesh.delivered[(asker, f"q{q}")].answer
    for i in (0, 1, 3, 4):
        t = mesh.nodes[ids[i]].proto.trust
        honest = [p for p in ids if p not in (ids[i], bad)]
        assert t.answer_quality(bad) < min(t.answer_quality(p) for p in honest) - 0.2, i
        w = t.weights(ids)
        assert w[bad] < min(w[p] for p in honest), (i, w)


def test_seniority_ends_bootstrap_but_gives_no_seat_by_itself():
    """A large mesh: the node judged nobody three times, but it has long-standing
    connections; identities that all appear at once are then bounded, old peers included
    (seniority gives no seat, history does)."""
    trust = TrustBookPort()
    pol = seats.SeatPolicy(seniority_s=600.0)
    pol.connected("old", 0.0)
    assert pol.bootstrap(trust, ["old"], 500.0)  # nothing known yet: seat anyone
    assert not pol.bootstrap(trust, ["old"], 700.0)
    seated = ["me", "s1", "s2"]
    for peer in ("young", "old"):
        assert pol.refuse(trust, "me", peer, seated, 8, ["old"], 700.0) == \
            "seat_new_identity_bound"
    w = pol.weights(trust, "me", ("me", "s1", "s2"), {"me": 5, "s1": 5, "s2": 5}, 700.0, ["old"])
    assert w == {"me": 5, "s1": 0, "s2": 0}


def test_weight_zero_answers_are_no_references_when_ranking():
    """The protocol orders candidates by clusters of equivalent answers weighted by round
    weight (p2pmoa.agreement.order_candidates): two identical sybil answers at weight 0 lose to
    one answer of an established proposer; with equal weights the larger cluster wins."""
    from p2pmoa import agreement

    answers = ["Answer: Lyon", "Answer: Lyon", "Answer: Paris"]
    q = "What is the capital of France?"
    assert agreement.order_candidates(answers, q, [0, 0, 5])[0][0] == 2
    assert agreement.order_candidates(answers, q, [1, 1, 1])[0][0] in (0, 1)


def test_observed_quality_is_closeness_to_established_answers_not_to_newcomers():
    """seats.observe_round: an answer close to the established references scores high, an
    unrelated one 0; the chosen proposer gets a good event, silent members a bad one, the node
    itself nothing."""
    import numpy as np

    trust = TrustBookPort()
    v = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    seats.observe_round(trust, "me", ["me", "a", "b"], v, "a", 0.0, silent=["c"])
    assert trust.answer_quality("a") > trust.answer_quality("b")
    assert "me" not in trust.members()


def test_rostered_peers_count_as_known_without_history():
    trust = TrustBookPort()
    pol = seats.SeatPolicy(roster=frozenset({"a", "b", "me"}))
    seated = ["me", "x", "y"]
    assert pol.refuse(trust, "me", "a", seated, 8, ["a"]) is None
    assert pol.refuse(trust, "me", "z", seated, 8, ["a"]) == "seat_not_in_roster"
    trust.quarantine("b", "equivocation", 0.0)
    assert pol.refuse(trust, "me", "b", seated, 8, ["a"]) == "seat_quarantined"
    assert pol.weights(trust, "me", ("me", "a"), {"me": 5, "a": 5}, 0.0, ["a"]) == {"me": 5, "a": 5}
