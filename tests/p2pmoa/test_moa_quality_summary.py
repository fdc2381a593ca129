"""bench/quality.py's summary: every method scored over the questions it ran on, compared with
the best single model and the oracle on those same questions (rows are hand-made here)."""
from __future__ import annotations

import json

from bench.quality import read_rows, summarise


def _row(right, tokens=10, calls=1, kind="facts", **extra):
    return {"right": right, "tokens": tokens, "calls": calls, "kind": kind, **extra}


def test_methods_on_fewer_questions_are_compared_on_those_questions(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    # 4 questions for the cheap methods; MoA/SMoA only on the first 2 (another run)
    rows_a = [{"id": f"q{i}", "oracle": o, "methods": {"single_smollm2": _row(s), "single_gemma": _row(g),
                                                       "vote": _row(v, 40, 4)}}
              for i, (o, s, g, v) in enumerate([(True, 0, 1, 1), (True, 0, 0, 1), (False, 0, 0, 0), (True, 1, 1, 1)])]
    rows_b = [{"id": "q0", "oracle": True, "methods": {"moa": _row(0, 100, 9), "smoa": _row(1, 40, 4, stopped_early=True,
                                                                                             layers=1, aggregator=False)}},
              {"id": "q1", "oracle": True, "methods": {"moa": _row(1, 100, 9), "smoa": _row(1, 50, 5, stopped_early=False,
                                                                                             layers=2, aggregator=True)}}]
    a.write_text("".join(json.dumps(r) + "\n" for r in rows_a))
    b.write_text("".join(json.dumps(r) + "\n" for r in rows_b))
    table = read_rows([str(a), str(b)])
    res = summarise(table, ["single_smollm2", "single_gemma", "vote", "moa", "smoa"])
    assert res["questions"] == 4 and res["best_single_method"] == "single_gemma" and res["best_single"] == 0.5
    assert res["oracle"] == 0.75
    assert res["vote"]["accuracy"] == 0.75 and res["gap_recovered"]["vote"] == 1.0
    assert res["wins_losses_vs_best_single"]["vote"] == {"wins": 1, "losses": 0, "questions": 4}
    # MoA ran on q0, q1 only: there the best single scores 0.5 and the oracle 1.0
    assert res["moa"]["questions"] == 2 and res["moa"]["best_single_same_questions"] == 0.5
    assert res["gap_recovered"]["moa"] == 0.0 and res["gap_recovered"]["smoa"] == 1.0
    s = res["smoa_vs_moa_same_questions"]
    assert s["smoa_token_ratio"] == 0.45 and (s["smoa_wins"], s["smoa_losses"]) == (1, 0)
    assert res["smoa"]["stopped_early"] == 1 and res["smoa"]["aggregator_calls"] == 1
    assert res["single_gemma"]["accuracy"] == 0.5 and res["single_smollm2"]["accuracy"] == 0.25
