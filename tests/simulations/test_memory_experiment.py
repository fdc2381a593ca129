"""The `memory` simulator experiment: production memory code at mesh scale, Byzantine writers."""
from __future__ import annotations

import argparse
import json

from simulations.experiments import memory as exp

BASE = {"n": 30, "degree": 4, "queries": 120, "members": 4, "interval_s": 10.0,
        "capacity": 1024, "tau": -1.0, "repeat": 0.5, "byzantine": 0.0, "alpha": 1.0,
        "beta": 600.0, "part": "t"}


def test_repeats_are_answered_from_memory_and_byzantine_writers_plant_nothing():
    clean = exp.trial({**BASE, "seed": 1})
    assert clean["hit_rate"] > 0.05, clean
    assert clean["answer_agreement"] == 1.0 and clean["false_hit_rate"] == 0.0
    assert clean["tokens_saved_ratio"] < 1.0
    attacked = exp.trial({**BASE, "byzantine": 0.3, "seed": 1})
    assert attacked["poisoned_entries_accepted"] == 0 and attacked["poisoned_answers_served"] == 0
    assert attacked["hit_rate"] > 0.0, "honest sharing still works under attack"
    none = exp.trial({**BASE, "repeat": 0.0, "seed": 1})
    assert none["hit_rate"] <= clean["hit_rate"]


def test_run_writes_csv_png_and_summary(tmp_path):
    args = argparse.Namespace(n=20, degree=4, queries=30, members=3, capacities="8", taus="-1",
                              repeats="0.5", byzantine="0,0.2", trials=1, seed=3, workers=1,
                              progress=False)
    head = exp.run(args, tmp_path)
    for f in ("memory.csv", "memory.png", "summary.md", "summary.json"):
        assert (tmp_path / f).exists(), f
    assert head["poisoned_entries_accepted"] == 0
    assert json.loads((tmp_path / "summary.json").read_text())
