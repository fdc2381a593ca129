"""Regression tests for the robust aggregators (issue 12, finding 5): NaN/Inf inputs, huge
norms and the exact trim boundary. Each failed before the fix (commit 8339254)."""
from __future__ import annotations

import random

import numpy as np
import pytest

from consensus.averaging import (
    InvalidVector, coordinate_median, filtered_mean, geometric_median, medoid, trimmed_mean,
    weighted_mean,
)

AGGS = [trimmed_mean, coordinate_median, geometric_median, medoid, filtered_mean]


def _honest(n=6, dim=8, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dim)) * 0.05 + 1.0
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("agg", AGGS + [weighted_mean])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_one_non_finite_row_cannot_make_the_result_non_finite(agg, bad):
    h = _honest()
    poison = np.full(h.shape[1], 1.0)
    poison[3] = bad
    out = agg(np.vstack([h, poison]))
    assert np.isfinite(out).all()
    if agg is not weighted_mean:
        assert (out >= h.min(axis=0) - 1e-9).all() and (out <= h.max(axis=0) + 1e-9).all()


@pytest.mark.parametrize("agg", AGGS)
def test_only_non_finite_rows_is_a_typed_error(agg):
    with pytest.raises(InvalidVector):
        agg(np.array([[np.nan, 1.0], [np.inf, 0.0]]))


@pytest.mark.parametrize("norm", [1e155, 1e200, 1e300])
def test_medoid_of_honest_vectors_and_one_huge_vector_is_honest(norm):
    h = _honest()
    byz = np.full(h.shape[1], norm / np.sqrt(h.shape[1]))
    x = np.vstack([byz, h])  # the Byzantine vector first: NaN costs used to pick index 0
    out = medoid(x)
    assert any(np.array_equal(out, r) for r in h)
    assert np.isfinite(geometric_median(x)).all()


def test_trimmed_mean_drops_all_byzantine_mass_when_its_share_equals_the_trim_fraction():
    rng = random.Random(12)
    escaped = 0
    for _ in range(2000):
        n = rng.randint(3, 9)
        hw = [rng.uniform(0.1, 10.0) for _ in range(n)]
        trim = rng.choice((0.1, 0.2, 0.25, 0.3))
        bw = trim / (1 - trim) * sum(hw)  # Byzantine share == trim (up to rounding)
        h = np.array([[rng.uniform(-1, 1)] for _ in range(n)])
        x = np.vstack([h, [[1e12 * rng.choice((-1, 1))]]])
        out = trimmed_mean(x, trim, weights=hw + [bw])
        if not (h.min() - 1e-9 <= out[0] <= h.max() + 1e-9):
            escaped += 1
    assert escaped == 0
