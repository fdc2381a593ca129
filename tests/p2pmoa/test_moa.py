"""MoA / SMoA pipeline logic, driven with the deterministic StandInGenerator and the hashing
stand-in embedder (both named as stand-ins), plus property tests of the judge and moderator."""
from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pmoa import moa
from p2pmoa.embed import HashingEmbedder, l2_normalise
from p2pmoa.llm import StandInGenerator


def _cfg(mode="smoa", **kw):
    base = dict(mode=mode, layers=2, proposers=moa.make_proposers(4, [None], moa.DEFAULT_ROLES), k=2)
    base.update(kw)
    return moa.MoAConfig(**base)


def agreeing(messages, params):
    return "Jupiter is the largest planet in the solar system."


def test_moa_runs_every_layer_and_counts_calls():
    trace = moa.run_local("Largest planet?", _cfg("moa"), {None: StandInGenerator()})
    assert len(trace["layers"]) == 2
    assert all(len(layer["responses"]) == 4 for layer in trace["layers"])
    assert trace["totals"]["calls"] == 2 * 4 + 1            # proposers + aggregator
    assert trace["totals"]["embed_calls"] == 0
    json.dumps(trace)                                         # the trace is JSON as promised


def test_second_layer_sees_first_layer_answers():
    seen = []
    def reply(messages, params):
        seen.append(messages[0].content)
        return f"answer {len(seen)}"
    moa.run_local("Q?", _cfg("moa"), {None: StandInGenerator(reply=reply)})
    assert "answer 1" not in seen[0]
    assert all("answer 1" in s and "answer 4" in s for s in seen[4:8])  # layer 2 prompts


def test_smoa_stops_early_when_kept_answers_agree():
    trace = moa.run_local("Largest planet?", _cfg("smoa"), {None: StandInGenerator(reply=agreeing)},
                          HashingEmbedder())
    assert trace["stopped_early"] is True
    assert len(trace["layers"]) == 1
    assert trace["layers"][0]["moderator"]["stop"] is True
    moa_trace = moa.run_local("Largest planet?", _cfg("moa"), {None: StandInGenerator(reply=agreeing)})
    assert trace["totals"]["calls"] < moa_trace["totals"]["calls"]


def test_smoa_keeps_k_and_continues_when_answers_disagree():
    answers = iter(["alpha beta gamma", "delta epsilon zeta", "eta theta iota", "kappa lambda mu"] * 10)
    trace = moa.run_local("Q?", _cfg("smoa", layers=2),
                          {None: StandInGenerator(reply=lambda m, p: next(answers))}, HashingEmbedder())
    assert len(trace["layers"]) == 2 and trace["stopped_early"] is False
    assert len(trace["layers"][0]["judge"]["kept"]) == 2
    # the second layer's prompts contain only the kept two answers
    assert trace["layers"][0]["moderator"]["stop"] is False


def test_never_moderator_runs_all_layers():
    trace = moa.run_local("Q?", _cfg("smoa", moderator="never"), {None: StandInGenerator(reply=agreeing)},
                          HashingEmbedder())
    assert len(trace["layers"]) == 2


def test_llm_judge_unparseable_output_falls_back_to_agreement_not_random():
    # the judge prompt gets a reply with no numbers at all
    def reply(messages, params):
        return "I like them all" if "grade answers" in messages[0].content else f"answer {params.seed}"
    runs = [moa.run_local("Q?", _cfg("smoa", judge="llm", moderator="never"),
                          {None: StandInGenerator(reply=reply)}, HashingEmbedder()) for _ in range(2)]
    j = runs[0]["layers"][0]["judge"]
    assert j["method"] == "agreement-fallback"
    assert runs[0]["layers"][0]["judge"]["kept"] == runs[1]["layers"][0]["judge"]["kept"]


def test_llm_judge_picks_are_used_when_they_parse():
    def reply(messages, params):
        return "Best: 4, 2" if "grade answers" in messages[0].content else f"answer {params.seed}"
    trace = moa.run_local("Q?", _cfg("smoa", judge="llm", moderator="never"),
                          {None: StandInGenerator(reply=reply)}, HashingEmbedder())
    assert trace["layers"][0]["judge"]["kept"] == [3, 1]
    assert trace["layers"][0]["judge"]["method"] == "llm"


def test_single_mode_is_one_call():
    trace = moa.run_local("Q?", _cfg("single"), {None: StandInGenerator()})
    assert trace["totals"]["calls"] == 1 and trace["answer"]


@pytest.mark.parametrize("kw,field", [({"k": 4}, "k"), ({"k": 0}, "k"), ({"layers": 0}, "layers"),
                                      ({"mode": "x"}, "mode"), ({"judge": "dice"}, "judge")])
def test_bad_config_is_a_typed_error_naming_the_field(kw, field):
    with pytest.raises(moa.MoAConfigError, match=field):
        _cfg(**{"mode": "smoa", **kw})


def test_empty_query_refused():
    with pytest.raises(moa.MoAConfigError):
        moa.run_local("  ", _cfg("moa"), {None: StandInGenerator()})


def test_roles_generated_once_then_cached(tmp_path):
    g = StandInGenerator(reply=lambda m, p: "1. You are a chemist who checks formulas.\n2. You are a poet.\nnoise")
    roles, source = moa.generate_roles("chemistry questions", "answer briefly", 3, g, cache_dir=tmp_path)
    assert source == "generated+defaults" and len(roles) == 3
    assert roles[0] == "You are a chemist who checks formulas."
    again, source2 = moa.generate_roles("chemistry questions", "answer briefly", 3, g, cache_dir=tmp_path)
    assert source2 == "cache" and again == roles and g.calls == 1


def test_roles_file_json_and_lines(tmp_path):
    (tmp_path / "r.json").write_text(json.dumps(["You are A.", "You are B."]))
    (tmp_path / "r.txt").write_text("You are A.\n\nYou are B.\n")
    assert moa.load_roles(tmp_path / "r.json") == moa.load_roles(tmp_path / "r.txt") == ["You are A.", "You are B."]
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(moa.MoAConfigError):
        moa.load_roles(tmp_path / "bad.json")


# ------------------------------------------------------------------ properties

vectors = st.integers(2, 8).flatmap(lambda n: st.lists(
    st.lists(st.floats(-1, 1, allow_nan=False), min_size=4, max_size=4), min_size=n, max_size=n))


@settings(max_examples=300, deadline=None)
@given(text=st.text(), rows=vectors, k=st.integers(1, 8))
def test_any_judge_output_gives_k_distinct_valid_picks(text, rows, k):
    vecs = l2_normalise(np.array(rows, dtype=np.float32) + 1e-3)
    k = min(k, len(vecs))
    kept, method = moa.select(vecs, k, text)
    assert len(kept) == k == len(set(kept))
    assert all(0 <= i < len(vecs) for i in kept)
    assert method in {"llm", "llm+centrality", "centrality-fallback"}
    assert kept == moa.select(vecs, k, text)[0]               # deterministic
    texts = [f"answer {int(r[0] * 3)}" for r in rows]
    kept2, method2 = moa.select(None, k, text, texts, "Q?")
    assert len(kept2) == k == len(set(kept2)) and all(0 <= i < len(texts) for i in kept2)
    assert method2 in {"llm", "llm+agreement", "agreement-fallback"}


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_any_moderator_output_is_a_decision_or_documented_fallback(text):
    assert moa.parse_moderator_output(text) in (True, False, None)


@given(st.lists(st.integers(1, 4), min_size=2, max_size=2, unique=True))
def test_judge_parser_reads_common_formats(picks):
    a, b = picks
    for text in (f"Best: {a}, {b}", f"[{a},{b}]", f'{{"best": [{a}, {b}]}}', f"Response {a} and Response {b}",
                 f"{a} and {b}"):
        assert moa.parse_judge_output(text, 4, 2) == [a - 1, b - 1]


def test_judge_parser_takes_no_digits_from_copied_answer_text():
    copied = "Response text: 16 + 59 = 75. The sum 1 + 2 = 3 is also right."
    assert moa.parse_judge_output(copied, 4, 2) == []
    assert moa.parse_judge_output("The answer is 3 apples; 2 were eaten.", 4, 2) == []
    assert moa.parse_judge_output("I checked 4 answers.\nBest: 2, 3", 4, 2) == [1, 2]


def test_moderator_parser_examples():
    assert moa.parse_moderator_output("Yes, they agree.") is True
    assert moa.parse_moderator_output("**No** - continue the discussion") is False
    assert moa.parse_moderator_output("¯\\_(ツ)_/¯") is None
    # "yes" counts only as the answer, not words inside copied or evasive text
    assert moa.parse_moderator_output("The final answer: they agree, we are done.") is None
    assert moa.parse_moderator_output("Response 1: Paris. Response 2: yes, Paris.") is None
    assert moa.parse_moderator_output("Yesterday it rained.") is None


# ------------------------------------------------------------------ agreement in the pipeline

CONTRADICTIONS = [  # issue 11: the kept answers the old moderator called agreeing
    ("How many legs does a spider have?", ["8", "no legs", "It is subjective.", "a pair"]),
    ("In what year did World War II end?", ["2022", "1945", "1945", "1918"]),
    ("What is the largest planet in the solar system?",
     ["Jupiter is the largest planet.", "Neptune is the largest planet.", "Saturn.", "Mars."]),
    ("What is the capital of Australia?", ["Canberra.", "Sydney is the capital of Australia.", "Sydney.", "Perth."]),
    ("At what temperature does water boil at sea level?", ["100 °C", "50 °C", "212 °F", "90 °C"]),
]


@pytest.mark.parametrize("query,answers", CONTRADICTIONS)
def test_agreement_moderator_does_not_stop_on_contradicting_answers(query, answers):
    it = iter(answers * 3)
    trace = moa.run_local(query, _cfg("smoa", layers=2, k=2),
                          {None: StandInGenerator(reply=lambda m, p: next(it))})
    first = trace["layers"][0]
    kept = [answers[i] for i in first["judge"]["kept"]]
    from p2pmoa import agreement
    if not agreement.all_agree(kept, query):
        assert first["moderator"]["stop"] is False and "disagree" in first["moderator"]["reason"]
        assert len(trace["layers"]) == 2
    # the judge keeps the largest agreeing cluster first: 1945 twice beats 2022 and 1918
    if "World War" in query:
        assert sorted(first["judge"]["kept"]) == [1, 2]
        assert first["moderator"]["stop"] is True and trace["answer"] == "1945"
        assert trace["aggregator"]["skipped"] is True


def test_agreement_moderator_stops_when_kept_answers_say_the_same_in_other_words():
    answers = iter(["Jupiter.", "The largest planet is Jupiter.", "Saturn.", "It's Jupiter, a gas giant."] * 3)
    trace = moa.run_local("What is the largest planet in the solar system?", _cfg("smoa"),
                          {None: StandInGenerator(reply=lambda m, p: next(answers))})
    first = trace["layers"][0]
    assert first["judge"]["kept"] == [0, 1] and first["judge"]["clusters"][0] == [0, 1, 3]
    assert first["moderator"]["stop"] is True and "agree" in first["moderator"]["reason"]
    assert trace["answer"] == "Jupiter." and trace["totals"]["calls"] == 4   # no aggregator call


def test_llm_moderator_reason_is_the_llm_reply_not_the_embedding_rule():
    def reply(messages, params):
        if "discussion is finished" in messages[0].content:
            return "No, they differ."
        return "Jupiter."
    trace = moa.run_local("Largest planet?", _cfg("smoa", moderator="llm"), {None: StandInGenerator(reply=reply)})
    m = trace["layers"][0]["moderator"]
    assert m["method"] == "llm" and m["stop"] is False and "No, they differ." in m["reason"]


def test_cascade_answers_from_the_cheap_tier_when_it_agrees_and_escalates_otherwise():
    cfg = moa.MoAConfig(mode="cascade", proposers=moa.make_proposers(4, [None], moa.DEFAULT_ROLES))
    it = iter(["Paris", "It is Paris.", "Lyon", "Lyon"])
    t = moa.run_local("Capital of France?", cfg, {None: StandInGenerator(reply=lambda m, p: next(it))})
    assert t["exit_level"] == 1 and t["answer"] == "Paris" and t["totals"]["calls"] == 2
    it = iter(["Paris", "Lyon", "Lyon", "Marseille"])
    t = moa.run_local("Capital of France?", cfg, {None: StandInGenerator(reply=lambda m, p: next(it))})
    assert t["exit_level"] == 2 and t["answer"] == "Lyon" and t["totals"]["calls"] == 4
    it = iter(["Paris", "Lyon", "Nice", "Marseille"])
    t = moa.run_local("Capital of France?", cfg, {None: StandInGenerator(reply=lambda m, p: next(it))})
    assert t["exit_level"] == 3 and t["totals"]["calls"] == 4


def test_judge_keeps_one_whole_cluster_when_two_clusters_tie():
    # 2-2 split: keeping one answer of each cluster made the moderator see disagreement and
    # sent two agreeing answers through an aggregator; the judge keeps one cluster whole
    texts = ["Anna has 17 stamps left.", "10", "She has 17 stamps.", "10."]
    kept, method = moa.select(None, 2, None, texts, "Anna had 19 stamps and gave away 2. How many are left?")
    assert method == "agreement" and sorted(kept) == [0, 2]
    it = iter(texts)
    trace = moa.run_local("Anna had 19 stamps and gave away 2. How many are left?", _cfg("smoa"),
                          {None: StandInGenerator(reply=lambda m, p: next(it))})
    assert trace["stopped_early"] and trace["totals"]["calls"] == 4 and "17" in trace["answer"]


def test_proposer_seed_sets_the_call_seed_per_layer():
    seen = []
    cfg = _cfg("moa", proposers=tuple(moa.Proposer(seed=100 * i) for i in range(1, 5)))
    moa.run_local("Q?", cfg, {None: StandInGenerator(reply=lambda m, p: seen.append(p.seed) or "x")})
    assert seen[:8] == [100, 200, 300, 400, 101, 201, 301, 401]
