"""PBFT (the production consensus.pbft) under the simulator: the published N = 3f + 1 facts."""
from __future__ import annotations

import pytest

from simulations.experiments.bft import _heaviest_until, _weights, members_of, trial

from .conftest import seeds


def run(n, b, seed, *, mode="equivocate", loss=0.0, heal_s=0.0, weights=None, horizon_s=60.0):
    byz = members_of(n)[:b]
    return trial({"scenario": "t", "mode": mode, "n": n, "byz": byz, "loss": loss, "heal_s": heal_s,
                  "horizon_s": horizon_s, "seed": seed, "weights": weights})


@pytest.mark.parametrize("n", [4, 7])
def test_no_safety_violation_below_a_third_over_many_seeds(n):
    f = (n - 1) // 3
    for seed in seeds(15):
        for loss, heal in ((0.0, 0.0), (0.1, 2.0)):
            r = run(n, f, seed, loss=loss, heal_s=heal)
            assert not r["safety_violation"], f"seed={seed} n={n} f={f} loss={loss}: honest members decided differently"


def test_split_brain_breaks_safety_at_a_third():
    # the same attack with b = N/3 rounded up must succeed, or the test above proves nothing
    violations = [run(4, 2, seed)["safety_violation"] for seed in seeds(5)]
    assert all(violations), f"seeds {seeds(5)}: expected violations, got {violations}"


def test_liveness_with_silent_members_below_a_third_and_not_above():
    for seed in seeds(8):
        r = run(7, 2, seed, mode="silent")
        assert r["live"], f"seed={seed}: honest members did not all decide with 2 of 7 silent"
        assert run(7, 3, seed, mode="silent")["live"] is False, f"seed={seed}: decided without a quorum"


def test_weighted_quorum_safe_below_a_third_of_the_weight():
    checked = 0
    for seed in seeds(30):
        w = _weights(10, seed)
        byz = _heaviest_until(w, 0.30)
        share = sum(w[m] for m in byz) / sum(w.values())
        if 3 * share >= 1:
            continue
        r = trial({"scenario": "w", "mode": "equivocate", "n": 10, "byz": byz, "loss": 0.0, "heal_s": 0.0,
                   "horizon_s": 60.0, "seed": seed, "weights": w})
        assert not r["safety_violation"], f"seed={seed} weight share={share:.3f}"
        checked += 1
    assert checked >= 5, f"only {checked} weight draws stayed below 1/3"


def test_weighted_split_brain_above_a_third_breaks_safety():
    broken = 0
    for seed in seeds(10):
        w = _weights(10, seed)
        byz = _heaviest_until(w, 0.45)
        r = trial({"scenario": "w", "mode": "equivocate", "n": 10, "byz": byz, "loss": 0.0, "heal_s": 0.0,
                   "horizon_s": 60.0, "seed": seed, "weights": w})
        broken += r["safety_violation"]
    assert broken >= 5, f"seeds {seeds(10)}: split brain with >= 45% of the weight broke safety only {broken} times"
