"""Short variant of bench/nemesis.py: 5 daemons in namespaces, one fault of every kind
(partition, 20% loss, kill -9 + restart, clock jump) while a client keeps asking."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from nemesis import Nemesis  # noqa: E402

pytestmark = pytest.mark.real_net


def test_every_accepted_query_ends_and_no_two_nodes_decide_differently(lab_factory):
    # lab_factory: skips (with the reason) where namespaces are unavailable; Nemesis builds its own
    r = Nemesis(budget_s=15, seed=7, log=lambda m: None, min_faults=4).run()
    assert r["faults_by_kind"].keys() == {"partition", "loss", "kill9", "clock_jump"}, r
    assert r["accepted"] >= 5, r
    assert r["lost"] == 0, r
    assert r["answered"] + r["failed_explicit"] == r["accepted"], r
    assert r["decisions_compared"] >= 1, r  # the divergence check below compared something
    assert r["divergent_decisions"] == 0, r
