"""LLM stand-ins for the simulator, each honest about what it is.

A simulated mesh of 1,000 nodes cannot run 1,000 language models, so the engine asks an
*agent* for every ``Generate``/``Embed`` effect. Two agents exist:

* :class:`SyntheticAgent` -- NOT a language model. Every question has a fixed set of candidate
  answers, candidate 0 being correct. Node ``i`` answers wrongly with probability ``eps_i``;
  errors of different nodes are correlated through a per-question *common shock* (below), the
  mechanism that makes real ensembles of similar models fail together. The embedding of a
  candidate is a fixed random unit vector per (question, candidate) plus small per-node noise,
  so embeddings agree exactly when answers agree. Its ``model_id`` is ``stand-in:synthetic``.
* :class:`ReplayAgent` -- answers and embeddings recorded from the real GGUF models by
  ``p2pmoa sim record`` (see :func:`record`), replayed from a JSONL file. Its ``model_id`` is
  the recorded model's id prefixed with ``replay:``.

Error model of :class:`SyntheticAgent` (stated so results can be checked by hand):
for question ``q`` draw ``Z_q ~ Bernoulli(eps_bar)`` (the "hard question" shock, ``eps_bar`` =
mean error rate) and a wrong candidate ``W_q``. Node ``i`` *copies* the shock with probability
``c = correlation``: it is wrong iff ``Z_q`` and then answers ``W_q``; otherwise it errs
independently with probability ``eps_i`` and picks a wrong candidate uniformly. With equal
rates ``eps``, each node errs with probability ``eps`` and two nodes' error indicators have
correlation ``c**2``; ``c = 0`` gives the independent errors of the binomial formula.

All draws are keyed by ``(seed, question, node)`` through string-seeded ``random.Random``
objects, so a node's answer does not depend on the order in which the engine asks.
"""
from __future__ import annotations

import hashlib
import json
import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from p2pmoa.effects import ChatMessage, Embed, Generate, GenParams
from simulations.errors import AgentError

log = logging.getLogger(__name__)

CANDIDATES_MAX = 1_000
REPLAY_RECORDS_MAX = 1_000_000
REPLAY_LINE_BYTES_MAX = 1 << 20


def question_of(messages: Sequence[ChatMessage]) -> str:
    """The question a Generate job is about: the last user message (the protocol's prompt)."""
    for m in reversed(messages):
        if m.role == "user":
            return m.content
    return messages[-1].content if messages else ""


@dataclass(frozen=True)
class SyntheticGeneration:
    """What :class:`SyntheticAgent` returns when ``p2pmoa.llm`` is not importable (mirrors
    ``p2pmoa.llm.Generation``; the agent prefers the real class)."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    llm_s: float
    model_id: str


def _generation(**kw: Any):
    try:
        from p2pmoa.llm import Generation
    except ImportError:  # pragma: no cover - p2pmoa.llm is part of the tree
        return SyntheticGeneration(**kw)
    return Generation(**kw)


def _unit(rng: np.random.Generator, dim: int) -> np.ndarray:
    v = rng.standard_normal(dim)
    return v / np.linalg.norm(v)


class SyntheticAgent:
    """A synthetic stand-in for every node's model and the shared embedder (see module doc).

    Args:
        error_rates: ``eps_i`` per node (index = node), or one rate for all nodes.
        correlation: ``c`` in [0, 1], probability that a node copies the per-question shock.
        candidates: answers per question (1 correct + ``candidates - 1`` wrong). Default 4.
        dim: embedding dimension. Default 64.
        noise: per-node embedding noise: expected L2 norm of the Gaussian noise added to the
            unit candidate vector before renormalising. Default 0.05 (cosine between two
            nodes' embeddings of one answer about 0.997; random candidates are near 0).
        seed: seeds every draw (keyed by question and node, order independent).
        n_nodes: needed when ``error_rates`` is a single number and node ids must be checked.
    """

    model_id = "stand-in:synthetic"

    def __init__(self, error_rates: float | Sequence[float], *, correlation: float = 0.0,
                 candidates: int = 4, dim: int = 64, noise: float = 0.05, seed: int = 0) -> None:
        rates = [error_rates] if isinstance(error_rates, (int, float)) else list(error_rates)
        if not rates or any(not (0.0 <= float(e) <= 1.0) for e in rates):
            raise AgentError("error rates must be probabilities in [0, 1]")
        if not (0.0 <= correlation <= 1.0):
            raise AgentError(f"correlation must be in [0, 1], got {correlation}")
        if not (2 <= candidates <= CANDIDATES_MAX):
            raise AgentError(f"candidates must be in [2, {CANDIDATES_MAX}], got {candidates}")
        if dim < 2:
            raise AgentError(f"embedding dimension must be >= 2, got {dim}")
        self._uniform = isinstance(error_rates, (int, float))
        self.rates = [float(e) for e in rates]
        self.eps_bar = float(np.mean(self.rates))
        self.correlation = float(correlation)
        self.candidates = candidates
        self.dim = dim
        self.noise = float(noise)
        self.seed = seed
        self.space_id = f"stand-in:synthetic/{dim}"
        self.calls = 0

    def rate(self, node: int) -> float:
        return self.rates[0] if self._uniform else self.rates[node]

    # ---- answers ------------------------------------------------------------------------------

    def _shock(self, question: str) -> tuple[bool, int]:
        r = random.Random(f"{self.seed}|shock|{question}")
        return r.random() < self.eps_bar, 1 + r.randrange(self.candidates - 1)

    def answer_index(self, node: int, question: str) -> int:
        """Index of the candidate node ``node`` answers to ``question`` (0 = correct)."""
        r = random.Random(f"{self.seed}|node|{node}|{question}")
        if r.random() < self.correlation:
            wrong, w = self._shock(question)
            return w if wrong else 0
        if r.random() < self.rate(node):
            return 1 + r.randrange(self.candidates - 1)
        return 0

    def candidate_text(self, question: str, index: int) -> str:
        """The text of candidate ``index``: short, distinct, and obviously synthetic."""
        tag = hashlib.sha256(question.encode()).hexdigest()[:8]
        return f"[synthetic] answer {index} to question {tag}"

    def parse_index(self, text: str) -> int | None:
        """Candidate index of a synthetic answer text, or ``None`` for any other text."""
        parts = text.split()
        if len(parts) >= 3 and parts[0] == "[synthetic]" and parts[1] == "answer" and parts[2].isdigit():
            return int(parts[2])
        return None

    def generate(self, node: int, job: Generate, rng: random.Random | None = None):
        """Answer a ``Generate`` effect of node ``node`` (``rng`` unused: draws are keyed)."""
        self.calls += 1
        q = question_of(job.messages)
        text = self.candidate_text(q, self.answer_index(node, q))
        prompt_tokens = sum(len(m.content.split()) for m in job.messages)
        return _generation(text=text, prompt_tokens=prompt_tokens,
                           completion_tokens=len(text.split()), llm_s=0.0, model_id=self.model_id)

    # ---- embeddings ---------------------------------------------------------------------------

    def candidate_vector(self, question_tag: str, index: int) -> np.ndarray:
        h = int.from_bytes(hashlib.sha256(f"{self.seed}|vec|{question_tag}|{index}".encode()).digest()[:8], "little")
        return _unit(np.random.default_rng(h), self.dim)

    def embed_texts(self, node: int, texts: Sequence[str]) -> np.ndarray:
        """Embeddings (len(texts), dim) float32, L2-normalised; synthetic answers map to their
        candidate's vector plus node noise, any other text to a hash-seeded random vector."""
        out = np.zeros((len(texts), self.dim), dtype=np.float64)
        for i, t in enumerate(texts):
            idx = self.parse_index(t)
            if idx is not None:
                tag = t.split()[-1]
                base = self.candidate_vector(tag, idx)
            else:
                base = self.candidate_vector("text:" + t, 0)
            h = int.from_bytes(hashlib.sha256(f"{self.seed}|noise|{node}|{t}".encode()).digest()[:8], "little")
            v = base + (self.noise / np.sqrt(self.dim)) * np.random.default_rng(h).standard_normal(self.dim)
            out[i] = v / np.linalg.norm(v)
        return out.astype(np.float32)

    def embed(self, node: int, job: Embed, rng: random.Random | None = None) -> np.ndarray:
        return self.embed_texts(node, job.texts)

    # ---- vectorised sampling for the statistical experiments ----------------------------------

    def sample_errors(self, trials: int, n_nodes: int, gen: np.random.Generator) -> np.ndarray:
        """(trials, n_nodes) answer indices drawn from the same model in bulk (numpy), for the
        majority experiment where thousands of independent questions are needed."""
        rates = np.full(n_nodes, self.rates[0]) if self._uniform else np.asarray(self.rates[:n_nodes])
        shock = gen.random(trials) < self.eps_bar
        shock_w = 1 + gen.integers(0, self.candidates - 1, size=trials)
        copy = gen.random((trials, n_nodes)) < self.correlation
        indep_wrong = gen.random((trials, n_nodes)) < rates[None, :]
        indep_w = 1 + gen.integers(0, self.candidates - 1, size=(trials, n_nodes))
        own = np.where(indep_wrong, indep_w, 0)
        common = np.where(shock, shock_w, 0)[:, None]
        return np.where(copy, common, own)


# --------------------------------------------------------------------------------------------
# Replay of recorded real answers
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplayRecord:
    """One recorded answer of a real model (one line of the JSONL file)."""

    question: str
    answer: str
    model_id: str
    space_id: str
    embedding: tuple[float, ...]
    prompt_tokens: int
    completion_tokens: int
    llm_s: float
    sample: int = 0


def load_replay(path: str | Path) -> list[ReplayRecord]:
    """Read a replay file written by :func:`record`; every line is validated.

    Raises:
        AgentError: missing file, a line that is not JSON, a missing/mistyped field, embeddings
            of different dimensions or spaces, or more than :data:`REPLAY_RECORDS_MAX` lines.
    """
    p = Path(path)
    if not p.is_file():
        raise AgentError(f"replay file not found: {p} (record one with `p2pmoa sim record`)")
    out: list[ReplayRecord] = []
    with p.open("rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            if len(raw) > REPLAY_LINE_BYTES_MAX:
                raise AgentError(f"{p}:{lineno}: line longer than {REPLAY_LINE_BYTES_MAX} bytes")
            if not raw.strip():
                continue
            try:
                d = json.loads(raw)
                rec = ReplayRecord(
                    question=str(d["question"]), answer=str(d["answer"]), model_id=str(d["model_id"]),
                    space_id=str(d["space_id"]), embedding=tuple(float(x) for x in d["embedding"]),
                    prompt_tokens=int(d["prompt_tokens"]), completion_tokens=int(d["completion_tokens"]),
                    llm_s=float(d["llm_s"]), sample=int(d.get("sample", 0)))
            except (ValueError, KeyError, TypeError) as exc:
                raise AgentError(f"{p}:{lineno}: not a replay record ({exc})") from exc
            out.append(rec)
            if len(out) > REPLAY_RECORDS_MAX:
                raise AgentError(f"{p}: more than {REPLAY_RECORDS_MAX} records")
    if not out:
        raise AgentError(f"replay file {p} is empty")
    dims = {len(r.embedding) for r in out}
    spaces = {r.space_id for r in out}
    if len(dims) != 1 or len(spaces) != 1:
        raise AgentError(f"{p}: records mix embedding spaces {sorted(spaces)} / dims {sorted(dims)}")
    return out


class ReplayAgent:
    """Answers from recorded real-model outputs (see module doc).

    Node ``i`` asked question ``q`` replays record ``i mod R_q`` of the ``R_q`` records of ``q``
    (different nodes give different recorded samples, deterministically). Embedding a recorded
    answer returns its recorded vector; embedding any other text is an :class:`AgentError`
    because the real embedder is not available in the simulation.

    Args:
        records: from :func:`load_replay`.
    """

    def __init__(self, records: Sequence[ReplayRecord]) -> None:
        if not records:
            raise AgentError("a replay agent needs at least one record")
        self.by_question: dict[str, list[ReplayRecord]] = {}
        self.vectors: dict[str, np.ndarray] = {}
        for r in records:
            self.by_question.setdefault(r.question, []).append(r)
            v = np.asarray(r.embedding, dtype=np.float32)
            self.vectors.setdefault(r.answer, v / max(float(np.linalg.norm(v)), 1e-12))
        self.space_id = "replay:" + records[0].space_id
        self.dim = len(records[0].embedding)
        self.questions = sorted(self.by_question)

    @classmethod
    def from_file(cls, path: str | Path) -> "ReplayAgent":
        return cls(load_replay(path))

    def record_for(self, node: int, question: str) -> ReplayRecord:
        recs = self.by_question.get(question)
        if not recs:
            raise AgentError(f"no recorded answer for question {question[:80]!r}")
        return recs[node % len(recs)]

    def generate(self, node: int, job: Generate, rng: random.Random | None = None):
        r = self.record_for(node, question_of(job.messages))
        return _generation(text=r.answer, prompt_tokens=r.prompt_tokens,
                           completion_tokens=r.completion_tokens, llm_s=r.llm_s,
                           model_id="replay:" + r.model_id)

    def embed(self, node: int, job: Embed, rng: random.Random | None = None) -> np.ndarray:
        rows = []
        for t in job.texts:
            v = self.vectors.get(t)
            if v is None:
                raise AgentError(f"no recorded embedding for text {t[:80]!r}")
            rows.append(v)
        return np.stack(rows).astype(np.float32)


def record(questions: Iterable[str], models: Sequence[str], *, samples: int, out: str | Path,
           max_tokens: int = 48, temperature: float = 0.7, seed: int = 0,
           embed_model: str | None = None, progress: bool = True) -> int:
    """Record real answers and embeddings for :class:`ReplayAgent` (``p2pmoa sim record``).

    Runs every question through each model ``samples`` times (seeds ``seed .. seed+samples-1``)
    with ``p2pmoa.llm.LlamaGenerator`` and embeds every answer with the mesh's one embedder
    ``p2pmoa.embed.LlamaEmbedder`` -- the same classes the daemon uses. Returns records written.

    Raises:
        AgentError: no questions, or a model that cannot be loaded (message names the model).
    """
    from tqdm import tqdm

    from p2pmoa.embed import LlamaEmbedder
    from p2pmoa.llm import LlamaGenerator

    qs = [q.strip() for q in questions if q.strip()]
    if not qs:
        raise AgentError("no questions to record")
    if samples < 1:
        raise AgentError("samples must be >= 1")
    try:
        gens = [LlamaGenerator.from_name(m) for m in models]
        embedder = LlamaEmbedder(embed_model) if embed_model else LlamaEmbedder()
    except Exception as exc:  # model errors of p2pmoa.models carry the install hint
        raise AgentError(f"cannot load a model: {exc}") from exc
    n = 0
    out_p = Path(out)
    out_p.parent.mkdir(parents=True, exist_ok=True)
    total = len(qs) * len(gens) * samples
    with out_p.open("w") as fh, tqdm(total=total, disable=not progress, desc="record") as bar:
        for q in qs:
            for gen in gens:
                for s in range(samples):
                    g = gen.generate([ChatMessage("user", q)],
                                     GenParams(max_tokens=max_tokens, temperature=temperature, seed=seed + s))
                    vec = embedder.embed([g.text or " "])[0]
                    fh.write(json.dumps({
                        "question": q, "answer": g.text, "model_id": g.model_id,
                        "space_id": embedder.space_id, "embedding": [round(float(x), 6) for x in vec],
                        "prompt_tokens": g.prompt_tokens, "completion_tokens": g.completion_tokens,
                        "llm_s": round(g.llm_s, 6), "sample": s}, sort_keys=True) + "\n")
                    n += 1
                    bar.update(1)
    log.info("recorded %d answers to %s", n, out_p)
    return n
