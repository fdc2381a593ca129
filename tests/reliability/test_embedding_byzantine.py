"""Embedding consensus under adversarial vectors (issue 6).

Honest proposals are unit vectors around a common direction; a fraction p in
{0, 10, 20, 33, 45} % of the proposals is adversarial (random directions, the flipped honest
direction, or colluding vectors all placed at one point near the honest centre). Every
robust aggregator of consensus.averaging must keep its error against the honest mean
bounded up to its breakdown point; malformed vectors are rejected before they are used.
"""
from __future__ import annotations

import numpy as np
import pytest

from consensus.averaging import (AveragingNode, InvalidVector, check_vectors,
                                 coordinate_median, geometric_median, medoid, trimmed_mean,
                                 weighted_mean)

DIM = 64
N = 40
FRACTIONS = (0.0, 0.10, 0.20, 0.33, 0.45)
ATTACKS = ("random", "flipped", "colluding")


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def make(seed: int, frac: float, attack: str):
    rng = np.random.default_rng(seed)
    centre = _unit(rng.normal(size=DIM))
    nb = int(round(frac * N))
    honest = _unit(centre + 0.25 * rng.normal(size=(N - nb, DIM)) / np.sqrt(DIM))
    hmean = honest.mean(axis=0)
    if attack == "random":
        bad = _unit(rng.normal(size=(nb, DIM)))
    elif attack == "flipped":
        bad = np.tile(_unit(-hmean), (nb, 1))
    else:  # colluding: one point just outside the honest cloud, all attackers on it
        ortho = rng.normal(size=DIM)
        ortho -= ortho @ centre * centre
        bad = np.tile(_unit(centre + 0.6 * _unit(ortho)), (nb, 1))
    x = np.vstack([honest, bad]) if nb else honest
    order = rng.permutation(len(x))
    return check_vectors(x[order], dim=DIM), honest, hmean


def _radius(honest, z):
    return float(np.max(np.linalg.norm(honest - z, axis=1)))


@pytest.mark.parametrize("attack", ATTACKS)
@pytest.mark.parametrize("frac", FRACTIONS)
def test_robust_aggregators_bounded_up_to_breakdown(frac, attack):
    for seed in range(3):
        x, honest, hmean = make(seed, frac, attack)
        lo, hi = honest.min(axis=0), honest.max(axis=0)
        h = len(honest) / len(x)
        r = _radius(honest, hmean)
        if frac <= 0.20:  # trimmed mean with trim 0.2: breakdown 0.2
            t = trimmed_mean(x, 0.2)
            assert np.all(t >= lo - 1e-9) and np.all(t <= hi + 1e-9)
        med = coordinate_median(x)  # breakdown 1/2
        assert np.all(med >= lo - 1e-9) and np.all(med <= hi + 1e-9)
        gm = geometric_median(x)  # within 2hr/(2h-1) of the honest mean
        assert np.linalg.norm(gm - hmean) <= 2 * h * r / (2 * h - 1) + 1e-6
        md = medoid(x)  # cost(medoid) <= cost(best honest) gives (2h+1)r/(2h-1)
        assert np.linalg.norm(md - hmean) <= (2 * h + 1) * r / (2 * h - 1) + 1e-6


def test_the_bounds_can_fail_mean_and_beyond_breakdown():
    """The plain mean breaks at once, and past 1/2 colluders drag the geometric median."""
    x, honest, hmean = make(0, 0.20, "flipped")
    r = _radius(honest, hmean)
    assert np.linalg.norm(weighted_mean(x) - hmean) > r
    x, honest, hmean = make(0, 0.60, "colluding")
    r = _radius(honest, hmean)
    lo, hi = honest.min(axis=0), honest.max(axis=0)
    med = coordinate_median(x)
    assert not (np.all(med >= lo) and np.all(med <= hi))
    assert np.linalg.norm(geometric_median(x) - hmean) > r


@pytest.mark.parametrize("bad", [
    lambda v: np.where(np.arange(DIM) == 3, np.nan, v),
    lambda v: np.where(np.arange(DIM) == 5, np.inf, v),
    lambda v: v[:-1],
    lambda v: np.concatenate([v, [0.0]]),
    lambda v: 7.5 * v,
    lambda v: 0.0 * v,
])
def test_malformed_vectors_are_rejected(bad):
    x, _, _ = make(1, 0.0, "random")
    rows = [list(x[0]), list(x[1]), list(bad(x[2]))]
    with pytest.raises(InvalidVector):
        check_vectors(rows, dim=DIM)
    with pytest.raises(InvalidVector):
        check_vectors(bad(x[2]), dim=DIM)


def test_averaging_node_drops_malformed_neighbour_vectors():
    """A node fed NaN / wrong-dimension / huge vectors counts them rejected and ignores them."""
    from consensus.averaging import NeighbourVector, VectorMsg
    x, _, _ = make(2, 0.0, "random")
    node = AveragingNode("a", x[0], {"b": 1.0, "c": 1.0})
    node.start()
    before = node.statistics()
    for vec in (np.full(DIM, np.nan), x[1][:-2], 50 * x[1]):
        node.handle(NeighbourVector(VectorMsg("b", 0, tuple(float(v) for v in vec))))
    assert node.statistics().rejected == before.rejected + 3
