"""The cascade policy (p2pmoa/cascade.py): pure decisions, and driven over the in-process mesh
with StandInGenerator answers (stand-ins, not models)."""
from __future__ import annotations

import pytest

from p2pmoa import cascade
from p2pmoa.llm import StandInGenerator
from p2pmoa.testing import make_mesh


def _trace(*answers):
    return {"proposals": [{"answer": a, "in_round": True} for a in answers]}


def test_cheap_tier_that_agrees_answers_at_level_one():
    c = cascade.Cascade("What is 7 x 8?")
    first = c.first()
    assert first.level == 1 and first.proposers_max == 2
    done = c.on_result("7 x 8 = 56", _trace("7 x 8 = 56", "The answer is fifty-six."))
    assert isinstance(done, cascade.Done) and done.level == 1 and done.answer == "7 x 8 = 56"


def test_disagreeing_cheap_tier_escalates_to_every_node():
    c = cascade.Cascade("What is the capital of Australia?")
    step = c.on_result("Sydney", _trace("Sydney", "Canberra"))
    assert isinstance(step, cascade.Ask) and step.level == 2 and step.proposers_max is None
    done = c.on_result("Canberra", _trace("Sydney", "Canberra", "It is Canberra.", "Melbourne"))
    assert done.level == 2 and done.answer == "Canberra" and done.agreeing == 2
    with pytest.raises(RuntimeError):
        c.on_result("x", _trace("x"))


def test_no_agreement_anywhere_is_level_three_and_keeps_the_consensus_pick():
    c = cascade.Cascade("Largest planet?")
    c.on_result("Mars", _trace("Mars", "Venus"))
    done = c.on_result("Saturn", _trace("Mars", "Venus", "Saturn", "Jupiter"))
    assert done.level == 3 and done.answer == "Saturn"


def test_contradictions_in_the_same_words_do_not_exit_early():
    # same topic, same wording, different answer: embedding closeness would call this agreement
    v = cascade.tier_agrees(["Water boils at 100 degrees Celsius.", "Water boils at 50 degrees Celsius."],
                            "At what temperature does water boil?", 2)
    assert not v.agreed and v.size == 1


def test_empty_answers_never_agree():
    assert not cascade.tier_agrees(["", ""], "Q?", 2).agreed
    assert not cascade.tier_agrees([], "Q?", 1).agreed


@pytest.mark.parametrize("kw", [dict(first=0), dict(m=0), dict(first=2, full=2)])
def test_bad_policy_is_a_typed_error(kw):
    with pytest.raises(cascade.CascadeConfigError):
        cascade.CascadePolicy(**kw)


def _mesh_ask(replies, question):
    """ask() over fresh in-process meshes: a tier-1 query runs on the first
    ``proposers_max`` nodes, the escalation on all of them; counts generation calls."""
    calls = []

    def ask(step):
        n = step.proposers_max or len(replies)
        gens = {i: StandInGenerator(f"n{i}", reply=lambda m, p, r=replies[i]: r) for i in range(n)}
        mesh, ids = make_mesh(n, method=step.method, generators=gens)
        mesh.ask(ids[0], "q" + step.suffix.replace("/", "-"), question)
        mesh.run()
        d = mesh.delivered[(ids[0], "q" + step.suffix.replace("/", "-"))]
        calls.append(sum(g.calls for g in gens.values()))
        return d.answer, d.trace

    return ask, calls


def test_mesh_cascade_stops_after_two_calls_when_the_cheap_tier_agrees():
    ask, calls = _mesh_ask(["Canberra.", "It is Canberra", "Sydney", "Sydney"], "Capital of Australia?")
    done, levels = cascade.run("Capital of Australia?", ask)
    assert done.level == 1 and "Canberra" in done.answer and calls == [2]
    assert levels[0]["agreed"] and levels[0]["answers"] == 2


def test_mesh_cascade_escalates_and_the_mesh_decides():
    ask, calls = _mesh_ask(["Sydney", "Canberra", "Canberra.", "It is Canberra"], "Capital of Australia?")
    done, levels = cascade.run("Capital of Australia?", ask)
    assert done.level == 2 and "Canberra" in done.answer and calls == [2, 4]
    assert [lv["level"] for lv in levels] == [1, 2]


@pytest.mark.parametrize("cap, generating", [(2, 2), (None, 4)])
def test_a_capped_query_invites_only_its_proposers(cap, generating):
    """The per-query cap limits whom the originator invites: with ``proposers_max=2`` in a
    4-node mesh only the originator and one invited peer call their model."""
    gens = {i: StandInGenerator(f"stand-in-n{i}", reply=lambda m, p: "Canberra") for i in range(4)}
    mesh, ids = make_mesh(4, method="vote", generators=gens)
    mesh.ask(ids[0], "capped", "Capital of Australia?", proposers_max=cap)
    mesh.run()
    d = mesh.delivered[(ids[0], "capped")]
    assert sum(g.calls for g in gens.values()) == generating
    assert len(d.trace["proposals"]) == generating == d.trace["n_expected"]
    invited = d.trace["attendance"]["invited"]
    assert len(invited) == generating - 1 and gens[0].calls == 1
    skipped = [mesh.nodes[p].proto.statistics().counters.get("not_invited", 0) for p in ids[1:]]
    assert skipped.count(1) == (4 - generating)


def test_invitation_list_travels_signed_and_is_absent_from_uncapped_announces():
    from p2pmoa.messages import MalformedFrame, QueryAnnounce, decode_body, encode_body, unpack_bounded
    plain = QueryAnnounce("q", "o", "Q?", "vote", 1.0, 5.0, 4)
    assert "invited" not in unpack_bounded(encode_body(plain))  # old frames, old bytes
    assert decode_body("announce", encode_body(plain)).invited is None
    capped = QueryAnnounce("q", "o", "Q?", "vote", 1.0, 5.0, 2, invited=("a", "b"))
    assert decode_body("announce", encode_body(capped)).invited == ("a", "b")
    with pytest.raises(MalformedFrame):
        decode_body("announce", encode_body(QueryAnnounce("q", "o", "Q?", "vote", 1.0, 5.0, 2,
                                                          invited=("b", "a"))))
