"""Majority voting vs the binomial formula (Condorcet), with a stated tolerance."""
from __future__ import annotations

import math

import numpy as np
import pytest

from simulations.agents import SyntheticAgent
from simulations.experiments.majority import binomial_error, correlated_error, trial, vote_errors

Z_TOLERANCE = 4.5
"""Simulated error must be within 4.5 standard errors of the formula (false alarm ~1e-5 per point)."""


def test_formula_sanity():
    assert binomial_error(1, 0.3) == pytest.approx(0.3)
    assert binomial_error(3, 0.3) == pytest.approx(3 * 0.09 * 0.7 + 0.027)
    assert correlated_error(9, 0.2, 0.0) == pytest.approx(binomial_error(9, 0.2))
    assert correlated_error(9, 0.2, 1.0) == pytest.approx(0.2)


@pytest.mark.parametrize("n,eps", [(3, 0.3), (9, 0.2), (15, 0.4), (25, 0.1)])
def test_independent_errors_match_the_binomial_formula(n, eps):
    seed = 17 * n + int(eps * 100)
    r = trial({"n": n, "eps": eps, "c": 0.0, "trials": 40_000, "candidates": 4, "seed": seed})
    z = abs(r["sim_error"] - r["formula_error"]) / max(r["sim_stderr"], 1e-5)
    assert z < Z_TOLERANCE, f"seed={seed}: simulated {r['sim_error']} vs formula {r['formula_error']} (z={z:.2f})"


def test_correlated_errors_match_their_exact_model_and_defeat_the_formula():
    seed = 99
    r = trial({"n": 21, "eps": 0.3, "c": 0.5, "trials": 40_000, "candidates": 4, "seed": seed})
    z = abs(r["sim_error"] - r["exact_model_error"]) / r["sim_stderr"]
    assert z < Z_TOLERANCE, f"seed={seed}: z={z:.2f}"
    assert r["sim_error"] > 10 * r["formula_error"], f"seed={seed}: correlation should dominate"


def test_vote_counting():
    answers = np.array([[0, 0, 1], [1, 1, 0], [1, 2, 3], [0, 1, 2]])
    strict, plural = vote_errors(answers, 4)
    assert strict.tolist() == [False, True, True, True]
    assert plural.tolist() == [False, True, True, False]  # tie: lowest index wins


def test_agent_marginal_error_and_pairwise_correlation():
    agent = SyntheticAgent(0.3, correlation=0.6, seed=5)
    a = agent.sample_errors(60_000, 2, np.random.default_rng(5)) != 0
    assert a.mean() == pytest.approx(0.3, abs=0.01)
    corr = np.corrcoef(a[:, 0], a[:, 1])[0, 1]
    assert corr == pytest.approx(0.36, abs=0.03)
    # the per-query API follows the same model
    wrong = np.mean([agent.answer_index(0, f"q{i}") != 0 for i in range(4000)])
    assert wrong == pytest.approx(0.3, abs=0.03)
