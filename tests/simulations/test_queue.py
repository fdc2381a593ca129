"""DMoA prompt buffers: stable below ((k+1)M+1)*lambda < 1/alpha_max, diverging above."""
from __future__ import annotations

from simulations.experiments.queue import lambda_bound, trial


def run(load, seed, variant="fifo", m=2, k=2):
    return trial({"variant": variant, "n": 8, "m": m, "k": k, "lam": load * lambda_bound(m, k, 1.0),
                  "alpha_max_s": 1.0, "horizon_s": 400.0, "capacity": 8, "rate_window_s": 60.0, "seed": seed})


def test_backlog_stays_small_below_the_bound_and_grows_above():
    for seed in (1, 2):
        low, high = run(0.5, seed), run(1.5, seed)
        assert low["backlog_end"] < 3, f"seed={seed}: {low}"
        assert high["backlog_end"] > 5 * max(1.0, low["backlog_end"]), f"seed={seed}: {high}"
        longer = trial({**{"variant": "fifo", "n": 8, "m": 2, "k": 2, "lam": 1.5 * lambda_bound(2, 2, 1.0),
                           "alpha_max_s": 1.0, "capacity": 8, "rate_window_s": 60.0, "seed": seed}, "horizon_s": 800.0})
        assert longer["backlog_end"] > high["backlog_end"], f"seed={seed}: the queue should keep growing"


def test_latency_grows_with_layers_and_proposers_at_fixed_lambda():
    lam = 0.5 * lambda_bound(3, 3, 1.0)
    lat = {}
    for m, k in ((1, 1), (3, 1), (1, 3)):
        lat[(m, k)] = trial({"variant": "fifo", "n": 8, "m": m, "k": k, "lam": lam, "alpha_max_s": 1.0,
                             "horizon_s": 400.0, "capacity": 8, "rate_window_s": 60.0, "seed": 3})["latency_mean_s"]
    assert lat[(3, 1)] > lat[(1, 1)] and lat[(1, 3)] > lat[(1, 1)], f"seed=3: {lat}"


def test_prompt_buffer_admission_bounds_the_queue():
    seed = 4
    fifo, adm = run(1.5, seed), run(1.5, seed, variant="admission")
    assert adm["refused"] > 0 and adm["queue_mean"] < fifo["queue_mean"], f"seed={seed}: {adm} vs {fifo}"


def test_admission_keeps_the_queue_stable_well_past_the_bound():
    """The admission rule of issue 9 (an idle node always admits, a busy one keeps the bound on
    its own measured alpha): at twice the bound the backlog does not grow, while an unbounded
    FIFO diverges."""
    for seed in (5, 6):
        fifo = trial({"variant": "fifo", "n": 8, "m": 2, "k": 2, "lam": 2.0 * lambda_bound(2, 2, 1.0),
                      "alpha_max_s": 1.0, "horizon_s": 800.0, "capacity": 8, "rate_window_s": 60.0,
                      "seed": seed})
        adm = trial({**{"variant": "admission", "n": 8, "m": 2, "k": 2,
                        "lam": 2.0 * lambda_bound(2, 2, 1.0), "alpha_max_s": 1.0, "capacity": 8,
                        "rate_window_s": 60.0, "seed": seed}, "horizon_s": 800.0})
        assert fifo["backlog_end"] > 1.5 * fifo["backlog_half"] > 20, f"seed={seed}: {fifo}"
        assert adm["backlog_end"] <= adm["backlog_half"] + 3, f"seed={seed}: {adm}"
        assert adm["queue_mean"] < 10 and adm["delivered"] > 0.4 * adm["submitted"], f"seed={seed}: {adm}"
