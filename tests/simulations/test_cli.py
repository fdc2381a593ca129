"""`p2pmoa sim`: listing, running, bad input, and byte-identical output for the same seed."""
from __future__ import annotations

import json

import pytest

from p2pmoa.cli import main
from simulations.experiments import EXPERIMENTS


def test_list_describes_every_experiment(capsys):
    assert main(["sim", "--list"]) == 0
    out = capsys.readouterr().out
    for name in EXPERIMENTS:
        assert f"  {name}" in out
    assert "unavailable" not in out


def run_bft(out):
    return main(["sim", "bft", "--n-values", "4", "--trials", "2", "--weighted-n", "5", "--horizon-s", "20",
                 "--seed", "5", "--out", str(out), "--workers", "1", "--no-progress"])


def test_same_seed_gives_byte_identical_files(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    assert run_bft(a) == 0 and run_bft(b) == 0
    files = sorted(p.name for p in a.iterdir())
    assert {"bft.csv", "summary.md", "summary.json", "bft_equivocate.png", "bft_weighted.png"} <= set(files)
    for name in files:
        assert (a / name).read_bytes() == (b / name).read_bytes(), f"{name} differs between two runs with seed 5"
    headline = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert headline["violations_below_third"] == 0


def test_parallel_sweep_gives_the_same_csv_as_serial(tmp_path):
    args = ["sim", "majority", "--n-values", "3,5", "--eps-values", "0.2", "--correlations", "0,0.3",
            "--trials", "2000", "--seed", "3", "--no-progress"]
    assert main(args + ["--out", str(tmp_path / "s"), "--workers", "1"]) == 0
    assert main(args + ["--out", str(tmp_path / "p"), "--workers", "2"]) == 0
    assert (tmp_path / "s" / "majority.csv").read_bytes() == (tmp_path / "p" / "majority.csv").read_bytes()


def test_bad_input_is_one_clear_line(tmp_path, capsys):
    assert main(["sim", "bft", "--n-values", "2", "--out", str(tmp_path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "p2pmoa sim:" in err and "Traceback" not in err
    assert main(["sim", "queue", "--loads", "abc", "--out", str(tmp_path), "--no-progress"]) == 2
