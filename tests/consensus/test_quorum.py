"""consensus.quorum: the one weighted quorum test, three outcomes, integer arithmetic."""
from fractions import Fraction

import pytest
from hypothesis import given, strategies as st

from consensus.quorum import ONE_THIRD, TWO_THIRDS, Lost, Pending, Quorum, Won, vote_result

weights_st = st.dictionaries(st.sampled_from("abcdefgh"), st.integers(0, 20), min_size=1)


def test_four_equal_members_need_three():
    w = dict.fromkeys("abcd", 1)
    assert vote_result(w, ["a", "b"]) is Pending
    assert vote_result(w, ["a", "b", "c"]) is Won
    assert vote_result(w, {"a": False, "b": False}) is Lost
    assert vote_result(w, {"a": True, "b": False}) is Pending
    assert vote_result(w, ["a", "b"], threshold=ONE_THIRD) is Won


def test_bad_weights_and_threshold_are_refused():
    with pytest.raises(ValueError):
        Quorum({"a": -1})
    with pytest.raises(ValueError):
        Quorum({"a": 1.5})
    with pytest.raises(ValueError):
        Quorum({"a": 1}, Fraction(1))


@given(weights_st, st.data())
def test_outcome_matches_the_definition(w, data):
    members = sorted(w)
    votes = data.draw(st.dictionaries(st.sampled_from(members), st.booleans()))
    q = Quorum(w)
    yes = sum(w[m] for m, v in votes.items() if v)
    no = sum(w[m] for m, v in votes.items() if not v)
    out = q.vote_result(votes)
    assert (out is Won) == (3 * yes > 2 * q.total)
    if out is Lost:
        assert not 3 * (q.total - no) > 2 * q.total  # even every undecided member cannot win it
    # two winning quorums always share more than a third of the weight (BFT intersection)
    other = data.draw(st.sets(st.sampled_from(members)))
    if out is Won and q.vote_result(other) is Won:
        shared = sum(w[m] for m in other & {m for m, v in votes.items() if v})
        assert 3 * shared > q.total


@given(weights_st, st.sets(st.sampled_from("abcdefgh")))
def test_non_members_and_duplicates_weigh_nothing(w, extra):
    q = Quorum(w, TWO_THIRDS)
    assert q.weight_of(list(extra) * 2 + ["zz"]) == sum(w.get(m, 0) for m in extra)
