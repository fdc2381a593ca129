"""The real backends: both packaged GGUF models through llama.cpp, and the mesh embedder.

Few and short (max_tokens <= 24); each model is loaded once per module.
"""
from __future__ import annotations

import numpy as np
import pytest

from p2pmoa import moa
from p2pmoa.effects import ChatMessage, GenParams
from p2pmoa.embed import EmbeddingSpaceMismatch, HashingEmbedder, LlamaEmbedder, require_same_space
from p2pmoa.llm import EmptyPrompt, LlamaGenerator
from p2pmoa.models import ModelNotFound, NotGGUF, resolve

pytestmark = pytest.mark.real_model

Q = [ChatMessage("system", "You are a helpful assistant."), ChatMessage("user", "What is the capital of France?")]


@pytest.fixture(scope="module")
def smol():
    return LlamaGenerator.from_name("smollm2-135m")


@pytest.fixture(scope="module")
def gemma():
    return LlamaGenerator.from_name("gemma3-270m")


@pytest.fixture(scope="module")
def embedder():
    return LlamaEmbedder()


@pytest.mark.parametrize("which", ["smol", "gemma"])
def test_packaged_models_answer_and_count_tokens(which, request):
    g = request.getfixturevalue(which)
    r = g.generate(Q, GenParams(max_tokens=16, temperature=0.0))
    assert r.text, "a real model returned nothing"
    assert r.prompt_tokens > 5 and 1 <= r.completion_tokens <= 16
    assert r.llm_s > 0
    name = "smollm2-135m" if which == "smol" else "gemma3-270m"
    assert r.model_id.startswith(name + "@") and len(r.model_id.split("@")[1]) == 16


def test_base_model_is_prompted_as_completion(gemma, smol):
    assert gemma.chat is False and smol.chat is True
    r = gemma.generate(Q, GenParams(max_tokens=24, temperature=0.0))
    assert "Question:" not in r.text                     # stopped before inventing the next turn
    assert "paris" in r.text.lower()


def test_same_seed_same_answer(smol):
    p = GenParams(max_tokens=12, temperature=0.8, seed=7)
    assert smol.generate(Q, p).text == smol.generate(Q, p).text


@pytest.mark.parametrize("which", ["smol", "gemma"])
def test_a_model_rates_the_right_answer_above_a_wrong_one_and_nothing_for_nothing(which, request):
    g = request.getfixturevalue(which)
    r = g.rate("What is the capital of France?", ["Paris", "Banana", "", "Paris"])
    assert r[0] is not None and r[1] is not None and r[2] is None
    assert r[0] > r[1], r  # a mean log-probability per token: the capital is far likelier
    assert r[3] == r[0] and r.tokens > 0
    # the batched decode equals scoring the same text token by token, and the rating is that
    # log-probability minus the same after the question-less template (the answer's prior)
    import math
    from p2pmoa.llm import rate_answers, rating_prompt
    llm = g._llm

    def one_pass(prompt: str) -> float:
        toks = llm.tokenize(prompt.encode(), add_bos=True)
        ans = llm.tokenize(b" Paris", add_bos=False) + llm.tokenize(b"\n", add_bos=False)[-1:]
        total = 0.0
        llm.reset()
        llm.eval(toks)
        for t in ans:  # token by token: the logits after each, then feed it
            row = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),)).astype(np.float64)
            total += row[t] - row.max() - math.log(np.exp(row - row.max()).sum())
            llm.eval([t])
        llm.reset()
        return total / len(ans)

    with g._lock:
        cond = one_pass(rating_prompt("What is the capital of France?"))
        prior = one_pass(rating_prompt(""))
        raw = rate_answers(llm, "What is the capital of France?", ["Paris"], prior_weight=0.0)
    assert raw[0] == pytest.approx(cond, abs=0.05)
    assert r[0] == pytest.approx(cond - prior, abs=0.1)
    assert cond > prior  # the question makes its capital likelier than any answer would be
    # the prior depends on the answer only: asked again, it is not evaluated again
    again = g.rate("What is the capital of Italy?", ["Paris", "Banana", "", "Paris"])
    fresh = rate_answers(llm, "What is the capital of Italy?", ["Paris", "Banana"])
    assert list(again[:2]) == pytest.approx(list(fresh), abs=1e-6) and again[2] is None
    assert again.tokens < fresh.tokens


def test_empty_prompt_refused_before_model_work(smol):
    with pytest.raises(EmptyPrompt):
        smol.generate([ChatMessage("user", "   ")], GenParams())


def test_embeddings_share_one_named_space(embedder):
    v = embedder.embed(["The cat sleeps on the sofa.", "A cat naps on the couch.", "Interest rates rose."])
    assert v.shape == (3, embedder.dim) and np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2               # paraphrase far closer than unrelated
    assert embedder.space_id.startswith("gemma3-270m@") and "/centred-" in embedder.space_id
    require_same_space(embedder.space_id, LlamaEmbedder().space_id)   # every node derives the same space
    with pytest.raises(EmbeddingSpaceMismatch):
        require_same_space(embedder.space_id, HashingEmbedder().space_id)


def test_missing_and_non_gguf_files_say_what_is_wrong(tmp_path):
    with pytest.raises(ModelNotFound, match=str(tmp_path / "nope.gguf")):
        resolve(str(tmp_path / "nope.gguf"))
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"NOTGGUF" * 10)
    with pytest.raises(NotGGUF, match="not a GGUF"):
        resolve(str(bad))


def test_real_smoa_pipeline_on_a_mixed_pair(smol, gemma, embedder):
    cfg = moa.MoAConfig(mode="smoa", layers=2, proposers=moa.make_proposers(3, ["smollm2-135m", "gemma3-270m"],
                                                                             moa.DEFAULT_ROLES),
                        k=2, aggregator_model="smollm2-135m", max_tokens=16)
    gens = {"smollm2-135m": smol, "gemma3-270m": gemma, None: smol}
    trace = moa.run_local("What is 2 + 2?", cfg, gens, embedder)
    models = {r["model"].split("@")[0] for r in trace["layers"][0]["responses"]}
    assert models == {"smollm2-135m", "gemma3-270m"}
    assert len(trace["layers"][0]["judge"]["kept"]) == 2
    assert trace["totals"]["tokens"] > 0 and trace["totals"]["llm_s"] > 0
    assert trace["answer"]
