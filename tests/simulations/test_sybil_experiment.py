"""`p2pmoa sim sybil` (issue 12): the production seat rules against fresh identities."""
from __future__ import annotations

import csv
import json

from p2pmoa.cli import main


def test_sybil_experiment_writes_its_files_and_rosters_keep_every_sybil_out(tmp_path, capsys):
    out = tmp_path / "sybil"
    assert main(["sim", "sybil", "--honest", "13", "--ratios", "0,2", "--speeds", "inf",
                 "--queries", "6", "--seed", "2", "--out", str(out), "--workers", "1",
                 "--no-progress"]) == 0
    assert {"sybil.csv", "sybil_honest_answers.png", "summary.md", "summary.json"} <= {
        p.name for p in out.iterdir()}
    rows = list(csv.DictReader((out / "sybil.csv").open()))
    assert len(rows) == 4  # (no sybils, 26 sybils) x (open, rostered)
    for r in rows:
        assert float(r["delivered"]) == 1.0
        if r["rostered"] == "1":
            assert int(r["sybil_seats_max"]) == 0 and float(r["honest_answer_rate"]) == 1.0
        else:  # open mesh after 30 warm-up queries: the bound on new identities holds
            assert int(r["sybil_seats_max"]) <= (8 - 1) // 3
    headline = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert headline["honest_answer_rate_min_13_rostered"] == 1.0


def test_bad_sybil_arguments_are_one_line_errors(tmp_path, capsys):
    assert main(["sim", "sybil", "--honest", "2", "--out", str(tmp_path), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--honest" in err[0]
