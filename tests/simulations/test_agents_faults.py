"""LLM stand-ins and Byzantine placements."""
from __future__ import annotations

import json
import random

import networkx as nx
import numpy as np
import pytest

from p2pmoa.effects import ChatMessage, Embed, Generate
from simulations.agents import ReplayAgent, SyntheticAgent, load_replay
from simulations.errors import AgentError, FaultSpecError
from simulations.faults import FaultSpec, FaultyAgent, add_sybils, place, place_mask
from simulations.network import TopologySpec, build_topology


def gen_job(q):
    return Generate("j", (ChatMessage("system", "role"), ChatMessage("user", q)))


def test_synthetic_answers_say_what_they_are_and_embeddings_follow_answers():
    a = SyntheticAgent(0.5, seed=3)
    texts = [a.generate(i, gen_job("What is 2+2?")).text for i in range(40)]
    assert all(t.startswith("[synthetic]") for t in texts)
    assert len(set(texts)) > 1
    v = np.stack([a.embed(i, Embed("e", (t,)))[0] for i, t in enumerate(texts)])
    same = [(i, j) for i in range(40) for j in range(i) if texts[i] == texts[j]]
    diff = [(i, j) for i in range(40) for j in range(i) if texts[i] != texts[j]]
    assert min(float(v[i] @ v[j]) for i, j in same) > 0.9
    assert max(float(v[i] @ v[j]) for i, j in diff) < 0.6
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    with pytest.raises(AgentError):
        SyntheticAgent(1.5)


def test_replay_agent_round_trip_and_bad_files(tmp_path):
    f = tmp_path / "r.jsonl"
    recs = [{"question": "q1", "answer": f"a{i}", "model_id": "m", "space_id": "s", "embedding": [1.0, float(i)],
             "prompt_tokens": 3, "completion_tokens": 2, "llm_s": 0.5, "sample": i} for i in range(3)]
    f.write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    agent = ReplayAgent.from_file(f)
    g = agent.generate(4, gen_job("q1"))
    assert g.text == "a1" and g.model_id == "replay:m"
    assert agent.embed(0, Embed("e", ("a2",))).shape == (1, 2)
    with pytest.raises(AgentError, match="no recorded answer"):
        agent.generate(0, gen_job("other"))
    with pytest.raises(AgentError, match="no recorded embedding"):
        agent.embed(0, Embed("e", ("never said",)))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q"}\n')
    with pytest.raises(AgentError, match="not a replay record"):
        load_replay(bad)
    with pytest.raises(AgentError, match="not found"):
        load_replay(tmp_path / "missing.jsonl")


def test_faulty_agent_colludes_and_poisons():
    inner = SyntheticAgent(0.0, seed=1)
    fa = FaultyAgent(inner, [1, 2], "colluding_wrong")
    assert fa.generate(0, gen_job("q"), random.Random(0)).text == inner.candidate_text("q", 0)
    assert fa.generate(1, gen_job("q"), random.Random(0)).text == fa.generate(2, gen_job("q"), random.Random(0)).text \
        == inner.candidate_text("q", 1)
    far = FaultyAgent(inner, [1], "poison_far")
    t = inner.candidate_text("q", 0)
    honest = far.embed(0, Embed("e", (t,)), random.Random(0))[0]
    poisoned = far.embed(1, Embed("e", (t,)), random.Random(0))[0]
    assert float(honest @ poisoned) < -0.9


def test_placements():
    g = build_topology(TopologySpec(kind="barabasi_albert", n=200, degree=2), 4)
    hubs = place(g, 0.05, "highest_degree", random.Random(0))
    assert len(hubs) == 10
    assert min(g.degree(v) for v in hubs) >= sorted((d for _, d in g.degree()), reverse=True)[9]
    reg = place(g, 0.1, "region", random.Random(0))
    assert len(reg) == 20 and nx.is_connected(g.subgraph(reg))
    assert place(g, 0.1, "random", random.Random(1)) == place(g, 0.1, "random", random.Random(1))
    mask = place_mask(1000, 0.1, "random", np.random.default_rng(0))
    assert mask.sum() == 100
    with pytest.raises(FaultSpecError):
        place(g, 1.0, "random", random.Random(0))
    with pytest.raises(FaultSpecError):
        FaultSpec("lying", 0.1)
    with pytest.raises(FaultSpecError):
        FaultSpec("silent", 0.1, "everywhere")


def test_sybils_attach_to_their_operator():
    g = nx.cycle_graph(10)
    ids = add_sybils(g, 3, 5, random.Random(0))
    assert ids == list(range(10, 15)) and all(g.has_edge(s, 3) for s in ids)
