"""Admission never locks a node out (issue 9), and still keeps the Distributed-MoA bound
under sustained load."""
from __future__ import annotations

import logging
import math

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from p2pmoa.buffer import Admitted, Busy, MemoryStore, PromptBuffer, QueryState, max_stable_rate_per_s
from p2pmoa.messages import QueryAnnounce


def ann(qid: str, t: float = 0.0, deadline_s: float = 3600.0) -> QueryAnnounce:
    return QueryAnnounce(qid, "12D3KooWorigin", f"question {qid}?", "pbft", t, deadline_s, 4)


def test_one_slow_generation_does_not_lock_the_node_out():
    # the reproduction of issue 9: generations of 31 s, k=0, M=1, 60 s deadline. The old rule
    # allowed 60/62 < 1 arrival per window and refused even on an empty window, for ever.
    buf = PromptBuffer(MemoryStore(), capacity=64)
    assert isinstance(buf.admit(ann("q1", 0.0, 60.0), local=True, now=0.0), Admitted)
    buf.record_generation_time(31.0, now=31.0)
    buf.set_state("q1", QueryState.DONE, 32.0)
    # second query while idle: admitted although alpha = 31 s
    assert isinstance(buf.admit(ann("q2", 40.0, 60.0), local=True, now=40.0), Admitted)
    buf.record_generation_time(31.0, now=71.0)
    buf.set_state("q2", QueryState.DONE, 72.0)
    # the third query, 70 s later on an empty window: admitted (was refused for ever)
    assert isinstance(buf.admit(ann("q3", 110.0, 60.0), local=True, now=110.0), Admitted)
    st_ = buf.statistics(110.0)
    assert st_.refused_unstable == 0 and st_.admitted == 3 and st_.admitted_idle == 3


def test_busy_node_still_refuses_past_the_bound_and_says_when_to_retry():
    buf = PromptBuffer(MemoryStore(), capacity=64)
    buf.record_generation_time(31.0, now=0.0)
    assert isinstance(buf.admit(ann("a", 1.0), local=True, now=1.0), Admitted)
    # alpha 31 s, (k+1)M+1 = 2: one arrival per 62 s; the window stretches to 62 s
    busy = buf.admit(ann("b", 2.0), local=True, now=2.0)
    assert isinstance(busy, Busy) and busy.reason == "unstable"
    assert busy.retry_after_s == pytest.approx(61.0)
    assert buf.statistics(2.0).rate_window_s == pytest.approx(62.0)
    # after the window has passed, a still-busy node admits again
    assert isinstance(buf.admit(ann("c", 63.5), local=True, now=63.5), Admitted)


def test_alpha_is_re_estimated_over_its_window():
    buf = PromptBuffer(MemoryStore(), alpha_window_s=600.0)
    buf.record_generation_time(60.0, now=0.0)
    assert buf.alpha_at(10.0) == pytest.approx(60.0)
    buf.record_generation_time(2.0, now=400.0)
    assert buf.alpha_at(500.0) == pytest.approx(31.0)
    # the slow one has aged out; only the recent measurement counts
    assert buf.alpha_at(700.0) == pytest.approx(2.0)
    # nothing measured for a window: alpha unknown, the rate rule does not refuse
    assert buf.alpha_at(1100.0) == 0.0
    assert isinstance(buf.admit(ann("x", 1100.0), local=True, now=1100.0), Admitted)
    assert isinstance(buf.admit(ann("y", 1100.0), local=True, now=1100.0), Admitted)


def test_each_refusal_is_logged_once_with_reason_and_figures(caplog):
    buf = PromptBuffer(MemoryStore())
    buf.record_generation_time(40.0, now=0.0)
    buf.admit(ann("a"), local=True, now=0.0)
    with caplog.at_level(logging.WARNING, logger="p2pmoa.buffer"):
        assert isinstance(buf.admit(ann("b"), local=False, now=1.0), Busy)
    lines = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(lines) == 1, lines
    assert "b (unstable, remote)" in lines[0] and "alpha 40.00 s" in lines[0]
    assert "open 1/64" in lines[0] and "retry after" in lines[0]


@settings(max_examples=60, deadline=None)
@given(alpha=st.floats(0.5, 120.0), slack=st.floats(0.3, 1.0), k=st.integers(0, 4),
       gap=st.floats(0.01, 4.0))
@example(alpha=3.5, slack=0.5625, k=3, gap=1.0)  # lam * window = 1.93: one query per window
def test_sustained_load_keeps_the_bound(alpha, slack, k, gap):
    """A node that is never idle (one query always open) admits at most slack·λ_max over a
    long run, however fast queries are offered."""
    buf = PromptBuffer(MemoryStore(), capacity=10**6, proposers_k=k, slack=slack)
    buf.record_generation_time(alpha, now=0.0)
    assert isinstance(buf.admit(ann("open"), local=True, now=0.0), Admitted)  # never finishes
    horizon = 40 * alpha * (k + 2) / slack
    gap = max(gap * alpha, horizon / 2000)  # offered gap in units of alpha; at most 2000 steps
    t, i, admitted = 0.0, 0, 0
    while t < horizon:
        t += gap
        i += 1
        buf.record_generation_time(alpha, now=t)  # keep alpha fresh
        if isinstance(buf.admit(ann(f"q{i}", t), local=True, now=t), Admitted):
            admitted += 1
    lam = slack * max_stable_rate_per_s(alpha, 1, k)
    window = buf.rate_window_at(alpha)
    # at most lam per window plus one window's worth at the start
    assert admitted <= lam * horizon + lam * window + 1, (admitted, lam * horizon)
    if gap < 1 / lam / 2:
        # the rule still lets work in: it admits whole queries, floor(lam * window) per window
        # (at least one), so at lam * window = 1.93 it may admit one per window: about half of lam
        per_window = max(1, math.floor(lam * window))
        assert admitted >= 0.5 * per_window * horizon / (window + gap), (admitted, per_window)
