"""Regression tests for the trust findings of issue 12 (coalition farming, bad arguments).
Each failed before the fix (commit 8339254)."""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from consensus.pbft import Replica
from consensus.trust import TrustBook, TrustError
from consensus.trust_attacks import farming, farming_coalition_weight_max


@pytest.mark.parametrize("q", [0.3, 0.5, 0.7])
def test_two_patient_farmers_among_eight_stay_below_a_third(q):
    r = farming(members=8, farmers=2, honest_quality=q, epochs=100)
    assert r.coalition_share_max < 1 / 3


def test_the_farming_grid_stays_below_a_third():
    assert farming_coalition_weight_max(epochs=30) < 1 / 3


@settings(max_examples=150, deadline=None)
@given(n=st.integers(1, 60), data=st.data())
def test_any_coalition_of_fewer_than_n_over_3_members_holds_less_than_a_third(n, data):
    b = TrustBook()
    ids = [f"p{i:02d}" for i in range(n)]
    epochs = data.draw(st.integers(0, 30))
    quality = {m: data.draw(st.floats(0, 1)) for m in ids}
    bad = data.draw(st.sets(st.sampled_from(ids), max_size=n))
    for _ in range(epochs):
        for m in ids:
            b.record_good(m)
            b.record_quality(m, quality[m])
            if m in bad:
                b.record_bad(m, 3)
        b.close_epoch()
    w = b.weights(ids)
    live = sorted((x for x in w.values() if x > 0), reverse=True)
    f = (len(live) - 1) // 3
    assert 3 * sum(live[:f]) < sum(live)  # the f heaviest: the strongest such coalition
    Replica(ids[0], w, unauthenticated=True)  # and they are valid PBFT weights


@pytest.mark.parametrize("kw", [{"share_cap": 1.0}, {"share_cap": 0.34}, {"share_cap": True},
                                {"alpha": float("nan")}, {"growth_max": -0.1}])
def test_bad_trust_book_parameters_raise_typed_errors(kw):
    with pytest.raises(TrustError):
        TrustBook(**kw)


@pytest.mark.parametrize("members", ["abc", b"abc", 5, ["ok", 3], ["ok", ""]])
def test_weights_of_a_non_list_of_member_ids_is_a_typed_error(members):
    with pytest.raises(TrustError):
        TrustBook().weights(members)
