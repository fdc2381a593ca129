"""Members rate candidates with their own model (``rate_candidates``), and answers that state
nothing abstain (issue 11: ties between equally supported answers went by embedding centrality,
which measures wording; two echoes of the question outvoted one real answer)."""
from __future__ import annotations

import pytest

from p2pmoa import agreement as ag
from p2pmoa.llm import StandInGenerator
from p2pmoa.testing import make_mesh


class RatingStandIn:
    """A stand-in model that answers like ``StandInGenerator`` and rates ``prefer`` highest
    (mean log-probability 0.0) and every other answer -3.0; it records what it was asked."""

    def __init__(self, name: str, answer: str, prefer: str):
        self.gen = StandInGenerator(name, reply=lambda m, p: answer)
        self.model_id = self.gen.model_id
        self.prefer = ag.normalise(prefer)
        self.asked: list[tuple[str, tuple[str, ...]]] = []

    def generate(self, messages, params):
        return self.gen.generate(messages, params)

    def rate(self, question, answers):
        self.asked.append((question, tuple(answers)))
        return [0.0 if ag.normalise(a) == self.prefer else -3.0 for a in answers]


@pytest.mark.parametrize("echo,question", [
    ("37 + 41", "What is 37 + 41?"),
    ("To solve this, I'll add the numbers 25 and 19:", "What is 25 + 19?"),
    ("The answer to this question depends on the context", "Do fish live in water?"),
    ("France", "What is the capital of France?"),
    ("", "What is the capital of France?"),
])
def test_an_echo_of_the_question_states_no_answer(echo, question):
    assert not ag.states_answer(echo, question)


@pytest.mark.parametrize("answer,question", [
    ("78", "What is 37 + 41?"), ("5", "What is 5 x 1?"), ("No", "Is a whale a fish?"),
    ("Paris", "What is the capital of France?"), ("400", "How many centimetres are in 4 metres?"),
    ("The largest planet is Jupiter", "What is the largest planet?"),
])
def test_a_real_answer_states_one(answer, question):
    assert ag.states_answer(answer, question)


@pytest.mark.parametrize("answer,question,core", [
    ("The largest ocean on Earth is the ocean of the North Atlantic", "What is the largest ocean on Earth?",
     "North Atlantic"),
    ("The answer to this simple math problem is 72. 46 + 26 equals", "What is 46 + 26?", "72"),
    ("No, penguins cannot fly", "Can penguins fly?", "No"),
    ("The capital of Brazil is Brasília.", "What is the capital of Brazil?", "Brasília"),
    ("", "What is 2 + 2?", ""),
])
def test_the_core_a_model_rates_is_the_answer_not_its_wording(answer, question, core):
    assert ag.answer_core(answer, question) == core


def test_answer_weights_zero_the_echoes_unless_nothing_else_is_said():
    q = "What is 37 + 41?"
    assert ag.answer_weights(["37 + 41", "78", "37+41", "79"], q) == [0.0, 1.0, 0.0, 1.0]
    assert ag.answer_weights(["37 + 41", "37+41"], q, [2.0, 3.0]) == [2.0, 3.0]


def _rated_mesh(answers, prefer, method, question, originator=0, **cfg):
    gens = {i: RatingStandIn(f"m{i}", a, prefer) for i, a in enumerate(answers)}
    mesh, ids = make_mesh(len(answers), method=method, generators=gens, rate_candidates=True, **cfg)
    mesh.ask(ids[originator], "q1", question)
    mesh.run()
    return mesh, ids, gens


@pytest.mark.parametrize("method", ["vote", "score"])
@pytest.mark.parametrize("prefer", ["Paris", "Nice"])
def test_ratings_break_a_tie_between_equally_supported_answers(method, prefer):
    answers = ["Lyon", "Paris", "Marseille", "Nice"]  # no two agree: a four-way tie
    mesh, ids, gens = _rated_mesh(answers, prefer, method, "What is the capital of France?")
    d = mesh.delivered[(ids[0], "q1")]
    assert ag.normalise(d.answer) == ag.normalise(prefer), d.trace.get("notes")
    # every member rated the four canonical answers of the round, after the question
    for g in gens.values():
        assert g.asked and g.asked[0][0] == "What is the capital of France?"
        assert sorted(g.asked[0][1]) == sorted(answers)
    stats = mesh.nodes[ids[0]].proto.statistics()
    assert "rate_failed" not in stats.counters and "internal_error" not in stats.rejects


@pytest.mark.parametrize("method", ["vote", "pbft", "averaging", "score"])
def test_ratings_never_override_a_larger_agreeing_cluster(method):
    answers = ["Paris", "Paris.", "It is Paris", "Lyon"]
    mesh, ids, _ = _rated_mesh(answers, "Lyon", method, "What is the capital of France?")
    assert "paris" in ag.normalise(mesh.delivered[(ids[0], "q1")].answer)


@pytest.mark.parametrize("method", ["vote", "score"])
def test_two_echoes_of_the_question_do_not_outvote_a_real_answer(method):
    answers = ["37 + 41", "78", "37 + 41", "79"]
    mesh, ids, _ = _rated_mesh(answers, "78", method, "What is 37 + 41?")
    assert ag.normalise(mesh.delivered[(ids[0], "q1")].answer) == "78"


def test_pbft_echoes_weigh_nothing_and_pbft_members_rate():
    answers = ["37 + 41", "78", "37 + 41", "78."]
    mesh, ids, gens = _rated_mesh(answers, "37 + 41", "pbft", "What is 37 + 41?")
    assert ag.normalise(mesh.delivered[(ids[0], "q1")].answer) == "78"  # the echo is preferred, and weighs 0
    assert all(g.asked for g in gens.values())


@pytest.mark.parametrize("method", ["pbft", "averaging"])
@pytest.mark.parametrize("prefer", ["Paris", "Nice"])
def test_pbft_and_averaging_break_a_four_way_tie_by_the_members_ratings(method, prefer):
    # PBFT: the primary proposes its best-rated answer (every stated answer is valid when none
    # agree). Averaging: each member starts from the answer it judges best, not from its own.
    answers = ["Lyon", "Paris", "Marseille", "Nice"]
    mesh, ids, _ = _rated_mesh(answers, prefer, method, "What is the capital of France?")
    assert ag.normalise(mesh.delivered[(ids[0], "q1")].answer) == ag.normalise(prefer)


def test_a_model_that_cannot_rate_leaves_the_round_judged_without_ratings():
    gens = {i: StandInGenerator(f"m{i}", reply=lambda m, p, a=a: a)
            for i, a in enumerate(["14", "14", "The answer is 14.", "15"])}
    mesh, ids = make_mesh(4, method="vote", generators=gens, rate_candidates=True)
    mesh.ask(ids[0], "q1", "What is 7 × 2?")
    mesh.run()
    assert ag.normalise(mesh.delivered[(ids[0], "q1")].answer) in ("14", "the answer is 14")
    assert mesh.nodes[ids[0]].proto.statistics().counters.get("rate_failed", 0) >= 1


@pytest.mark.parametrize("method", ["pbft", "vote", "score", "averaging", "aggregate"])
def test_every_method_decides_with_rating_on_and_no_internal_error(method):
    answers = ["Lyon", "Paris", "Paris.", "Nice"]
    mesh, ids, gens = _rated_mesh(answers, "Paris", method, "What is the capital of France?")
    assert (ids[0], "q1") in mesh.delivered
    for pid in ids:
        assert "internal_error" not in mesh.nodes[pid].proto.statistics().rejects
    assert any(g.asked for g in gens.values())  # the members rate (PBFT too, since stop 18)
