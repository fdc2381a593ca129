"""Attack schedules against :mod:`consensus.trust`, shared by the tests and the benchmarks.

``farming``: a coalition of patient members behaves perfectly (a good protocol event and
quality 1.0 every epoch) while the honest members have a realistic answer quality, and the
coalition waits for its weight share to pass 1/3 (then it could block or, with
equivocation, break PBFT quorums). The adversarial review of issue 12 found that with
``N = 8``, 2 farmers and honest quality 0.3/0.5/0.7 the coalition passed 1/3 after 3/6/9
epochs under a per-member cap alone.
"""
from __future__ import annotations

from dataclasses import dataclass

from .trust import TrustBook


@dataclass(frozen=True)
class FarmingResult:
    members: int
    farmers: int
    honest_quality: float
    epochs: int
    coalition_share_max: float
    """Largest share of the total weight the farmers held at any epoch close."""
    epoch_of_max: int


def farming(members: int = 8, farmers: int = 2, honest_quality: float = 0.5,
            epochs: int = 100, **book_kw) -> FarmingResult:
    """Run the farming schedule on a fresh :class:`TrustBook` (``book_kw`` go to it)."""
    if not (0 <= farmers < members):
        raise ValueError("need 0 <= farmers < members")
    book = TrustBook(**book_kw)
    ids = [f"m{i:03d}" for i in range(members)]
    coalition = ids[:farmers]
    best, at = 0.0, 0
    for epoch in range(1, epochs + 1):
        for m in ids:
            book.record_good(m)
            book.record_quality(m, 1.0 if m in coalition else honest_quality)
        book.close_epoch()
        w = book.weights(ids)
        share = sum(w[m] for m in coalition) / sum(w.values())
        if share > best:
            best, at = share, epoch
    return FarmingResult(members, farmers, honest_quality, epochs, best, at)


def farming_coalition_weight_max(epochs: int = 100) -> float:
    """Largest weight share of a coalition of fewer than N/3 members over ``epochs``, over
    the review's grid (N in 4..16 with the largest such coalition, honest quality
    0.3/0.5/0.7)."""
    worst = 0.0
    for n in range(4, 17):
        f = (n - 1) // 3
        for q in (0.3, 0.5, 0.7):
            worst = max(worst, farming(n, f, q, epochs).coalition_share_max)
    return worst
