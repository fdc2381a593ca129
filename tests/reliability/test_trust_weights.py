"""Weighted votes under attack: a member that farms trust cannot exceed the weight cap, and
the weights consensus.trust produces keep PBFT safe when that member turns Byzantine."""
from __future__ import annotations

import random

from consensus.scenarios import ScenarioCluster
from consensus.trust import TrustBook

MEMBERS = [f"m{i:02d}" for i in range(10)]
ATTACKER = "m00"


def _farm(rounds: int = 100, seed: int = 6) -> TrustBook:
    """100 rounds: the attacker behaves perfectly (quality 1.0, only good events); honest
    members are good but imperfect (quality 0.5..0.9, an occasional timeout)."""
    rng = random.Random(seed)
    book = TrustBook()
    for _ in range(rounds):
        for m in MEMBERS:
            if m == ATTACKER:
                book.record_good(m, 3)
                book.record_quality(m, 1.0)
            else:
                book.record_good(m)
                if rng.random() < 0.1:
                    book.record_bad(m)
                book.record_quality(m, rng.uniform(0.5, 0.9))
        book.close_epoch()
    return book


def test_trust_farmer_stays_under_the_per_member_cap():
    book = _farm()
    w = book.weights(MEMBERS)
    total = sum(w.values())
    share = w[ATTACKER] / total
    assert w[ATTACKER] == max(w.values()), "the perfect member should be the heaviest"
    assert share <= book.share_cap + 1e-3, f"attacker share {share:.4f} > cap {book.share_cap}"
    assert share < 1 / 3


def test_trust_farmer_attacking_with_f_others_cannot_break_pbft():
    """Weights from the trust book; the farmer plus the lightest others up to 30 % of the
    weight play Twins (one key, two replicas) and equivocate: no honest member disagrees."""
    w = _farm().weights(MEMBERS)
    total = sum(w.values())
    byz = {ATTACKER: "twins"}
    for m in sorted(MEMBERS, key=lambda m: w[m]):
        if m not in byz and (sum(w[x] for x in byz) + w[m]) / total <= 0.30:
            byz[m] = "equivocate"
    assert sum(w[x] for x in byz) / total <= 0.30
    for seed in range(6):
        c = ScenarioCluster(w, byz, seed=seed, drop_p=0.05)
        c.request_all([b"a", b"b", b"c"])
        res, _ = c.run(gst_step=800, steps_max=40_000)
        assert not c.violations(), (seed, c.violations()[:2])
        assert res.live, seed


def test_evidence_quarantines_the_attacker_at_the_next_epoch():
    book = _farm()
    book.record_evidence(ATTACKER, "equivocation")
    book.close_epoch()
    assert book.weights(MEMBERS)[ATTACKER] == 0
    for _ in range(50):  # it cannot farm its way back
        book.record_good(ATTACKER, 10)
        book.record_quality(ATTACKER, 1.0)
        book.close_epoch()
    assert book.weights(MEMBERS)[ATTACKER] == 0
