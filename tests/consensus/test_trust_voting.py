"""Trust book (weights for PBFT) and voting."""
from __future__ import annotations

import json
import random

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from consensus.pbft import Replica
from consensus.trust import WEIGHT_SCALE, TrustBook, TrustError
from consensus.voting import (
    VotingError, embedding_normaliser, majority_vote, normalise_choice, normalise_number,
    normalise_text, score_vote, weighted_vote,
)

MEMBERS = [f"p{i}" for i in range(8)]


def test_equivocation_evidence_quarantines_at_the_next_epoch_only():
    b = TrustBook()
    b.close_epoch()
    before = b.weights(MEMBERS)
    b.record_evidence("p3", "equivocation at view 2 seq 1")
    assert b.weights(MEMBERS) == before  # frozen within the epoch: all members agree
    b.close_epoch()
    w = b.weights(MEMBERS)
    assert w["p3"] == 0 and b.protocol_trust("p3") == 0.0 and b.is_quarantined("p3")
    for _ in range(50):  # good behaviour afterwards does not bring it back
        b.record_good("p3")
        b.record_quality("p3", 1.0)
        b.close_epoch()
    assert b.weights(MEMBERS)["p3"] == 0


def test_reputation_farming_is_rate_limited_and_share_is_capped():
    b = TrustBook(growth_max=0.05, share_cap=0.2)
    b.close_epoch()
    scores = []
    for _ in range(5):
        for _ in range(100):
            b.record_good("p0")
        b.record_quality("p0", 1.0)
        b.close_epoch()
        scores.append(b.score("p0"))
    assert all(y - x <= 0.05 + 1e-12 for x, y in zip([0.5] + scores, scores))
    for _ in range(40):
        b.record_good("p0")
        b.record_quality("p0", 1.0)
        b.close_epoch()
    w = b.weights(MEMBERS)
    assert w["p0"] <= 0.2 * WEIGHT_SCALE + 1
    assert 3 * w["p0"] < sum(w.values())  # one member can never hold a third


def test_bad_events_lower_weight_at_once():
    b = TrustBook()
    b.close_epoch()
    for _ in range(30):
        b.record_bad("p1")
    b.close_epoch()
    w = b.weights(MEMBERS)
    assert w["p1"] < min(v for m, v in w.items() if m != "p1")


@given(st.lists(st.tuples(st.sampled_from(MEMBERS), st.sampled_from(["good", "bad", "q", "ev", "epoch"]),
                          st.floats(0, 1)), max_size=60))
@settings(deadline=None, max_examples=60)
def test_weights_are_deterministic_serialisable_and_usable_as_pbft_weights(events):
    def build():
        b = TrustBook()
        for m, kind, x in events:
            match kind:
                case "good": b.record_good(m)
                case "bad": b.record_bad(m)
                case "q": b.record_quality(m, x)
                case "ev": b.record_evidence(m, "forged signature")
                case "epoch": b.close_epoch()
        return b
    b1, b2 = build(), build()
    w = b1.weights(MEMBERS)
    assert w == b2.weights(list(reversed(MEMBERS)))  # same events -> same integers
    assert all(isinstance(v, int) and v >= 0 for v in w.values())
    b3 = TrustBook.from_dict(json.loads(json.dumps(b1.to_dict())))
    assert b3.weights(MEMBERS) == w
    live = [m for m in MEMBERS if w[m] > 0]
    if len(live) >= 5:  # with enough members nobody exceeds the cap
        assert max(w.values()) <= 0.25 * max(WEIGHT_SCALE, 6 * len(w) ** 2) + 1
    Replica(MEMBERS[0], w, unauthenticated=True)  # valid input for a PBFT group


def test_bad_trust_input_raises_typed_errors():
    b = TrustBook()
    with pytest.raises(TrustError):
        b.record_quality("p0", 1.5)
    with pytest.raises(TrustError):
        b.record_good("", 1)
    with pytest.raises(TrustError):
        TrustBook(alpha=2.0)
    with pytest.raises(TrustError):
        TrustBook.from_dict({"version": 1, "params": {}, "epoch": -1, "members": {}})
    with pytest.raises(TrustError):
        TrustBook.from_dict({"nonsense": True})


# ------------------------------------------------------------------ voting

def test_normalisers_merge_equivalent_answers():
    assert normalise_text("  Paris. ") == normalise_text("PARIS") == "paris"
    assert normalise_number("the total is 3.50") == normalise_number("3.5") == "3.5"
    assert normalise_number("1,000 apples") == "1000"
    assert normalise_number("no digits") is None
    assert normalise_choice("The answer is (B).") == normalise_choice("b") == "B"
    assert normalise_choice("nothing here!") is None


def test_weighted_vote_lets_trusted_minority_win_and_reports_shares():
    r = weighted_vote(["Paris", "paris", "Lyon"], [1, 1, 3])
    assert r.winner == "lyon" and r.index == 2 and not r.tie
    assert r.share == pytest.approx(0.6)
    assert majority_vote(["Paris", "paris", "Lyon"]).winner == "paris"


@given(st.lists(st.sampled_from(["a", "b", "c", "d", "???"]), min_size=1, max_size=12),
       st.randoms(use_true_random=False))
def test_vote_winner_does_not_depend_on_arrival_order(answers, rnd):
    shuffled = answers[:]
    rnd.shuffle(shuffled)
    norm = lambda s: None if s == "???" else s
    assert majority_vote(answers, norm).winner == majority_vote(shuffled, norm).winner


def test_ties_go_to_the_smallest_key_and_abstentions_do_not_count():
    r = majority_vote(["beta", "alpha", "gamma?", "beta", "alpha"], normalise_text)
    assert r.tie and r.winner == "alpha"
    r = majority_vote(["x", "y"], lambda s: None)
    assert r.winner is None and r.total == 0


def test_score_vote_is_the_weighted_sum_argmax():
    scores = [[0.9, 0.1, 0.5], [0.2, 0.8, 0.5], [0.1, 0.9, 0.4]]
    r = score_vote(scores, [3, 1, 1])
    assert r.totals == pytest.approx((3.0, 2.0, 2.4))
    assert r.winner == 0
    assert score_vote(scores).winner == 1
    assert score_vote([[1, 1]]).tie and score_vote([[1, 1]]).winner == 0
    assert score_vote([[np.nan, 0.2]]).winner == 1  # NaN abstains


def test_embedding_clusters_count_as_one_answer():
    texts = ["Paris is the capital", "It's Paris", "London"]
    v = np.array([[1.0, 0.0], [0.99, 0.05], [0.0, 1.0]])
    norm = embedding_normaliser(texts, v, threshold=0.9)
    r = majority_vote(texts, norm)
    assert r.winner == "Paris is the capital" and r.tally[0][1] == 2


def test_voting_rejects_bad_input():
    with pytest.raises(VotingError):
        weighted_vote(["a"], [1, 2])
    with pytest.raises(VotingError):
        weighted_vote(["a"], [float("nan")])
    with pytest.raises(VotingError):
        score_vote([[np.inf]])
    with pytest.raises(VotingError):
        score_vote([[1.0]], [-1])
