"""Voting over answers: majority, weighted and score voting.

Answers are first *normalised* (the normaliser is a parameter), so "Paris", " paris." and
"PARIS" count as one answer under :func:`normalise_text`; "3.50" and "3.5" as one under
:func:`normalise_number`; "The answer is (B)" and "b" as one under :func:`normalise_choice`;
and answers whose embeddings are close as one under :func:`embedding_normaliser`. A
normaliser that returns ``None`` marks an abstention (the answer is not counted).

Tie rule (deterministic and independent of the order answers arrive in, so every node that
sees the same answers picks the same winner): the highest total weight wins; among equal
totals, the lexicographically smallest normalised key wins. For score voting, equal totals
go to the lowest candidate index, so pass candidates in an order all nodes agree on (e.g.
sorted by the proposer's id).
"""
from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass
from typing import Callable, Mapping, Optional, Sequence

import numpy as np

ANSWERS_MAX = 100_000


class VotingError(ValueError):
    """Bad input to a voting function (mismatched lengths, negative or non-finite weights)."""


Normaliser = Callable[[str], Optional[str]]


def normalise_text(text: str) -> Optional[str]:
    """Unicode NFKC, case-folded, punctuation at the ends stripped, whitespace collapsed.
    Empty results are abstentions."""
    if not isinstance(text, str):
        return None
    t = unicodedata.normalize("NFKC", text).casefold()
    t = " ".join(t.split())
    t = t.strip(" .,;:!?\"'`()[]{}")
    return t or None


def exact(text: str) -> Optional[str]:
    """The answer as is (only ``str`` counts)."""
    return text if isinstance(text, str) else None


_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?(?:[eE][-+]?\d+)?")


def normalise_number(text: str) -> Optional[str]:
    """The last number in the text, canonicalised ("3.50" -> "3.5", "1,000" -> "1000",
    "-0" -> "0"); None if there is none. The last one, because models tend to reason first
    and state the result at the end."""
    if not isinstance(text, str):
        return None
    found = [m.group(0) for m in _NUMBER.finditer(text) if re.search(r"\d", m.group(0))]
    if not found:
        return None
    raw = found[-1].replace(",", "")
    try:
        v = float(raw)
    except ValueError:
        return None
    if not math.isfinite(v):
        return None
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    return repr(v)


def normalise_choice(text: str, letters: str = "ABCDEFGHIJ") -> Optional[str]:
    """A multiple-choice letter: the first standalone letter from ``letters`` (upper-cased),
    preferring one after "answer"; None if none."""
    if not isinstance(text, str):
        return None
    up = text.upper()
    cls = re.escape(letters.upper())
    m = re.search(rf"ANSWER\s*(?:IS)?\s*[:\-]?\s*\(?([{cls}])\b", up)
    if m:
        return m.group(1)
    m = re.search(rf"(?<![A-Z])\(?([{cls}])\)?(?![A-Z])", up)
    return m.group(1) if m else None


def cluster_embeddings(vectors, threshold: float = 0.9) -> list[int]:
    """Greedy leader clustering by cosine similarity: each vector joins the first earlier
    cluster leader with similarity >= ``threshold``, else leads a new cluster. Returns a
    cluster label per vector (labels are leader indices, so they are stable)."""
    x = np.asarray(vectors, dtype=np.float64)
    if x.ndim != 2:
        raise VotingError("vectors must be (n, dim)")
    if not np.isfinite(x).all():
        raise VotingError("vectors contain NaN or Inf")
    n = np.linalg.norm(x, axis=1, keepdims=True)
    x = x / np.where(n > 0, n, 1.0)
    leaders: list[int] = []
    labels = []
    for i in range(x.shape[0]):
        for l in leaders:
            if float(x[i] @ x[l]) >= threshold:
                labels.append(l)
                break
        else:
            leaders.append(i)
            labels.append(i)
    return labels


def cluster_normaliser(texts: Sequence[str], labels: Sequence[int]) -> Normaliser:
    """A normaliser mapping each of ``texts`` to the key of its cluster (the text of the
    cluster's leader ``texts[labels[i]]``): voting then counts clusters of equivalent answers,
    however they were found (p2pmoa.agreement clusters canonical answers). Unknown texts are
    abstentions.

    Raises:
        VotingError: lengths differ or a label is not an index of ``texts``.
    """
    if len(labels) != len(texts):
        raise VotingError("one label per text is needed")
    if any(not (isinstance(l, int) and 0 <= l < len(texts)) for l in labels):
        raise VotingError("labels must be indices of texts")
    key = {t: texts[l] for t, l in zip(texts, labels)}
    return lambda text: key.get(text)


def embedding_normaliser(texts: Sequence[str], vectors, threshold: float = 0.9) -> Normaliser:
    """A normaliser mapping each of ``texts`` to the key of its embedding cluster (the text
    of the cluster's leader); unknown texts are abstentions."""
    labels = cluster_embeddings(vectors, threshold)
    if len(labels) != len(texts):
        raise VotingError("one vector per text is needed")
    key = {t: texts[l] for t, l in zip(texts, labels)}
    return lambda text: key.get(text)


@dataclass(frozen=True)
class VoteResult:
    """Outcome of a (weighted) vote."""

    winner: Optional[str]
    """The winning normalised key (None if every answer abstained)."""
    index: Optional[int]
    """Index of the first answer whose key is the winner (to recover its original text)."""
    tally: tuple[tuple[str, float], ...]
    """(key, total weight), best first, in tie-rule order."""
    total: float
    """Weight of all counted (non-abstaining) answers."""
    tie: bool
    """The winner's total equals the runner-up's (the tie rule decided)."""

    @property
    def share(self) -> float:
        """The winner's share of the counted weight (0 if nothing was counted)."""
        return self.tally[0][1] / self.total if self.tally and self.total > 0 else 0.0


def weighted_vote(answers: Sequence[str], weights: Optional[Sequence[float]] = None,
                  normalise: Normaliser = normalise_text) -> VoteResult:
    """Plurality vote where answer ``i`` counts ``weights[i]`` (default 1).

    Raises:
        VotingError: lengths differ, a weight is negative or not finite, too many answers.
    """
    n = len(answers)
    if n > ANSWERS_MAX:
        raise VotingError(f"at most {ANSWERS_MAX} answers")
    if weights is None:
        weights = [1.0] * n
    if len(weights) != n:
        raise VotingError(f"{n} answers but {len(weights)} weights")
    totals: dict[str, list[float]] = {}
    first: dict[str, int] = {}
    for i, (a, w) in enumerate(zip(answers, weights)):
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
            raise VotingError(f"weight {i} must be a finite number >= 0, got {w!r}")
        k = normalise(a)
        if k is None:
            continue
        totals.setdefault(k, []).append(float(w))
        first.setdefault(k, i)
    summed = {k: math.fsum(v) for k, v in totals.items()}
    tally = tuple(sorted(summed.items(), key=lambda kv: (-kv[1], kv[0])))
    total = math.fsum(summed.values())
    if not tally:
        return VoteResult(None, None, (), 0.0, False)
    tie = len(tally) > 1 and tally[0][1] == tally[1][1]
    return VoteResult(tally[0][0], first[tally[0][0]], tally, total, tie)


def majority_vote(answers: Sequence[str], normalise: Normaliser = normalise_text) -> VoteResult:
    """One answer, one vote (see :func:`weighted_vote`)."""
    return weighted_vote(answers, None, normalise)


@dataclass(frozen=True)
class ScoreResult:
    winner: int
    """Index of the winning candidate."""
    totals: tuple[float, ...]
    """``S(r) = sum_i w_i * s_i(r)`` per candidate."""
    tie: bool


def score_vote(scores, weights: Optional[Sequence[float]] = None) -> ScoreResult:
    """Score voting: voter ``i`` gives candidate ``r`` the score ``scores[i][r]``;
    ``S(r) = sum_i w_i * s_i(r)``, the winner is ``argmax S`` (ties: lowest index).

    A NaN score is an abstention of that voter on that candidate (counts 0).

    Raises:
        VotingError: shapes differ, no candidates, infinite scores, bad weights.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2 or s.shape[1] == 0:
        raise VotingError(f"scores must be (voters, candidates) with >= 1 candidate, got {s.shape}")
    if np.isinf(s).any():
        raise VotingError("scores must be finite (NaN = abstain)")
    w = np.ones(s.shape[0]) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (s.shape[0],) or not np.isfinite(w).all() or (w < 0).any():
        raise VotingError("one finite weight >= 0 per voter is needed")
    totals = (np.nan_to_num(s, nan=0.0) * w[:, None]).sum(axis=0)
    best = float(totals.max())
    winners = np.flatnonzero(totals == best)
    return ScoreResult(int(winners[0]), tuple(float(t) for t in totals), len(winners) > 1)


def weighted_median(values: Sequence[float], weights: Sequence[float]) -> float:
    """The lower weighted median: the smallest value v with weight(values <= v) >= half the
    total weight. Robust: voters holding less than half the weight cannot move it outside the
    range of the others' values.

    Raises:
        VotingError: lengths differ, no positive weight, or non-finite input.
    """
    if len(values) != len(weights) or not values:
        raise VotingError("one weight per value is needed, and at least one value")
    pairs = sorted((float(v), float(w)) for v, w in zip(values, weights))
    if any(not math.isfinite(v) or not math.isfinite(w) or w < 0 for v, w in pairs):
        raise VotingError("values and weights must be finite, weights >= 0")
    total = math.fsum(w for _, w in pairs)
    if total <= 0:
        raise VotingError("total weight must be > 0")
    acc = 0.0
    for v, w in pairs:
        acc += w
        if 2 * acc >= total:
            return v
    return pairs[-1][0]  # pragma: no cover - float rounding only


def median_score_vote(scores, weights: Optional[Sequence[float]] = None) -> ScoreResult:
    """Leaderless score aggregation: every voter scores every candidate; candidate ``r``'s
    total is the *weighted coordinate median* of ``scores[:, r]`` over the voters (NaN =
    abstain on that candidate); the winner is ``argmax`` (ties: lowest index). Unlike the sum
    of :func:`score_vote`, voters with less than half the weight cannot make a candidate win
    that the others score lower.

    Raises:
        VotingError: shapes differ, no candidates, infinite scores, bad weights.
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2 or s.shape[1] == 0 or s.shape[0] == 0:
        raise VotingError(f"scores must be (voters, candidates) with >= 1 of each, got {s.shape}")
    if np.isinf(s).any():
        raise VotingError("scores must be finite (NaN = abstain)")
    w = np.ones(s.shape[0]) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (s.shape[0],) or not np.isfinite(w).all() or (w < 0).any():
        raise VotingError("one finite weight >= 0 per voter is needed")
    totals = []
    for r in range(s.shape[1]):
        keep = ~np.isnan(s[:, r]) & (w > 0)
        totals.append(weighted_median(s[keep, r].tolist(), w[keep].tolist()) if keep.any() else 0.0)
    best = max(totals)
    winners = [i for i, t in enumerate(totals) if t == best]
    return ScoreResult(winners[0], tuple(totals), len(winners) > 1)
