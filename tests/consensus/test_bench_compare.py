"""bench/compare.py: one JSON object as the last line, medians and ratios per numeric key,
the baseline worktree removed afterwards, usage errors with exit code 2."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import compare  # noqa: E402


def test_flatten_keeps_numeric_leaves_under_dotted_keys():
    obj = {"pbft": {"4": {"decisions_per_s": 10, "ok": True}}, "name": "x", "r": 0.5}
    assert compare.flatten(obj) == {"pbft.4.decisions_per_s": 10.0, "r": 0.5}


def test_last_json_refuses_a_benchmark_without_a_json_last_line():
    assert compare.last_json('noise\n{"a": 1}\n') == {"a": 1}
    with pytest.raises(compare.CompareError):
        compare.last_json('{"a": 1}\nnot json\n')
    with pytest.raises(compare.CompareError):
        compare.last_json("")


def test_compare_runs_both_trees_and_prints_ratios_as_its_last_line():
    # a stand-in benchmark: one figure both trees share, one that tells which tree it ran in
    # (759d05d predates bench/compare.py), and a string that is not a figure
    bench = ("import json, os; print('warm-up'); "
             "print(json.dumps({'same': 2.0, "
             "'has_compare': float(os.path.exists('bench/compare.py')), 'label': 'x'}))")
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "compare.py"), "--baseline-rev",
                           "759d05d", "--rounds", "2", "--", "python", "-c", bench],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["baseline_commit"].startswith("759d05d")
    assert out["rounds"] == 2 and len(out["runs"]["baseline"]) == 2
    assert out["ratio"]["same"] == 1.0
    assert out["baseline"]["has_compare"] == 0.0 and out["current"]["has_compare"] == 1.0
    assert out["ratio"]["has_compare"] is None  # no ratio against a zero baseline
    assert "label" not in out["ratio"]
    # the temporary baseline tree is gone, from disk and from git's worktree list
    tree = out["baseline_tree"]
    assert not Path(tree).exists()
    listed = subprocess.run(["git", "worktree", "list"], cwd=ROOT, capture_output=True,
                            text=True, check=True).stdout
    assert tree not in listed


def test_usage_errors_exit_2():
    run = lambda *a: subprocess.run([sys.executable, str(ROOT / "bench" / "compare.py"), *a],
                                    cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run("--baseline-rev", "HEAD").returncode == 2  # no command
    bad = run("--baseline-rev", "no-such-rev-xyz", "--", "python", "-c", "print(1)")
    assert bad.returncode == 2 and "no-such-rev-xyz" in bad.stderr


def test_harness_from_current_copies_this_trees_bench_directory_into_the_baseline():
    bench = ("import json, os; "
             "print(json.dumps({'has_compare': float(os.path.exists('bench/compare.py'))}))")
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "compare.py"), "--baseline-rev",
                           "759d05d", "--rounds", "1", "--harness-from-current", "--",
                           "python", "-c", bench],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["harness"] == "current"
    assert out["baseline"]["has_compare"] == 1.0 and out["ratio"]["has_compare"] == 1.0
