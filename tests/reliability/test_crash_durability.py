"""kill -9 of a real daemon while queries are buffered and generating: after restart every
accepted query ends DONE (answered) or FAILED (reported), none is silently dropped.

The durable record is the node's SQLite prompt buffer; we read it after a clean stop.
"""
from __future__ import annotations

import threading
import time

import pytest

from node.procs import NodeProcess
from p2pmoa.buffer import PromptBuffer, QueryState, SQLiteStore
from tests.node.conftest import poll_until

pytestmark = pytest.mark.real_net




def _states(node: NodeProcess) -> dict:
    return ((node.status() or {}).get("buffer") or {}).get("by_state") or {}


def final_records(data_dir) -> dict:
    buf = PromptBuffer(SQLiteStore(data_dir / "buffer.sqlite3"))
    return {q: buf.get(q) for q in list(buf._q)}  # noqa: SLF001 - test reads the durable view


def test_kill_9_while_generating_and_buffered_then_restart(tmp_path):
    node = NodeProcess("crash", tmp_path / "crash", model="stand-in",
                       extra=["--proposers-max", "1", "--deadline-s", "2",
                              "--stand-in-delay-s", "30"]).start()
    prompts = ["first question, generating when killed", "second question, buffered behind it",
               "third question, buffered too"]
    try:
        node.wait_ready(60)
        threads = []
        for p in prompts:
            def client(p=p):
                try:
                    node.post("/v1/chat/completions",
                              {"messages": [{"role": "user", "content": p}]}, timeout_s=60)
                except OSError:
                    pass  # the node dies under this request
            t = threading.Thread(target=client, daemon=True)
            t.start()
            threads.append(t)
            poll_until(lambda n=len(threads): (node.status() or {}).get("buffer", {}).get(
                "unfinished") == n, 30, f"{len(threads)} queries to be buffered")
        seen = _states(node)
        assert seen.get("generating", 0) + seen.get("buffered", 0) == 3, seen
        node.kill9()
        node.extra = ["--proposers-max", "1", "--deadline-s", "2"]  # fast after restart
        node.start()
        node.wait_ready(60)
        poll_until(lambda: (node.status() or {}).get("buffer", {}).get("unfinished") == 0, 60,
              "every recovered query to finish")
    finally:
        node.stop()
    recs = final_records(node.data_dir)
    mine = {q: r for q, r in recs.items() if r.local}
    assert len(mine) == 3, f"accepted 3 queries, the buffer holds {len(mine)}"
    for r in mine.values():
        assert r.state in (QueryState.DONE, QueryState.FAILED), (r.state, r.detail)
        if r.state is QueryState.DONE:
            assert r.answer
        else:
            assert r.detail, "a failed query must say why"
    assert {r.announce.prompt for r in mine.values()} == set(prompts)


def test_kill_9_of_the_originator_while_voting_then_restart(tmp_path):
    """4-node mesh, one member equivocates (so the PBFT round takes a moment): the originator
    is killed while its query is in the voting stage; after restart the query ends DONE or
    FAILED with a reason."""
    from node.procs import wait_mesh
    flags = ["--proposers-max", "4", "--deadline-s", "5", "--round-timeout-s", "20"]
    nodes: list[NodeProcess] = []
    for i in range(4):
        nodes.append(NodeProcess(f"v{i}", tmp_path / f"v{i}", model=f"stand-in:m{i % 2}",
                                 bootstrap=[nodes[0].addr] if nodes else [],
                                 fault="equivocate" if i == 1 else None, extra=flags))
    origin = nodes[0]
    caught = None
    try:
        for n in nodes:
            n.start()
        for n in nodes:
            n.wait_ready(60)
        wait_mesh(nodes, 60)
        for attempt in range(5):
            t = threading.Thread(target=lambda a=attempt: _post_quietly(origin, f"voting {a}"),
                                 daemon=True)
            t.start()
            while t.is_alive():
                if _states(origin).get("voting"):
                    origin.kill9()
                    caught = f"voting {attempt}"
                    break
                time.sleep(0.01)
            if caught:
                break
        assert caught, "never saw the query in the voting stage"
        origin.start()
        origin.wait_ready(60)
        poll_until(lambda: (origin.status() or {}).get("buffer", {}).get("unfinished") == 0, 60,
              "the recovered query to finish")
    finally:
        for n in nodes:
            n.stop()
    rec = {r.announce.prompt: r for r in final_records(origin.data_dir).values() if r.local}
    assert caught in rec, "the query killed while voting vanished from the durable buffer"
    r = rec[caught]
    assert r.state in (QueryState.DONE, QueryState.FAILED), r.state
    assert (r.answer if r.state is QueryState.DONE else r.detail)


def _post_quietly(node: NodeProcess, prompt: str) -> None:
    try:
        node.post("/v1/chat/completions", {"messages": [{"role": "user", "content": prompt}]},
                  timeout_s=60)
    except OSError:
        pass
