"""The ONE node test with a real GGUF model: a daemon running SmolLM2-135M through llama.cpp
answers through its OpenAI-compatible API (embedder: hashing stand-in, to keep it short), and
rates a round's candidates with that model for method vote."""
from __future__ import annotations

import pytest

from node.procs import NodeProcess

pytestmark = [pytest.mark.real_net, pytest.mark.real_model]


def test_real_model_smollm2_daemon_answers_through_the_api(tmp_path):
    node = NodeProcess("real", tmp_path / "real", model="smollm2-135m",
                       extra=["--proposers-max", "1", "--deadline-s", "180", "--max-tokens", "16"]).start()
    try:
        node.wait_ready(180)
        status, body = node.post("/v1/chat/completions", {
            # greedy: one sample at the default temperature 0.7 once answered "France" (the node's
            # seed comes from its fresh identity, so the sample differs every run)
            "model": "p2pmoa/pbft", "max_tokens": 16, "temperature": 0.0,
            "messages": [{"role": "user", "content": "What is the capital of France? One word."}]},
            timeout_s=240)
        assert status == 200, body
        trace = body["p2pmoa_trace"]
        (prop,) = trace["proposals"]
        assert prop["model_id"].startswith("smollm2-135m@")      # the real GGUF, by its hash
        assert prop["completion_tokens"] > 0 and prop["llm_s"] > 0
        assert body["choices"][0]["message"]["content"] == prop["answer"]
        assert "paris" in prop["answer"].lower()
        # method vote: the member rates the candidates with its own real model (issue 11)
        status, body = node.post("/v1/chat/completions", {
            "model": "p2pmoa/vote", "max_tokens": 8,
            "messages": [{"role": "user", "content": "What is the capital of Italy? One word."}]},
            timeout_s=240)
        assert status == 200, body
        rated = [ln for ln in node.get("/metrics").splitlines() if ln.startswith("p2pmoa_rate_seconds_count")]
        assert rated and float(rated[0].split()[-1]) >= 1, rated
    finally:
        assert node.stop() == 0, node.tail()
