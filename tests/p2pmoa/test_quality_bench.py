"""bench/quality.py without models: the summary's arithmetic (gap_recovered, paired wins and
losses) from per-question rows, and the one-line refusal of a bad --questions file."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
QUALITY = ROOT / "bench" / "quality.py"


def row(qid, oracle, **right):
    return {"id": qid, "oracle": oracle, "methods": {
        m: {"id": qid, "kind": "facts", "right": r, "tokens": 10, "calls": 1, "answer": ""} for m, r in right.items()}}


def test_summary_from_rows_pairs_methods_with_the_best_single(tmp_path):
    qs = [{"id": f"q{i}", "kind": "facts", "question": f"Question {i}?", "gold": ["x"]} for i in range(4)]
    (tmp_path / "q.json").write_text(json.dumps(qs))
    rows = [row("q0", True, single_smollm2=True, single_gemma=False, vote=True),
            row("q1", True, single_smollm2=False, single_gemma=True, vote=True),
            row("q2", True, single_smollm2=False, single_gemma=False, vote=True),
            row("q3", False, single_smollm2=False, single_gemma=False, vote=False)]
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = subprocess.run([sys.executable, str(QUALITY), "--questions", str(tmp_path / "q.json"), "--from-rows",
                          "--rows", str(tmp_path / "rows.jsonl")], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["questions"] == 4 and res["oracle"] == 0.75 and res["best_single"] == 0.25
    assert res["vote"]["accuracy"] == 0.75
    assert res["gap_recovered"]["vote"] == 1.0  # (0.75 - 0.25) / (0.75 - 0.25)
    wl = res["wins_losses_vs_best_single"]["vote"]
    assert (wl["wins"], wl["losses"]) == (2, 0)


def test_a_bad_question_file_is_refused_in_one_line(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"id": "q0", "gold": ["x"]}]))  # no question text
    out = subprocess.run([sys.executable, str(QUALITY), "--questions", str(bad)], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "not a JSON list of questions" in out.stderr
