"""Record real answers with a real GGUF model, then replay them through the production protocol."""
from __future__ import annotations

import json

import pytest

from simulations.agents import ReplayAgent, record
from simulations.mesh import MeshSpec, run_mesh
from simulations.network import TopologySpec, build_topology


@pytest.mark.real_model
def test_recorded_real_answers_replay_through_the_mesh(tmp_path):
    out = tmp_path / "answers.jsonl"
    q = "What is the capital of France?"
    n = record([q], ["smollm2-135m"], samples=2, out=out, max_tokens=8, progress=False)
    assert n == 2
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert all(r["question"] == q and r["answer"] and len(r["embedding"]) > 8 for r in recs)
    assert all(not r["model_id"].startswith("stand-in") for r in recs)
    agent = ReplayAgent.from_file(out)
    g = build_topology(TopologySpec(kind="regular", n=8, degree=3), 1)
    res = run_mesh(g, MeshSpec(queries=2, method="averaging", proposers=4, replay=str(out), alpha_s=0.2,
                               horizon_s=40.0), 1)
    answers = {r["answer"] for r in recs}
    assert all(row["delivered"] and row["answer"] in answers for row in res.rows), res.rows
    assert agent.questions == [q]
