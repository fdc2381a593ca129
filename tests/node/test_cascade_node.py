"""``model: p2pmoa/cascade`` on in-process daemons (node/cascade_run.py) with stand-in
generators that answer fixed texts (stand-ins, not models): the cheap tier that agrees costs
two model calls in the whole mesh; one that disagrees escalates, and the trace shows both."""
from __future__ import annotations

import json

import pytest
import trio

from node.api import CascadeFailed, CompletionRequest, build_app, serve_api
from p2pmoa.effects import ChatMessage, GenParams
from p2pmoa.llm import StandInGenerator
from tests.node.conftest import free_port
from tests.node.test_api import post
from tests.node.test_daemon_inprocess import mesh

Q = "What is the capital of France?"


def _stand_ins(replies):
    return {i: StandInGenerator(f"fixed-reply-stand-in-{i}", reply=lambda m, p, r=r: r)
            for i, r in enumerate(replies)}


def _calls(gens) -> int:
    return sum(g.calls for g in gens.values())


def test_cheap_tier_that_agrees_answers_at_level_one_with_two_generations(tmp_path):
    gens = _stand_ins(["Paris", "Paris.", "It is Paris", "Paris"])
    port = free_port()

    async def main():
        async with mesh(tmp_path, 4, generators=gens) as ds:
            async with trio.open_nursery() as n:
                stop = trio.Event()
                await n.start(serve_api, build_app(ds[0]), "127.0.0.1", port, stop)
                body = json.dumps({"model": "p2pmoa/cascade",
                                   "messages": [{"role": "user", "content": Q}]}).encode()
                url = f"http://127.0.0.1:{port}"
                got = await trio.to_thread.run_sync(post, url + "/v1/chat/completions", body)
                models = await trio.to_thread.run_sync(
                    lambda: json.load(__import__("urllib.request").request.urlopen(url + "/v1/models")))
                stop.set()
        return got, models

    (status, _, res), models = trio.run(main)
    assert status == 200, res
    c = res["p2pmoa_trace"]["cascade"]
    assert res["p2pmoa_trace"]["method"] == "cascade" and "Paris" in res["choices"][0]["message"]["content"]
    assert c["exit_level"] == 1 and [lv["level"] for lv in c["levels"]] == [1]
    assert c["levels"][0]["calls"] == 2 and _calls(gens) == 2  # the whole mesh made 2 calls
    assert res["usage"]["completion_tokens"] == c["levels"][0]["usage"]["completion_tokens"] > 0
    assert "p2pmoa/cascade" in [m["id"] for m in models["data"]]


def test_cheap_tier_that_disagrees_escalates_to_the_whole_mesh(tmp_path):
    # the originator disagrees with everyone, so the cheap tier (it and one peer) disagrees
    gens = _stand_ins(["Rome", "Paris", "Paris.", "It is Paris"])
    req = CompletionRequest((ChatMessage("user", Q),), GenParams(), "cascade", None,
                            "p2pmoa/cascade", "casc-2")

    async def main():
        async with mesh(tmp_path, 4, generators=gens) as ds:
            res = await ds[0].complete(req)
            return res, ds[0].query("casc-2"), ds[0].query("casc-2.c2")

    res, parent, level2 = trio.run(main)
    c = res.trace["cascade"]
    assert [lv["level"] for lv in c["levels"]] == [1, 2] and c["exit_level"] == 2
    assert [lv["calls"] for lv in c["levels"]] == [2, 4] and _calls(gens) == 6
    assert not c["levels"][0]["agreed"] and c["levels"][1]["agreeing"] == 3
    assert "Paris" in res.answer and res.query_id == "casc-2"
    assert res.completion_tokens == sum(lv["usage"]["completion_tokens"] for lv in c["levels"])
    assert parent["state"] == "done" and parent["levels"] == ["casc-2.c1", "casc-2.c2"]
    assert level2["state"] == "done"


def test_a_failed_level_fails_the_cascade_with_a_typed_error(tmp_path):
    def refuse(m, p):
        raise RuntimeError("this stand-in refuses every prompt")
    gens = {i: StandInGenerator(f"refusing-stand-in-{i}", reply=refuse) for i in range(2)}
    req = CompletionRequest((ChatMessage("user", Q),), GenParams(), "cascade", 0.5,
                            "p2pmoa/cascade", "casc-f")

    async def main():
        async with mesh(tmp_path, 2, generators=gens) as ds:
            with trio.fail_after(30), pytest.raises(CascadeFailed, match=r"level 1 \(query casc-f.c1\)"):
                await ds[0].complete(req)
            return ds[0].query("casc-f")
    assert trio.run(main)["state"] == "failed"


class _LevelsStandIn:
    """A stand-in for the daemon's ``submit``: each level's query is answered with fixed
    proposal texts, taking ``level_s`` seconds of a fake clock; ``refuse`` names levels refused
    at admission."""

    def __init__(self, answers: dict[int, list[str]], level_s: float = 0.0, refuse=()):
        self.answers, self.level_s, self.refuse = answers, level_s, refuse
        self.t, self.asked = 0.0, []

    async def submit(self, req):
        from node.api import Busy, CompletionResult
        level = int(req.query_id.rsplit(".c", 1)[1])
        self.asked.append((req.query_id, req.proposers_max, req.deadline_s, req.memory))
        if level in self.refuse:
            raise Busy("node busy (buffer_full); retry later", retry_after_s=1.0)

        async def wait():
            self.t += self.level_s
            texts = self.answers[level]
            return CompletionResult(req.query_id, texts[0], {"proposals": [
                {"answer": a, "in_round": True, "completion_tokens": 1} for a in texts]}, 5, 1)
        return wait


def _run(stand_in, deadline_s):
    from node.cascade_run import CascadeRunner
    runner = CascadeRunner(stand_in.submit, deadline_s=30.0, clock=lambda: stand_in.t)
    req = CompletionRequest((ChatMessage("user", Q),), GenParams(), "cascade", deadline_s,
                            "p2pmoa/cascade", "p")

    async def main():
        wait = await runner.submit(req, Q)
        return await wait()
    return trio.run(main), runner


def test_the_deadline_covers_every_level_and_a_late_cascade_does_not_escalate():
    s = _LevelsStandIn({1: ["Rome", "Paris"], 2: ["Paris"] * 4}, level_s=4.5)
    res, _ = _run(s, deadline_s=5.0)
    c = res.trace["cascade"]
    assert c["exit_level"] == 1 and c["escalation_skipped"] == "deadline" and res.answer == "Rome"
    assert [a[0] for a in s.asked] == ["p.c1"]
    s = _LevelsStandIn({1: ["Rome", "Paris"], 2: ["Paris"] * 4}, level_s=2.0)
    res, _ = _run(s, deadline_s=5.0)
    assert res.trace["cascade"]["exit_level"] == 2 and res.answer == "Paris"
    assert s.asked == [("p.c1", 2, 5.0, False), ("p.c2", None, 3.0, False)]  # what was left


def test_an_escalation_refused_at_admission_is_a_typed_failure_naming_both_levels():
    s = _LevelsStandIn({1: ["Rome", "Paris"]}, refuse=(2,))
    with pytest.raises(CascadeFailed, match=r"level 2 \(query p.c2\) was refused.*query p.c1") as ei:
        _run(s, deadline_s=None)
    assert ei.value.status == 504 and ei.value.code == "cascade_failed"
