"""Logs (``--log-format text|json``, libp2p through the same handler, one line per query) and
the node's metrics (build info, process, tokens by model, queries by method and outcome,
admission refusals by reason)."""
from __future__ import annotations

import io
import json
import logging
import re

import pytest

from node.metrics import Metrics, register_process_metrics
from node.procs import NodeProcess
from p2pmoa.logconf import configure_logging


@pytest.fixture
def restore_logging():
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    yield
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in saved[0]:
        root.addHandler(h)
    root.setLevel(saved[1])
    logging.captureWarnings(False)


def test_json_format_keeps_extras_and_libp2p_goes_through_the_same_handler(restore_logging):
    import libp2p  # noqa: F401 - its import-time set-up detaches the "libp2p" logger
    from p2pmoa.logconf import adopt_library_loggers
    buf = io.StringIO()
    configure_logging(logging.INFO, "json", stream=buf)
    adopt_library_loggers()
    logging.getLogger("node.query").info("query %s done", "q1", extra={"query_id": "q1", "time_s": 0.5})
    logging.getLogger("libp2p.pubsub.gossipsub").warning("peer %s misbehaved", "P")
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("x").exception("failed")
    lines = [json.loads(ln) for ln in buf.getvalue().splitlines()]
    assert lines[0]["msg"] == "query q1 done" and lines[0]["query_id"] == "q1" and lines[0]["time_s"] == 0.5
    assert lines[0]["level"] == "INFO" and lines[0]["ts"].endswith("Z")
    assert lines[1] == {**lines[1], "logger": "libp2p.pubsub.gossipsub", "level": "WARNING",
                        "msg": "peer P misbehaved"}
    assert "ValueError: boom" in lines[2]["exc"]


def test_text_format_is_one_classic_line(restore_logging):
    buf = io.StringIO()
    configure_logging(logging.INFO, "text", stream=buf)
    logging.getLogger("libp2p.network.swarm").warning("dial failed")
    assert re.fullmatch(r"\S+ \S+ WARNING libp2p\.network\.swarm: dial failed\n", buf.getvalue())


def test_process_metrics_are_read_at_scrape_time():
    m = Metrics()
    register_process_metrics(m)
    text = m.render()
    rss = float(re.search(r"^process_resident_memory_bytes (\S+)$", text, re.M).group(1))
    fds = float(re.search(r"^process_open_fds (\S+)$", text, re.M).group(1))
    cpu = float(re.search(r"^process_cpu_seconds_total (\S+)$", text, re.M).group(1))
    assert rss > 10e6 and fds >= 3 and cpu > 0
    assert "# TYPE process_cpu_seconds_total counter" in text


def _metric(text: str, name: str, **labels) -> float | None:
    for line in text.splitlines():
        m = re.match(rf"{re.escape(name)}(\{{[^}}]*\}})? (\S+)$", line)
        if m and all(f'{k}="{v}"' in (m.group(1) or "") for k, v in labels.items()):
            return float(m.group(2))
    return None


@pytest.mark.real_net
def test_node_with_json_logs_logs_each_query_once_and_exports_its_metrics(tmp_path):
    node = NodeProcess("obs", tmp_path / "obs", model="stand-in:obs",
                       extra=["--log-format", "json", "--proposers-max", "1", "--deadline-s", "30"]).start()
    try:
        node.wait_ready(60)
        ask = {"model": "p2pmoa/pbft", "messages": [{"role": "user", "content": "Why is the sky blue?"}],
               "p2pmoa": {"query_id": "obs-q1"}}
        status, body = node.post("/v1/chat/completions", ask, timeout_s=120)
        assert status == 200, body
        status, body = node.post("/v1/chat/completions", ask, timeout_s=60)  # same id again
        assert status == 409, body
        text = node.get("/metrics")
    finally:
        assert node.stop() == 0, node.tail()
    lines = node.log_path.read_text().splitlines()
    records = [json.loads(ln) for ln in lines]  # every line, libp2p's included, is JSON
    assert any(r["logger"].startswith("node.transport") for r in records)
    queries = [r for r in records if r["logger"] == "node.query"]
    assert [(q["query_id"], q["method"], q["outcome"]) for q in queries] == [
        ("obs-q1", "pbft", "decided"), ("obs-q1", "pbft", "duplicate")]
    assert all(q["level"] == "INFO" and q["time_s"] > 0 for q in queries)

    assert _metric(text, "p2pmoa_build_info", version="0.1.0") == 1
    assert _metric(text, "process_resident_memory_bytes") > 10e6
    assert _metric(text, "process_open_fds") > 3
    assert _metric(text, "process_cpu_seconds_total") > 0
    assert _metric(text, "p2pmoa_queries_total", method="pbft", outcome="decided") == 1
    assert _metric(text, "p2pmoa_queries_total", method="pbft", outcome="duplicate") == 1
    assert _metric(text, "p2pmoa_admission_refusals_total", reason="duplicate") == 1
    assert _metric(text, "p2pmoa_admission_refusals_total", reason="full") == 0
    tokens = _metric(text, "p2pmoa_tokens_generated_total", model="stand-in:obs")
    prompt = _metric(text, "p2pmoa_prompt_tokens_total", model="stand-in:obs")
    assert tokens and tokens > 0 and prompt and prompt > 0
