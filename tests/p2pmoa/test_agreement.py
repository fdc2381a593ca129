"""Answer agreement (p2pmoa.agreement) and the consensus methods that decide on it.

The labelled sets are tests/data/agreement_pairs.json (built by make_agreement_pairs.py) and
tests/data/agreement_holdout.json (written after the rule was frozen, never tuned on)."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pmoa import agreement as ag
from p2pmoa.identity import Ed25519Identity, seal
from p2pmoa.llm import StandInGenerator
from p2pmoa.messages import Proposal, decode_body, encode_body, pack
from p2pmoa.testing import make_mesh

DATA = Path(__file__).resolve().parent.parent / "data"


def roc_auc(pos, neg):
    return sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg) / (len(pos) * len(neg))


@pytest.mark.parametrize("name,auc_min", [("agreement_pairs.json", 0.9), ("agreement_holdout.json", 0.9)])
def test_agreement_separates_agreeing_from_contradicting_answers(name, auc_min):
    pairs = json.loads((DATA / name).read_text())
    pos = [ag.agreement(p["a"], p["b"], p["question"]) for p in pairs if p["label"] == "agree"]
    neg = [ag.agreement(p["a"], p["b"], p["question"]) for p in pairs if p["label"] == "contradict"]
    if name == "agreement_pairs.json":
        assert len(pos) >= 150 and len(neg) >= 150
    assert roc_auc(pos, neg) >= auc_min
    # and the threshold that every method uses classifies most pairs right
    right = sum(s >= ag.AGREE_THRESHOLD for s in pos) + sum(s < ag.AGREE_THRESHOLD for s in neg)
    assert right / (len(pos) + len(neg)) >= 0.9


@pytest.mark.parametrize("q,a,b", [  # issue 11: the old space scored these 0.59-0.99
    ("What is the largest planet?", "Jupiter is the largest planet.", "Neptune is the largest planet."),
    ("What is the capital of Australia?", "Canberra is the capital of Australia.", "Sydney is the capital of Australia."),
    ("At what temperature does water boil at sea level?", "Water boils at 100 °C.", "Water boils at 50 °C."),
    ("How many legs does a spider have?", "8", "no legs"),
    ("How many legs does a spider have?", "A spider has 8 legs.", "It is subjective."),
    ("In what year did World War II end?", "2022", "1945"),
    ("What is 7 × 2?", "7 × 2 = 14", "7 × 2 = 7 × 2 + 2 ="),
    ("What is the capital of Poland?", "Warsaw.", "Poland is the capital of Poland."),
    ("Is the Sun a star?", "Yes, it is.", "No, it is a planet."),
])
def test_contradictions_are_not_equivalent(q, a, b):
    assert not ag.equivalent(a, b, q)
    assert not ag.equivalent(b, a, q)


@pytest.mark.parametrize("q,a,b", [
    ("How many legs does a spider have?", "Eight.", "A spider has 8 legs."),
    ("At what temperature does water boil at sea level?", "212 °F", "100 degrees Celsius"),
    ("What is 16 + 59?", "16 + 59 = 75", "seventy-five"),
    ("What is the capital of Australia?", "Canberra", "The capital is Canberra, not Sydney."),
    ("Who wrote Hamlet?", "William Shakespeare", "It was written by Shakespeare."),
    ("Can penguins fly?", "No.", "Penguins can't fly."),
    ("How many grams are in a kilogram?", "1,000", "one thousand grams"),
    ("What is the capital of Brazil?", "Brasília", "brasilia"),
])
def test_agreeing_answers_in_other_words_are_equivalent(q, a, b):
    assert ag.equivalent(a, b, q) and ag.equivalent(b, a, q)


def test_canonical_answer_takes_the_answer_line_or_first_sentence_without_fillers():
    assert ag.canonical_answer("Let me think.\nAnswer: Paris") == "Paris"
    assert ag.canonical_answer("The answer is Paris. It is in France.") == "Paris"
    assert ag.canonical_answer("  \n3.5 kg is the weight. More text") == "3.5 kg is the weight"
    assert ag.canonical_answer(None) == ""
    assert len(ag.canonical_answer("x" * 1000)) == ag.ANSWER_CHARS_MAX


def test_normalise_numbers_units_articles():
    assert ag.normalise("The answer: Twenty-one Apples!") == "answer 21 apples"
    assert ag.normalise("a dozen eggs") == "12 eggs"
    assert ag.normalise("100 degrees Celsius") == "100 °c" or ag.normalise("100 degrees Celsius") == "100 c"
    assert ag.main_quantity(ag.normalise("7 × 2 = 14"), ag.normalise("What is 7 × 2?")).value == 14


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60), st.text(max_size=60), st.text(max_size=40))
def test_agreement_is_a_symmetric_score_in_unit_interval(a, b, q):
    s = ag.agreement(a, b, q)
    assert 0.0 <= s <= 1.0
    assert s == pytest.approx(ag.agreement(b, a, q))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["Paris", "Lyon", "It is Paris.", "paris", "Marseille", "", "42"]),
                min_size=1, max_size=8))
def test_clusters_partition_the_answers_heaviest_first(answers):
    cs = ag.clusters(answers, "What is the capital of France?")
    members = sorted(i for c in cs for i in c.members)
    assert members == list(range(len(answers)))
    assert [c.weight for c in cs] == sorted((c.weight for c in cs), reverse=True)
    order, cs2 = ag.order_candidates(answers, "What is the capital of France?")
    assert sorted(order) == list(range(len(answers)))


def test_trust_weights_decide_between_clusters():
    answers = ["Paris", "Lyon", "Lyon"]
    assert ag.order_candidates(answers, "Capital of France?")[0][0] in (1, 2)
    order, cs = ag.order_candidates(answers, "Capital of France?", weights=[5, 1, 1])
    assert order[0] == 0 and ag.winning_members(cs) == {0}


def test_signed_canonical_is_used_only_when_the_text_says_the_same():
    assert ag.signed_canonical("Paris", "The capital is Paris.", "Capital of France?") == "Paris"
    # a proposer that signs "Paris" while its text says Lyon is judged by its text
    assert ag.normalise(ag.signed_canonical("Paris", "It is Lyon.", "Capital of France?")) == "it is lyon"


def test_proposal_carries_a_signed_canonical_answer_and_old_frames_still_decode():
    p = Proposal("q", "peer", "The answer is 8.", "m", "r", "s", b"\x00\x00\x80\x3f", 1, 2, 0.5, canonical="8")
    assert decode_body("proposal", encode_body(p)) == p
    old = {k: v for k, v in msgpack_fields(p).items() if k != "canonical"}
    assert decode_body("proposal", pack(old)).canonical == ""


def msgpack_fields(p):
    from dataclasses import fields
    return {f.name: getattr(p, f.name) for f in fields(p)}


# ---------------------------------------------------------------- the mesh decides on agreement

def _mesh_with(answers, method, originator=0, seed=0):
    gens = {i: StandInGenerator(f"m{i}", reply=lambda m, p, a=a: a) for i, a in enumerate(answers)}
    mesh, ids = make_mesh(len(answers), method=method, generators=gens, seed=seed)
    mesh.ask(ids[originator], "q1", "What is 7 × 2?")
    mesh.run()
    return mesh, ids


@pytest.mark.parametrize("method", ["pbft", "vote", "averaging"])
def test_mesh_picks_the_agreeing_cluster_over_near_duplicate_wrong_answers(method):
    # issue 11: two SmolLM2 nodes said 14, two Gemma nodes the same wrong text; with one
    # more node agreeing in other words, the 14-cluster is the largest and must win.
    answers = ["7 × 2 = 14", "7 × 2 = 7 × 2 + 2 =", "The answer is 14.", "7 × 2 = 7 × 2 + 2 =", "14"]
    mesh, ids = _mesh_with(answers, method)
    d = mesh.delivered[(ids[0], "q1")]
    assert ag.equivalent(d.answer, "14", "What is 7 × 2?"), d.answer
    assert d.trace["clusters"] and len(d.trace["clusters"][0]) == 3


def test_originator_is_not_disfavoured_among_identical_answers():
    # issue 11: the originator's own proposal was chosen 3 times in 60 while its twin with the
    # same answer was chosen 31 times. Cause: equal answers tie in centrality and ties went to
    # the lower peer id, the same node every time in a given mesh. Now ties go by a hash of
    # (query, proposer), so over many queries every node of the cluster is chosen.
    gens = {i: StandInGenerator(f"m{i}", reply=lambda m, p: "Paris") for i in range(4)}
    mesh, ids = make_mesh(4, method="pbft", generators=gens, seed=0)
    chosen = []
    for s in range(24):
        mesh.now += 600.0  # well apart: admission control must not refuse them
        mesh.ask(ids[0], f"q{s}", "What is the capital of France?")
        mesh.run(until_s=mesh.now + 500.0)
        d = mesh.delivered[(ids[0], f"q{s}")]
        assert d.answer == "Paris"
        chosen.append(d.trace["decision"]["proposer"])
    counts = {p: chosen.count(p) for p in ids}
    # the old rule chose one node 24 times; a fair rule gives each of 4 nodes about 6
    assert all(c >= 2 for c in counts.values()), counts


def test_votes_count_clusters_of_equivalent_answers_not_strings():
    from consensus.voting import cluster_normaliser, majority_vote
    answers = ["Jupiter.", "Neptune", "The largest planet is Jupiter.", "Neptune", "It's Jupiter."]
    q = "What is the largest planet?"
    plain = majority_vote(answers)
    assert plain.winner == "neptune"                  # strings: two identical wrong answers win
    r = majority_vote(answers, cluster_normaliser(answers, ag.cluster_labels(answers, q)))
    assert r.winner == "Jupiter." and r.tally[0][1] == 3


def test_graded_question_set_and_its_grader():
    from bench.quality import grade
    qs = json.loads((DATA / "graded_questions.json").read_text())
    kinds = {q["kind"] for q in qs}
    assert len(qs) >= 300 and kinds == {"arithmetic", "capitals", "facts", "units", "yesno", "reasoning"}
    assert len({q["question"] for q in qs}) >= 300 and all(q["gold"] for q in qs)
    assert grade("16 + 59 = 75", ["75"], "What is 16 + 59?")
    assert not grade("16 + 59 = 21", ["75"], "What is 16 + 59?")
    assert grade("The capital of Poland is Warsaw.", ["Warsaw"], "What is the capital of Poland?")
    assert not grade("Poland is the capital of Poland.", ["Warsaw"], "What is the capital of Poland?")
    assert grade("No, whales are mammals.", ["no"], "Is a whale a fish?")
    assert not grade("Yes.", ["no"], "Is a whale a fish?")
    assert grade("Twelve", ["12"], "How much is a dozen?")
    assert not grade("", ["12"], "How much is a dozen?")


def test_score_consensus_decides_by_weighted_median_and_resists_a_garbage_scorer():
    answers = ["7 × 2 = 14", "7 × 2 = 7 × 2 + 2 =", "The answer is 14.", "7 × 2 = 7 × 2 + 2 =", "14"]
    mesh, ids = _mesh_with(answers, "score")
    d = mesh.delivered[(ids[0], "q1")]
    assert ag.equivalent(d.answer, "14", "What is 7 × 2?") and d.trace["method"] == "score"
    assert any("weighted medians" in n for n in d.trace["notes"])
    # a member voting at random (fault "garbage") cannot move the medians of the other four
    gens = {i: StandInGenerator(f"m{i}", reply=lambda m, p, a=a: a) for i, a in enumerate(answers)}
    mesh2, ids2 = make_mesh(5, method="score", generators=gens, faults={3: "garbage"})
    mesh2.ask(ids2[0], "q1", "What is 7 × 2?")
    mesh2.run()
    d2 = mesh2.delivered[(ids2[0], "q1")]
    assert ag.equivalent(d2.answer, "14", "What is 7 × 2?")


def test_median_score_vote_is_robust_where_the_sum_is_not():
    from consensus.voting import median_score_vote, score_vote
    honest = [[900, 100], [880, 120], [910, 90]]
    attacker = [[0, 1000]]
    # an attacker with weight 2.9 (just under half of 5.9): sums 2690 vs 3210 flip to it
    w = [1, 1, 1, 2.9]
    assert score_vote(honest + attacker, w).winner == 1          # the sum is captured
    assert median_score_vote(honest + attacker, w).winner == 0   # the median is not (2.9 < 3)


def test_nodes_sample_with_their_own_seeds():
    # two nodes with one model and one seed answer identically, and their "agreement" is one
    # sample counted twice (bench/quality.py: both Gemma nodes said "360" to "What is 8 × 5?")
    seeds = {}

    def reply_for(i):
        def reply(messages, params):
            seeds[i] = params.seed
            return "Paris"
        return reply
    gens = {i: StandInGenerator(f"m{i}", reply=reply_for(i)) for i in range(4)}
    mesh, ids = make_mesh(4, method="vote", generators=gens)
    mesh.ask(ids[0], "q1", "What is the capital of France?")
    mesh.run()
    assert len(set(seeds.values())) == 4


def test_answers_a_reply_states_after_a_preamble_or_inside_markup():
    q_yn, q_letter = "Do spiders have six legs?", "What is the first letter of the English alphabet?"
    # "The answer to this classic question is no, ..." is a no (it was judged an echo and lost)
    said = "The answer to this classic question is no, spiders do not have six legs."
    assert ag.polarity(ag.normalise(ag.canonical_answer(said))) is False
    assert ag.states_answer(said, q_yn) and ag.equivalent(said, "No.", q_yn)
    assert not ag.equivalent(said, "Yes, they do.", q_yn)
    # a bare letter is an answer, not an article; markup around it is not part of it
    assert ag.normalise("A") == "a" and ag.normalise("A cat") == "cat"
    assert ag.canonical_answer("<b>A</b>") == "A"
    assert ag.states_answer("A", q_letter) and ag.states_answer("<b>A</b>", q_letter)
    assert ag.equivalent("A", "<b>A</b>", q_letter) and not ag.equivalent("A", "E", q_letter)
    assert ag.canonical_answer("Use x < y") == "Use x < y"  # a comparison is not a tag
