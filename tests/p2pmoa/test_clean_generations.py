"""Clean generations from both packaged models (issue 9): a user sees the answer only, with no
echoed ``Answer:``/``Question:`` scaffolding and no role text, and the base model stops after
its answer instead of running to the token limit. Real models, few short calls."""
from __future__ import annotations

import re

import pytest

from p2pmoa.effects import ChatMessage, GenParams
from p2pmoa.llm import LlamaGenerator, clean_completion, render_completion_prompt
from p2pmoa.moa import DEFAULT_ROLES

pytestmark = pytest.mark.real_model

QUESTIONS = ["What is the capital of Japan?", "What is 12 + 17?", "Is the Sun a star?"]
SCAFFOLD = re.compile(r"(?im)^\s*(?:question|answer)\s*:")


def _role_leak(text: str) -> bool:
    low = text.lower()
    return "you are" in low or any(r.lower().rstrip(".")[8:40] in low for r in DEFAULT_ROLES)


@pytest.mark.parametrize("name", ["gemma3-270m", "smollm2-135m"])
def test_packaged_models_return_just_their_answer(name):
    g = LlamaGenerator.from_name(name)
    limit = 32
    hit_limit = 0
    for i, q in enumerate(QUESTIONS):
        role = DEFAULT_ROLES[(i + 5) % len(DEFAULT_ROLES)]   # includes the encyclopedia editor
        r = g.generate([ChatMessage("system", role), ChatMessage("user", q)],
                       GenParams(max_tokens=limit, temperature=0.7, seed=i))
        assert r.text.strip(), f"{name} answered nothing to {q!r}"
        assert not SCAFFOLD.search(r.text), f"{name} echoed scaffolding: {r.text!r}"
        assert not _role_leak(r.text), f"{name} leaked its role: {r.text!r}"
        hit_limit += r.completion_tokens >= limit
    if name == "gemma3-270m":
        # one short line per answer: the base model stops at its answer (measured 5/40 -> 0/40)
        assert hit_limit == 0


def test_completion_prompt_and_cleaning_cut_what_a_base_model_writes_after_its_answer():
    p = render_completion_prompt([ChatMessage("system", "You are an encyclopedia editor."),
                                  ChatMessage("user", "Capital of Japan?")])
    assert p.endswith("Question: Capital of Japan?\nAnswer:") and "Answer: Rome" in p
    role = "You are an encyclopedia editor. Write a short, neutral, factual answer."
    assert clean_completion("Paris\nAnswer: Paris\nAnswer: Paris", role) == "Paris"
    assert clean_completion("Tokyo\n\na concise encyclopedia editor", role) == "Tokyo"
    assert clean_completion(" Tokyo You are an encyclopedia editor.", role) == "Tokyo"
    assert clean_completion("\nAnswer: 29\nQuestion: next", role) == "29"
