"""The node's web page at ``/``: its routes over a fake service, then in a real browser
(Debian's headless Chromium through Playwright) against real node processes: a three-node
stand-in mesh, and one node with the real SmolLM2 model.

Every browser test saves a screenshot in the artifacts dir (``$P2PMOA_ARTIFACTS``, default
``./test-artifacts``): ``web-page-<test>.png`` when it passes, ``web-page-<test>-FAILED.png``
when it fails.
"""
from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from node.api import build_app
from node.procs import NodeProcess, wait_mesh
from node.webcheck import artifacts_dir, ask_on_page, browser_page
from tests.node.conftest import poll_until
from tests.node.test_api import FakeService, serve_and


# ------------------------------------------------------------------ routes, no browser

class ProgressFake(FakeService):
    def progress(self, qid):
        if qid == "live1":
            return {"query_id": "live1", "phase": "collect", "proposals": [
                {"peer": "12D3KooWA", "model_id": "m", "role": "r", "llm_s": 0.1, "arrived_s": 0.2}]}
        return None


def test_page_and_its_files_are_served_with_a_strict_content_security_policy():
    c = TestClient(build_app(ProgressFake()))
    r = c.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert 'id="ask-form"' in r.text and 'href="/metrics"' in r.text
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    js = c.get("/web/app.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert "innerHTML" not in js.text  # network text is only ever inserted as text
    assert c.get("/web/style.css").headers["content-type"].startswith("text/css")
    assert c.get("/web/../api.py").status_code == 404
    assert c.get("/web/secret.txt").status_code == 404


def test_progress_route_gives_the_live_trace_then_the_buffer_state_then_404():
    c = TestClient(build_app(ProgressFake()))
    live = c.get("/v1/queries/live1/progress").json()
    assert live["phase"] == "collect" and live["proposals"][0]["peer"] == "12D3KooWA"
    assert c.get("/v1/queries/q1/progress").json() == {"query_id": "q1", "phase": "done", "state": "done"}
    r = c.get("/v1/queries/nope/progress")
    assert r.status_code == 404 and r.json()["error"]["code"] == "query_not_found"


# ------------------------------------------------------------------ real browser, real nodes

def test_browser_shows_a_busy_node_as_an_error_in_the_page():
    svc = ProgressFake()
    svc.busy = True

    def in_browser(base):
        with browser_page() as page, screenshot_on_exit(page, "busy"):
            page.goto(base + "/")
            res = ask_on_page(page, "Is anyone there?", timeout_s=60)
            assert res["query_id"] is None and res["answer"] == ""
            # inside the stream ("busy: ...") or, should the API refuse before streaming, "HTTP 429: ..."
            assert res["error"] in ("busy: prompt buffer full (64 queries)",
                                    "HTTP 429: prompt buffer full (64 queries)"), res["error"]
            assert [t["kind"] for t in res["trace"]][-1] == "error"
            return True
    assert serve_and(in_browser, svc)[0]


@contextlib.contextmanager
def screenshot_on_exit(page, name: str):
    """Save a screenshot of ``page`` whatever happens: ``-FAILED`` in the name on failure."""
    try:
        yield
    except BaseException:
        page.screenshot(path=str(artifacts_dir() / f"web-page-{name}-FAILED.png"), full_page=True)
        raise
    page.screenshot(path=str(artifacts_dir() / f"web-page-{name}.png"), full_page=True)


STAND_IN_DELAYS_S = (0.3, 1.5, 3.0)
"""Simulated generation times of the three stand-in nodes: proposals arrive one by one, so
the page can show them while the mesh is still deciding."""
DEADLINE_S = 10.0


@pytest.fixture(scope="module")
def stand_in_mesh():
    base = Path(tempfile.mkdtemp(prefix="p2pmoa-web-"))
    nodes: list[NodeProcess] = []
    try:
        for i, delay in enumerate(STAND_IN_DELAYS_S):
            nodes.append(NodeProcess(
                f"w{i}", base / f"w{i}", model=f"stand-in:m{i}", role=f"role {i}",
                bootstrap=[nodes[0].addr] if nodes else [],
                extra=["--proposers-max", "3", "--deadline-s", str(DEADLINE_S),
                       "--stand-in-delay-s", str(delay)]))
        for n in nodes:
            n.start()
        for n in nodes:
            n.wait_ready(60)
        wait_mesh(nodes, 60)
        # every peer's advertised model metadata has reached the node the browser will use
        poll_until(lambda: len(ps := nodes[0].get("/peers")["peers"]) == 2
                   and all("model_name" in p for p in ps), 60, "peers' node info")
        yield nodes
    finally:
        for n in nodes:
            n.stop()


@pytest.mark.real_net
def test_browser_asks_the_mesh_and_sees_answer_live_trace_and_peers(stand_in_mesh):
    nodes = stand_in_mesh
    with browser_page() as page, screenshot_on_exit(page, "stand-in"):
        page.goto(f"http://{nodes[0].api}/")
        page.wait_for_selector("tr.peer-row >> nth=1")
        rows = {r.get_attribute("data-peer"): r.inner_text() for r in page.query_selector_all("tr.peer-row")}
        assert set(rows) == {n.peer_id for n in nodes[1:]}
        for n, i in zip(nodes[1:], (1, 2)):
            assert f"stand-in:m{i}" in rows[n.peer_id] and "yes" in rows[n.peer_id]
        assert page.get_attribute("#metrics-link", "href") == "/metrics"
        assert "stand-in:m0" in page.inner_text("#node-card")

        # timeout from the configured service times: deadline + slowest generation, x3 for load
        res = ask_on_page(page, "What colour is the sky on a clear day?",
                          timeout_s=3 * (DEADLINE_S + max(STAND_IN_DELAYS_S)) + 30)
        assert not res["error"], res["error"]
        rec = nodes[0].get(f"/v1/queries/{res['query_id']}")
        assert rec["state"] == "done" and res["answer"] == rec["answer"]
        assert "sky" in res["answer"]  # the stand-in repeats the question it answers

        kinds = [t["kind"] for t in res["trace"]]
        assert kinds.count("proposal") == 3 and kinds.count("decision") == 1
        assert kinds.index("decision") > max(i for i, k in enumerate(kinds) if k == "proposal")
        # live: proposals were shown while the mesh was still deciding (answer still empty)
        live = [t for t in res["trace"] if t["kind"] == "proposal" and t["answer_empty"]]
        assert len(live) >= 2, res["trace"]
        table = {r.get_attribute("data-peer") for r in page.query_selector_all("tr.proposal-row")}
        assert table == {n.peer_id for n in nodes}
        chosen = page.query_selector("tr.proposal-row.chosen")
        assert chosen is not None and chosen.inner_text().split("\t")[1] in res["answer"]
        decision = page.inner_text("li.trace-item[data-kind=decision]")
        assert "pbft" in decision and "3/3 proposals" in decision
        # the buffer view counts the query once it has been admitted
        page.wait_for_function("() => /admitted\\s*[1-9]/.test(document.getElementById('buffer-state').innerText)")

        # score voting: every member's ballot is shown, then the decision by vote
        res = ask_on_page(page, "Why do leaves fall in autumn?", method="vote",
                          timeout_s=3 * (DEADLINE_S + max(STAND_IN_DELAYS_S)) + 30)
        assert not res["error"], res["error"]
        kinds = [t["kind"] for t in res["trace"]]
        assert kinds.count("vote") == 3 and kinds.count("proposal") == 3, kinds
        assert page.inner_text("li.trace-item[data-kind=decision]").startswith("decision by vote")


@pytest.mark.real_net
@pytest.mark.real_model
def test_browser_with_a_real_model_node(tmp_path):
    node = NodeProcess("web-real", tmp_path / "real", model="smollm2-135m",
                       extra=["--proposers-max", "1", "--deadline-s", "180", "--max-tokens", "16"]).start()
    try:
        node.wait_ready(180)
        with browser_page() as page, screenshot_on_exit(page, "real-model"):
            page.goto(f"http://{node.api}/")
            page.wait_for_function("() => /Q4_1, chat/.test(document.getElementById('node-card').innerText)")
            assert page.inner_text("#peers-table tbody") == "no peers connected"
            res = ask_on_page(page, "What is the capital of France? One word.", timeout_s=240)
            assert not res["error"], res["error"]
            assert "paris" in res["answer"].lower()
            row = page.inner_text("tr.proposal-row.chosen")
            assert "smollm2-135m@" in row
            assert page.inner_text("li.trace-item[data-kind=decision]").startswith("decision by pbft")
    finally:
        assert node.stop() == 0, node.tail()


@pytest.mark.real_net
def test_peers_command_shows_the_models_peers_advertise(stand_in_mesh, capsys):
    from p2pmoa.cli import main
    nodes = stand_in_mesh
    assert main(["peers", "--api", nodes[0].api]) == 0
    out = capsys.readouterr().out
    assert out.startswith("2 peers")
    for n, i in zip(nodes[1:], (1, 2)):
        line = next(ln for ln in out.splitlines() if n.peer_id in ln)
        assert f"model=stand-in:m{i} (stand-in)" in line and "space=stand-in:hashing/64" in line
