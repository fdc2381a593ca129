"""Trust: from answer quality and protocol behaviour to integer PBFT weights.

For every member the book keeps

* ``q_i``, answer quality in [0, 1]: an exponential moving average of scores the caller
  records (agreement of the member's answer with the decided one, a judge's score...);
* ``t_i``, protocol trust in [0, 1]: a beta reputation ``(r + 1) / (r + s + 2)`` over good
  (``r``) and bad (``s``) protocol events, with forgetting (``r, s <- lambda * r, lambda * s``
  once per epoch), as in Jøsang & Ismail's beta reputation system;

and combines them as ``w_i = alpha * q_i + beta * t_i`` with ``alpha + beta = 1``.

Why the rules look the way they do:

* **Weights are a consensus input**, so every honest member must compute the same integers.
  Everything here is deterministic (exact rational arithmetic for normalisation), depends only
  on the events recorded (record only *decided* facts, never a member's self-report), and the
  weights change only when :meth:`TrustBook.close_epoch` is called, at an epoch boundary the
  members agree on. Evidence (equivocation, forged signature) is therefore also applied at the
  next epoch boundary; it sets ``t_i = 0`` and quarantines the member for good.
* **Capped share**: no member gets more than ``share_cap`` of the total weight (default 0.25,
  below the 1/3 that would let one member block or forge quorums alone; the coalition cap
  below is what keeps every small coalition under 1/3). With fewer than ``1/share_cap``
  members the cap is ``1/N`` (equal weights). The default was 0.2 before issue 12, which
  forced equal weights in a 5-member group: a garbage member kept full weight.
* **Capped coalitions**: a per-member cap alone lets a patient coalition farm its way past
  1/3 (two farmers at 0.2 each among 8 members hold 0.4). So with ``N`` members of positive
  weight and ``f = floor((N - 1) / 3)`` (the largest coalition with fewer than ``N/3``
  members), every share is also capped at ``(1/N + 1/(3f)) / 2``: strictly below ``1/(3f)``,
  so *any* ``f`` members hold less than a third of the weight however long they behave well,
  and strictly above ``1/N``, so the cap is always feasible. Integers are floored at a scale
  of at least ``6 N^2``, which keeps the bound after rounding; a test checks it by a
  hypothesis property and by the farming schedule of the review.
* **Rate-limited growth**: a member's effective score may grow by at most ``growth_max``
  (absolute, per epoch; default 0.05) while it can fall at once, so farming reputation slowly
  and then attacking does not buy a large weight quickly.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterable, Mapping

logger = logging.getLogger(__name__)

WEIGHT_SCALE = 10_000
"""Fixed-point scale of the integer weights: the weights of a group sum to about this."""

TRUST_FORMAT_VERSION = 1
MEMBERS_MAX = 100_000


class TrustError(ValueError):
    """Base class of :mod:`consensus.trust` errors (bad parameters, bad serialised data)."""


@dataclass
class _Entry:
    good: float = 0.0
    bad: float = 0.0
    quality: float | None = None
    quality_n: int = 0
    score: float | None = None  # effective score, frozen between epochs
    quarantined: bool = False
    quarantine_pending: bool = False
    reason: str = ""


@dataclass(frozen=True)
class TrustSnapshot:
    """One member's trust at a moment (see :meth:`TrustBook.explain`)."""

    member: str
    quality: float
    protocol_trust: float
    target: float
    score: float
    quarantined: bool
    reason: str


@dataclass(frozen=True)
class TrustStatistics:
    members: int
    quarantined: int
    epoch: int
    events_good: int
    events_bad: int


class TrustBook:
    """Per-member trust and the integer weights derived from it.

    Args:
        alpha: weight of answer quality (``beta = 1 - alpha``), default 0.5.
        forgetting: ``lambda`` in (0, 1], applied to the beta counts at each epoch close
            (default 0.9: old behaviour fades over tens of epochs).
        quality_ema: smoothing of the quality average in (0, 1] (default 0.2).
        initial_quality: quality assumed before any score (default 0.5, "unknown").
        initial_score: effective score of a member seen for the first time (default 0.5).
        share_cap: largest share of total weight one member may hold (default 0.25; must be
            below 1/3, else one member could block quorums alone).
        growth_max: largest increase of a member's score per epoch (default 0.05).
        score_floor: smallest score of a non-quarantined member (default 0.05), so a new or
            unlucky honest member still counts.
    """

    def __init__(self, *, alpha: float = 0.5, forgetting: float = 0.9,
                 quality_ema: float = 0.2, initial_quality: float = 0.5,
                 initial_score: float = 0.5, share_cap: float = 0.25,
                 growth_max: float = 0.05, score_floor: float = 0.05) -> None:
        for name, v, lo, hi in (("alpha", alpha, 0.0, 1.0), ("forgetting", forgetting, 1e-9, 1.0),
                                ("quality_ema", quality_ema, 1e-9, 1.0),
                                ("initial_quality", initial_quality, 0.0, 1.0),
                                ("initial_score", initial_score, 0.0, 1.0),
                                ("share_cap", share_cap, 1e-9, 0.333),
                                ("growth_max", growth_max, 0.0, 1.0),
                                ("score_floor", score_floor, 0.0, 1.0)):
            if (isinstance(v, bool) or not isinstance(v, (int, float)) or not (lo <= v <= hi)
                    or math.isnan(v)):
                raise TrustError(f"{name} must be in [{lo}, {hi}], got {v!r}")
        self.alpha = float(alpha)
        self.beta = 1.0 - self.alpha
        self.forgetting = float(forgetting)
        self.quality_ema = float(quality_ema)
        self.initial_quality = float(initial_quality)
        self.initial_score = float(initial_score)
        self.share_cap = float(share_cap)
        self.growth_max = float(growth_max)
        self.score_floor = float(score_floor)
        self.epoch = 0
        self._m: dict[str, _Entry] = {}
        self._n_good = 0
        self._n_bad = 0

    # ------------------------------------------------------------ recording

    def _entry(self, member: str) -> _Entry:
        if not isinstance(member, str) or not member:
            raise TrustError(f"member ids are non-empty strings, got {member!r}")
        e = self._m.get(member)
        if e is None:
            if len(self._m) >= MEMBERS_MAX:
                raise TrustError(f"trust book full ({MEMBERS_MAX} members)")
            e = self._m[member] = _Entry()
        return e

    def record_good(self, member: str, n: float = 1.0) -> None:
        """Count ``n`` correct protocol events (a valid vote on time, a decided proposal)."""
        if not (isinstance(n, (int, float)) and 0 <= n < math.inf):
            raise TrustError(f"event count must be finite and >= 0, got {n!r}")
        self._entry(member).good += n
        self._n_good += 1

    def record_bad(self, member: str, n: float = 1.0) -> None:
        """Count ``n`` faulty protocol events (an invalid proposal, a timeout as primary)."""
        if not (isinstance(n, (int, float)) and 0 <= n < math.inf):
            raise TrustError(f"event count must be finite and >= 0, got {n!r}")
        self._entry(member).bad += n
        self._n_bad += 1

    def record_quality(self, member: str, score: float) -> None:
        """Record an answer-quality score in [0, 1] (agreement with the decided answer,
        a judge's score); folded into an exponential moving average."""
        if not isinstance(score, (int, float)) or not (0.0 <= score <= 1.0):
            raise TrustError(f"quality score must be in [0, 1], got {score!r}")
        e = self._entry(member)
        e.quality = score if e.quality is None else (
            (1 - self.quality_ema) * e.quality + self.quality_ema * score)
        e.quality_n += 1

    def record_evidence(self, member: str, reason: str) -> None:
        """Proof of misbehaviour (equivocation, forged signature): at the next epoch the
        member's protocol trust becomes 0 and it is quarantined (weight 0) for good."""
        e = self._entry(member)
        if not e.quarantined and not e.quarantine_pending:
            logger.info("trust: evidence against %s (%s); quarantined from next epoch",
                        member, reason)
        e.quarantine_pending = True
        e.reason = e.reason or str(reason)[:200]

    # ------------------------------------------------------------ reading

    def quality(self, member: str) -> float:
        e = self._m.get(member)
        return self.initial_quality if e is None or e.quality is None else e.quality

    def protocol_trust(self, member: str) -> float:
        """Beta reputation ``(r + 1) / (r + s + 2)``; 0 once quarantined."""
        e = self._m.get(member)
        if e is None:
            return 0.5
        if e.quarantined:
            return 0.0
        return (e.good + 1.0) / (e.good + e.bad + 2.0)

    def target(self, member: str) -> float:
        """``alpha * q + beta * t``: where the member's score is heading."""
        e = self._m.get(member)
        if e is not None and e.quarantined:
            return 0.0
        return self.alpha * self.quality(member) + self.beta * self.protocol_trust(member)

    def score(self, member: str) -> float:
        """The effective score used for weights (frozen between epochs)."""
        e = self._m.get(member)
        if e is None or e.score is None:
            return self.initial_score
        return 0.0 if e.quarantined else e.score

    def history(self, member: str) -> int:
        """How many quality scores were recorded for ``member`` (rounds it was judged in):
        the evidence a newcomer has to earn before it counts as established."""
        e = self._m.get(member)
        return 0 if e is None else e.quality_n

    def members(self) -> list[str]:
        """Every member the book holds state for (sorted)."""
        return sorted(self._m)

    def judged(self, history_min: int = 1) -> list[str]:
        """Members with at least ``history_min`` quality scores, not quarantined (sorted)."""
        return [m for m, e in sorted(self._m.items())
                if e.quality_n >= history_min and not e.quarantined]

    def is_quarantined(self, member: str) -> bool:
        e = self._m.get(member)
        return e is not None and e.quarantined

    def explain(self, member: str) -> TrustSnapshot:
        e = self._m.get(member) or _Entry()
        return TrustSnapshot(member, self.quality(member), self.protocol_trust(member),
                             self.target(member), self.score(member), e.quarantined, e.reason)

    def statistics(self) -> TrustStatistics:
        return TrustStatistics(len(self._m), sum(e.quarantined for e in self._m.values()),
                               self.epoch, self._n_good, self._n_bad)

    # ------------------------------------------------------------ epochs and weights

    def close_epoch(self) -> None:
        """Apply everything recorded since the last epoch: evidence, forgetting, and move each
        score toward its target (down at once, up by at most ``growth_max``)."""
        self.epoch += 1
        for member in sorted(self._m):
            e = self._m[member]
            if e.quarantine_pending and not e.quarantined:
                e.quarantined = True
                logger.info("trust: %s quarantined at epoch %d (%s)", member, self.epoch, e.reason)
            if e.quarantined:
                e.score = 0.0
                continue
            target = max(self.score_floor, self.target(member))
            current = self.initial_score if e.score is None else e.score
            e.score = target if target <= current else min(target, current + self.growth_max)
            e.good *= self.forgetting
            e.bad *= self.forgetting

    def weights(self, members: Iterable[str]) -> dict[str, int]:
        """Integer weights of ``members`` (they sum to about ``max(WEIGHT_SCALE, 6 N^2)``).

        Deterministic: exact rational water-filling caps every share at
        ``max(min(share_cap, coalition cap), 1/N)`` (see the module doc); quarantined members
        get 0. If every member is quarantined or scores 0, all get equal weight 1 (a group
        needs some weight to exist).

        Raises:
            TrustError: ``members`` is a string or holds something that is not a member id.
        """
        if isinstance(members, (str, bytes)) or not isinstance(members, Iterable):
            raise TrustError(f"members must be an iterable of member ids, got "
                             f"{type(members).__name__}")
        given = list(members)
        if not all(isinstance(m, str) and m for m in given):
            raise TrustError("member ids are non-empty strings")
        ms = sorted(set(given))
        if len(ms) > MEMBERS_MAX:
            raise TrustError(f"at most {MEMBERS_MAX} members")
        if not ms:
            return {}
        scores = {m: Fraction(self.score(m)).limit_denominator(1 << 20) for m in ms}
        live = [m for m in ms if scores[m] > 0]
        if not live:
            return {m: 1 for m in ms}
        n = len(live)
        cap = Fraction(self.share_cap).limit_denominator(1 << 20)
        f = (n - 1) // 3
        if f >= 1:
            cap = min(cap, (Fraction(1, n) + Fraction(1, 3 * f)) / 2)
        cap = max(cap, Fraction(1, n))
        shares: dict[str, Fraction] = {}
        free = list(live)
        budget = Fraction(1)
        while free:
            total = sum(scores[m] for m in free)
            over = [m for m in free if scores[m] / total * budget > cap]
            if not over:
                for m in free:
                    shares[m] = scores[m] / total * budget
                break
            for m in over:
                shares[m] = cap
                budget -= cap
                free.remove(m)
        # floor keeps equal scores equal; the total loses at most n, which a scale of 6 n^2
        # absorbs: f * cap * S < (S - n) / 3 whenever S > 2 n^2 / (n - 3 f)
        scale = max(WEIGHT_SCALE, 6 * n * n)
        out = {m: 0 for m in ms}
        for m, sh in shares.items():
            out[m] = max(1, math.floor(sh * scale))
        if f >= 1:
            top = sorted(out.values(), reverse=True)[:f]
            assert 3 * sum(top) < sum(out.values()), "a coalition of f members reached 1/3"
        return out

    # ------------------------------------------------------------ persistence

    def to_dict(self) -> dict:
        """A plain dict (str/int/float/bool/list/dict) for JSON or msgpack."""
        return {
            "version": TRUST_FORMAT_VERSION,
            "params": {"alpha": self.alpha, "forgetting": self.forgetting,
                       "quality_ema": self.quality_ema, "initial_quality": self.initial_quality,
                       "initial_score": self.initial_score, "share_cap": self.share_cap,
                       "growth_max": self.growth_max, "score_floor": self.score_floor},
            "epoch": self.epoch,
            "members": {m: {"good": e.good, "bad": e.bad, "quality": e.quality,
                            "quality_n": e.quality_n, "score": e.score,
                            "quarantined": e.quarantined, "pending": e.quarantine_pending,
                            "reason": e.reason}
                        for m, e in sorted(self._m.items())},
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> "TrustBook":
        """Rebuild a book from :meth:`to_dict` output; raises :class:`TrustError` if malformed."""
        try:
            if data["version"] != TRUST_FORMAT_VERSION:
                raise TrustError(f"unsupported trust format {data['version']!r}")
            book = cls(**dict(data["params"]))
            epoch = data["epoch"]
            if type(epoch) is not int or epoch < 0:
                raise TrustError("epoch must be an int >= 0")
            book.epoch = epoch
            members = data["members"]
            if not isinstance(members, Mapping) or len(members) > MEMBERS_MAX:
                raise TrustError("members must be a mapping")
            for m, d in members.items():
                e = book._entry(m)
                e.good, e.bad = float(d["good"]), float(d["bad"])
                e.quality = None if d["quality"] is None else float(d["quality"])
                e.quality_n = int(d["quality_n"])
                e.score = None if d["score"] is None else float(d["score"])
                e.quarantined, e.quarantine_pending = bool(d["quarantined"]), bool(d["pending"])
                e.reason = str(d["reason"])
                for v in (e.good, e.bad):
                    if not (0 <= v < math.inf):
                        raise TrustError(f"bad event counts for {m!r}")
                for v in (e.quality, e.score):
                    if v is not None and not (0.0 <= v <= 1.0):
                        raise TrustError(f"bad quality/score for {m!r}")
            return book
        except TrustError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise TrustError(f"malformed trust data: {exc!r}") from exc
