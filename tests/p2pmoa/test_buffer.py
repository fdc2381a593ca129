"""Prompt buffer: durability, bounds, admission control, and restart recovery of the protocol."""
from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pmoa.buffer import (
    Admitted,
    Busy,
    MemoryStore,
    PromptBuffer,
    QueryState,
    SQLiteStore,
    max_stable_rate_per_s,
    stability_load,
)
from p2pmoa.messages import QueryAnnounce
from p2pmoa.testing import make_mesh


def ann(qid: str, t: float = 0.0, deadline_s: float = 30.0) -> QueryAnnounce:
    return QueryAnnounce(qid, "12D3KooWorigin", f"question {qid}?", "pbft", t, deadline_s, 4)


def test_accepted_query_is_on_disk_before_admit_returns(tmp_path):
    db = tmp_path / "buf.sqlite"
    buf = PromptBuffer(SQLiteStore(db))
    assert isinstance(buf.admit(ann("a"), local=True, now=1.0), Admitted)
    # a second, independent connection sees the row immediately (no close, no checkpoint):
    # this is what survives kill -9
    other = SQLiteStore(db)
    rows = dict(other.load_all())
    assert "a" in rows
    other.close()


def test_reopen_recovers_unfinished_queries_with_their_state(tmp_path):
    db = tmp_path / "buf.sqlite"
    buf = PromptBuffer(SQLiteStore(db))
    for q in "abcd":
        buf.admit(ann(q), local=(q != "d"), now=1.0)
    buf.set_state("b", QueryState.GENERATING, 2.0)
    buf.set_state("c", QueryState.DONE, 3.0, answer="42")
    buf.set_state("d", QueryState.VOTING, 3.0)
    buf.store.close()
    again = PromptBuffer(SQLiteStore(db))
    assert [r.query_id for r in again.unfinished()] == ["a", "b", "d"]
    assert again.get("b").state == QueryState.GENERATING
    assert again.get("c").answer == "42" and again.get("c").state == QueryState.DONE
    assert again.get("d").local is False
    assert again.get("a").announce == ann("a")


def test_corrupt_record_is_skipped_and_counted(tmp_path):
    store = SQLiteStore(tmp_path / "b.sqlite")
    store.put("x", "buffered", 0.0, b"\xc1garbage")
    buf = PromptBuffer(store)
    buf_ok = buf.admit(ann("y"), local=True, now=0.0)
    assert isinstance(buf_ok, Admitted)
    assert buf.statistics().corrupt_records == 1


def test_full_buffer_says_busy_with_retry_after():
    buf = PromptBuffer(MemoryStore(), capacity=2)
    buf.record_generation_time(3.0)
    assert isinstance(buf.admit(ann("a"), local=True, now=0.0), Admitted)
    assert isinstance(buf.admit(ann("b"), local=True, now=0.0), Admitted)
    busy = buf.admit(ann("c"), local=True, now=0.0)
    assert isinstance(busy, Busy) and busy.reason == "full" and busy.retry_after_s >= 3.0
    buf.set_state("a", QueryState.DONE, 1.0)
    assert isinstance(buf.admit(ann("c"), local=True, now=1.0), Admitted)


def test_duplicate_query_id_is_refused():
    buf = PromptBuffer(MemoryStore())
    buf.admit(ann("a"), local=True, now=0.0)
    assert buf.admit(ann("a"), local=True, now=0.0).reason == "duplicate"


def test_admission_follows_the_queue_stability_bound():
    # alpha = mean(1 s, 3 s) = 2 s (the expected service time; the max, 3 s, would admit only
    # 10), k = 0, M = 1: lambda < 1 / (2 * 2) = 0.25 queries/s, i.e. < 15 per 60 s
    buf = PromptBuffer(MemoryStore(), capacity=1000, layers_m=1, proposers_k=0)
    buf.record_generation_time(1.0)
    buf.record_generation_time(3.0)
    assert buf.alpha_max_s == pytest.approx(2.0)
    assert max_stable_rate_per_s(2.0, 1, 0) == pytest.approx(0.25)
    long = 3600.0  # deadlines far away: this test is about the rate bound only
    admitted = [q for q in range(40)
                if isinstance(buf.admit(ann(f"q{q}", q * 0.1, long), local=True, now=q * 0.1), Admitted)]
    assert len(admitted) == 15
    busy = buf.admit(ann("late", 4.0, long), local=True, now=4.0)
    assert busy.reason == "unstable" and 50.0 <= busy.retry_after_s <= 60.0
    # after the window slides, admission resumes
    assert isinstance(buf.admit(ann("later", 61.0, long), local=True, now=61.0), Admitted)


def test_a_query_that_cannot_start_before_its_deadline_is_refused_not_accepted():
    buf = PromptBuffer(MemoryStore(), capacity=100)
    # before any measured generation the node cannot predict waits: it admits
    assert isinstance(buf.admit(ann("a", 0.0, 1.5), local=True, now=0.0), Admitted)
    buf.record_generation_time(1.0)        # alpha = 1 s; one query is open
    # the next query would wait ~1 s and need ~1 s itself: 2 s > its 1.5 s deadline
    busy = buf.admit(ann("b", 0.0, 1.5), local=True, now=0.0)
    assert busy.reason == "deadline" and busy.retry_after_s >= 1.0
    assert buf.statistics(0.0).refused_deadline == 1
    # with a deadline it can meet, the same query is admitted
    assert isinstance(buf.admit(ann("c", 0.0, 5.0), local=True, now=0.0), Admitted)


@settings(max_examples=200, deadline=None)
@given(st.floats(0.001, 100), st.floats(0.001, 60), st.integers(1, 4), st.integers(0, 8))
def test_stability_bound_is_tight(rate, alpha, m, k):
    lam = max_stable_rate_per_s(alpha, m, k)
    assert lam == pytest.approx(1 / (((k + 1) * m + 1) * alpha))   # ((k+1)M+1)·λ < 1/α_max
    assert stability_load(lam * 0.999, alpha, m, k) < 1 <= stability_load(lam * 1.001, alpha, m, k)
    assert (stability_load(rate, alpha, m, k) < 1) == (rate < lam) or math.isclose(rate, lam)


def test_finished_records_are_pruned_to_the_limit():
    store = MemoryStore()
    buf = PromptBuffer(store, finished_keep=3)
    for i in range(10):
        buf.admit(ann(f"q{i}"), local=True, now=i)
        buf.set_state(f"q{i}", QueryState.DONE, i, answer="x")
    assert len(store.rows) == 3 and buf.get("q9") is not None and buf.get("q0") is None


def test_finished_query_is_never_resurrected():
    buf = PromptBuffer(MemoryStore())
    buf.admit(ann("a"), local=True, now=0.0)
    buf.set_state("a", QueryState.FAILED, 1.0, detail="expired")
    assert buf.set_state("a", QueryState.GENERATING, 2.0).state == QueryState.FAILED
    # failed is final: a decision arriving later does not turn it into done (issue 9)
    assert buf.set_state("a", QueryState.DONE, 3.0, answer="late").state == QueryState.FAILED
    assert buf.get("a").answer == ""


def test_state_only_moves_forward_except_through_retrying():
    buf = PromptBuffer(MemoryStore())
    buf.admit(ann("a"), local=True, now=0.0)
    assert buf.set_state("a", QueryState.VOTING, 1.0).state == QueryState.VOTING
    assert buf.set_state("a", QueryState.GENERATING, 2.0).state == QueryState.VOTING
    # a restart resumes it: retrying, then forward again
    assert buf.set_state("a", QueryState.RETRYING, 3.0).state == QueryState.RETRYING
    assert buf.set_state("a", QueryState.GENERATING, 4.0).state == QueryState.GENERATING
    assert buf.set_state("a", QueryState.DONE, 5.0, answer="x").state == QueryState.DONE
    assert buf.set_state("a", QueryState.FAILED, 6.0).state == QueryState.DONE


@pytest.mark.parametrize("crash_after_s", [0.0, 0.012, 0.03])
def test_originator_killed_mid_query_answers_it_after_restart(tmp_path, crash_after_s):
    """kill -9 the originator while buffered / generating / voting; after restart it answers."""
    db = tmp_path / "origin.sqlite"
    mesh, ids = make_mesh(4, method="pbft", buffers={0: PromptBuffer(SQLiteStore(db))})
    mesh.ask(ids[0], "q1", "What is the capital of France?")
    mesh.run(until_s=crash_after_s)
    assert (ids[0], "q1") in mesh.accepted
    assert (ids[0], "q1") not in mesh.delivered
    old = mesh.nodes[ids[0]].proto
    mesh.crash(ids[0])
    mesh.run(until_s=crash_after_s + 1.0)  # peers keep going while it is down
    restarted = type(old)(old.signer, old._verifier, old.cfg, rng=old.rng,
                          buffer=PromptBuffer(SQLiteStore(db)))
    mesh.restart(restarted, mesh.nodes[ids[0]].generator)
    mesh.run(until_s=200.0)
    out = mesh.delivered.get((ids[0], "q1"))
    assert out is not None, "accepted query lost across a crash"
    assert restarted.buffer.get("q1").state == QueryState.DONE
    assert restarted.statistics().counters.get("recovered_local") == 1
    assert out.trace["n_proposals"] >= 3


from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule  # noqa: E402


class BufferAcrossCrashes(RuleBasedStateMachine):
    """Any interleaving of admits, state changes and kill -9 + reopen: nothing admitted is
    lost or changes state behind our back, and the buffer never exceeds its capacity."""

    def __init__(self):
        super().__init__()
        import tempfile

        self.dir = tempfile.mkdtemp()
        self.path = f"{self.dir}/b.sqlite"
        self.buf = PromptBuffer(SQLiteStore(self.path), capacity=5, finished_keep=1000)
        self.model: dict[str, QueryState] = {}
        self.t = 0.0
        self.n = 0

    @rule()
    def admit(self):
        self.t += 1.0
        qid = f"q{self.n}"
        self.n += 1
        res = self.buf.admit(ann(qid), local=True, now=self.t)
        open_ = sum(1 for s in self.model.values() if not s.finished)
        if open_ >= 5:
            assert isinstance(res, Busy) and res.reason == "full"
        else:
            assert isinstance(res, Admitted)
            self.model[qid] = QueryState.BUFFERED

    @precondition(lambda self: any(not s.finished for s in self.model.values()))
    @rule(state=st.sampled_from(list(QueryState)), pick=st.integers(0, 100))
    def advance(self, state, pick):
        open_ids = sorted(q for q, s in self.model.items() if not s.finished)
        qid = open_ids[pick % len(open_ids)]
        self.t += 1.0
        self.buf.set_state(qid, state, self.t, answer="a" if state == QueryState.DONE else "")
        if self.model[qid].can_move_to(state):  # states only move forward (issue 9)
            self.model[qid] = state

    @rule()
    def crash_and_reopen(self):
        # no close(): the old connection is simply abandoned, as after kill -9
        self.buf = PromptBuffer(SQLiteStore(self.path), capacity=5, finished_keep=1000)

    def teardown(self):
        import shutil

        shutil.rmtree(self.dir, ignore_errors=True)

    @invariant()
    def matches_model(self):
        for qid, state in self.model.items():
            rec = self.buf.get(qid)
            assert rec is not None and rec.state == state, qid
        assert self.buf.statistics().unfinished <= 5


TestBufferAcrossCrashes = BufferAcrossCrashes.TestCase
TestBufferAcrossCrashes.settings = settings(max_examples=25, stateful_step_count=25,
                                            deadline=None)


def test_peer_killed_while_generating_resumes_and_its_proposal_counts(tmp_path):
    db = tmp_path / "peer1.sqlite"
    mesh, ids = make_mesh(4, method="pbft", buffers={1: PromptBuffer(SQLiteStore(db))})
    mesh.ask(ids[0], "q1", "What is the capital of France?")
    mesh.run(until_s=0.007)  # the announce arrived at peer 1, its generation is running
    old = mesh.nodes[ids[1]].proto
    assert old.buffer.get("q1").state == QueryState.GENERATING
    mesh.crash(ids[1])
    mesh.run(until_s=1.0)
    again = type(old)(old.signer, old._verifier, old.cfg, rng=old.rng,
                      buffer=PromptBuffer(SQLiteStore(db)))
    mesh.restart(again, mesh.nodes[ids[1]].generator)
    mesh.run(until_s=200.0)
    out = mesh.delivered[(ids[0], "q1")]
    assert again.statistics().counters.get("recovered_remote") == 1
    assert ids[1] in {p["peer"] for p in out.trace["proposals"]}
    assert again.buffer.get("q1").state == QueryState.DONE
