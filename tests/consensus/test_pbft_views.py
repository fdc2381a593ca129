"""The view-change bookkeeping of consensus/pbft/views.py on its own: bounded vote storage,
the W/3 rule for following others upward, the answer throttle, the future-view buffer's
per-member quota and the view timer's back-off."""
from __future__ import annotations

from consensus.effects import CancelTimer, SetTimer
from consensus.pbft import Group, Prepare, ViewChange
from consensus.pbft.views import (
    FUTURE_VIEWS_MAX, VIEWS_PER_SENDER_MAX, AnswerThrottle, FutureBuffer, ViewChangeVotes,
    ViewTimer,
)

G = Group({"a": 1, "b": 1, "c": 1, "d": 1})


def test_votes_keep_at_most_four_future_views_per_sender_and_count_once():
    votes = ViewChangeVotes(G)
    for v in range(1, 11):
        assert votes.add(ViewChange(v, 0, (), "b"))
    assert not votes.add(ViewChange(10, 0, (), "b"))  # one per sender and view
    kept = sorted(v for v, per in votes.by_view.items() if "b" in per)
    assert kept == list(range(11 - VIEWS_PER_SENDER_MAX, 11))
    assert votes.weight(10) == 1 and votes.weight(3) == 0


def test_following_upward_needs_more_than_a_third_and_goes_to_the_view_they_reached():
    votes = ViewChangeVotes(G)
    votes.add(ViewChange(9, 0, (), "b"))
    assert votes.view_to_join(0, "a") is None  # one liar (1/4) cannot drag us
    votes.add(ViewChange(5, 0, (), "c"))
    # b (view 9) and c (view 5) weigh 1/2 > 1/3: the highest view such a group reached is 5
    assert votes.view_to_join(0, "a") == 5
    votes.add(ViewChange(7, 0, (), "a"))
    assert votes.view_to_join(0, "a") == 5  # our own view change never counts


def test_own_view_changes_are_kept_for_the_last_four_views():
    votes = ViewChangeVotes(G)
    for v in range(1, 8):
        votes.record_own(ViewChange(v, 0, (), "a"))
    assert sorted(votes.own) == list(range(8 - VIEWS_PER_SENDER_MAX, 8))
    votes.keep_from(6)
    assert sorted(votes.by_view) == [6, 7]


def test_answer_throttle_answers_powers_of_two_and_new_missing_lists():
    t = AnswerThrottle(4)
    vc = ViewChange(2, 4, (), "b", missing=(1,))
    answers = [t.note(vc)[0] for _ in range(9)]
    assert [i + 1 for i, a in enumerate(answers) if a] == [1, 2, 4, 8]
    assert t.note(ViewChange(2, 4, (), "b", missing=(1, 2))) == (False, True, True)
    assert t.note(ViewChange(2, 4, (), "b", missing=(1, 2))) == (False, True, False)


def test_answer_throttle_memory_is_bounded():
    t = AnswerThrottle(4)
    for v in range(1000):
        t.note(ViewChange(v + 1, 0, (), "b"))
    assert len(t.copies) <= t.limit + 1


def test_future_buffer_quota_per_member_and_horizon():
    buf = FutureBuffer(members=4, buffer_max=8)  # 2 places per member
    p = lambda v, s: Prepare(v, 1, b"\0" * 32, s)
    assert buf.add(p(1, "b"), 0) and buf.add(p(2, "b"), 0)
    assert not buf.add(p(3, "b"), 0)  # b's quota is full
    assert buf.add(p(3, "c"), 0)
    assert not buf.add(p(FUTURE_VIEWS_MAX + 1, "d"), 0)  # too far ahead
    assert buf.size == 3
    assert [m.sender for m in buf.pop(2)] == ["b"] and buf.size == 2
    buf.keep_from(3)
    assert buf.size == 1 and buf.by_sender == {"c": 1}
    assert buf.add(p(4, "b"), 0)  # b has room again


def test_view_timer_backs_off_and_fires_only_its_current_name():
    t = ViewTimer("a", 1.0)
    out: list = []
    t.want("active", 0, out)
    assert out == [SetTimer(t.name, 1.0)]
    first = t.name
    t.backoff = 2
    out.clear()
    t.want("wait", 3, out)
    assert out[0] == CancelTimer(first) and out[1] == SetTimer(t.name, 4.0)
    assert t.fired(first) is None  # a stale timer
    assert t.fired(t.name) == "wait" and t.name is None
    assert t.fired(None) is None
    t.backoff = 40
    out.clear()
    t.want("active", 4, out)
    assert out == [SetTimer(t.name, float(1 << 16))]  # capped
