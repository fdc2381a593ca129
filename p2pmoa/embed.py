"""Embedding backends and the rule that a mesh embeds in one space.

Consensus in embedding space (averaging, centrality judges, agreement moderators, PBFT validity
by similarity) only means something when every vector comes from the same model. So an embedder
names its space (``space_id`` = model name + file hash + pooling) and vectors travel with that
name; comparing vectors of different spaces raises :class:`EmbeddingSpaceMismatch`. Nodes may
*generate* with different models but they all *embed* with the mesh's one embedding model.

Mean-pooled embeddings of small causal LMs are anisotropic: unrelated sentences already sit at
cosine 0.6-0.7. So a space also fixes a *centre*: the mean embedding of a reference corpus that
ships with the package (``p2pmoa/data/embed_reference.json``); vectors are centred on it and
re-normalised. Every node derives the same centre from the same model and corpus, and the
corpus hash is part of ``space_id``. Measured on ``tests/data/paraphrases.json`` (16
paraphrase + 16 unrelated pairs), paraphrase-minus-unrelated mean cosine rose from 0.21 to 0.70
(SmolLM2-135M) and from 0.28 to 0.72 (Gemma3-270M); the default embedding model is therefore
centred Gemma3-270M (docs/embeddings.md; re-measure with ``python -m p2pmoa.embed --compare``).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from p2pmoa.models import file_sha256, resolve

log = logging.getLogger(__name__)

DEFAULT_EMBED_MODEL = "gemma3-270m"
REFERENCE_CORPUS = Path(__file__).resolve().parent / "data" / "embed_reference.json"
EMBED_TOKENS_MAX = 500
"""Texts are cut to this many tokens before embedding (bounds the cost of a peer's long answer)."""
EMBED_CTX = 512
"""llama.cpp context for embedding; the whole text goes through in one micro-batch (an odd size
such as 528 trips a ggml assertion in llama.cpp 0.3.36, so keep it a power of two)."""


class EmbeddingError(Exception):
    pass


class EmbeddingSpaceMismatch(EmbeddingError):
    """Two vectors (or a vector and an embedder) come from different embedding spaces."""


@dataclass(frozen=True)
class Embedding:
    """Vectors with the space they live in and what they cost.

    Args:
        vectors: (n, dim) float32, each row L2-normalised.
        space_id: the embedding space's name.
        tokens: input tokens the model read.
        llm_s: seconds spent inside the model.
    """

    vectors: np.ndarray
    space_id: str
    tokens: int = 0
    llm_s: float = 0.0


class Embedder(Protocol):
    space_id: str
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...

    def embed_with_stats(self, texts: Sequence[str]) -> Embedding: ...


def l2_normalise(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float32)
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return m / norms


def require_same_space(a: str, b: str) -> None:
    if a != b:
        raise EmbeddingSpaceMismatch(f"embedding spaces differ: {a!r} vs {b!r}")


class LlamaEmbedder:
    """Mean-pooled, centred sentence embeddings from a GGUF model through llama.cpp.

    Args:
        name_or_path: registry name or GGUF path of the embedding model.
        center: centre vectors on the reference corpus (default True; part of ``space_id``).
        n_threads: CPU threads for llama.cpp; default: all cores.
    """

    def __init__(self, name_or_path: str = DEFAULT_EMBED_MODEL, *, center: bool = True,
                 n_threads: int | None = None):
        import llama_cpp  # lazy

        from p2pmoa.llm import quiet_llama_logs

        quiet_llama_logs()
        path, spec = resolve(name_or_path)
        self.space_id = f"{spec.name}@{file_sha256(path)[:16]}/mean"
        self._lock = threading.Lock()
        threads = n_threads or os.cpu_count() or 1  # batch threads too: see LlamaGenerator
        self._llm = llama_cpp.Llama(
            model_path=str(path), embedding=True, pooling_type=llama_cpp.LLAMA_POOLING_TYPE_MEAN,
            n_ctx=EMBED_CTX, n_batch=EMBED_CTX, n_ubatch=EMBED_CTX,
            n_threads=threads, n_threads_batch=threads, verbose=False,
        )
        self.dim = int(self._llm.n_embd())
        self._center = None
        if center:
            corpus = REFERENCE_CORPUS.read_bytes()
            self.space_id += "/centred-" + hashlib.sha256(corpus).hexdigest()[:8]
            self._center = self._load_or_compute_center(json.loads(corpus))

    def _load_or_compute_center(self, corpus: list[str]) -> np.ndarray:
        """The reference corpus's mean vector, cached on disk per space (40 embeddings otherwise)."""
        from p2pmoa.models import _cache_dir

        path = _cache_dir() / "centres" / (hashlib.sha256(self.space_id.encode()).hexdigest()[:24] + ".npy")
        try:
            centre = np.load(path)
            if centre.shape == (self.dim,) and np.all(np.isfinite(centre)):
                return centre
        except (OSError, ValueError):
            pass
        centre = self._embed_raw(corpus)[0].mean(axis=0)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
        np.save(tmp, centre)
        os.replace(tmp, path)  # atomic: concurrent nodes never read half a file
        return centre

    def _clip(self, text: str) -> tuple[str, int]:
        toks = self._llm.tokenize(text.encode("utf-8"), add_bos=True)
        if len(toks) > EMBED_TOKENS_MAX:
            toks = toks[:EMBED_TOKENS_MAX]
            text = self._llm.detokenize(toks[1:]).decode("utf-8", errors="ignore")
        return text or " ", len(toks)

    def _embed_raw(self, texts: Sequence[str]) -> tuple[np.ndarray, int, float]:
        with self._lock:
            t0 = time.perf_counter()
            rows, tokens = [], 0
            for t in texts:  # one at a time: llama.cpp's batched embed needs n_seq_max >= n
                clipped, n = self._clip(t)
                tokens += n
                rows.append(self._llm.embed(clipped))
            llm_s = time.perf_counter() - t0
        return l2_normalise(np.array(rows, dtype=np.float32)), tokens, llm_s

    def embed_with_stats(self, texts: Sequence[str]) -> Embedding:
        if not texts:
            return Embedding(np.zeros((0, self.dim), np.float32), self.space_id)
        vecs, tokens, llm_s = self._embed_raw(texts)
        if self._center is not None:
            vecs = l2_normalise(vecs - self._center)
        return Embedding(vecs, self.space_id, tokens, llm_s)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self.embed_with_stats(texts).vectors


_WORD = re.compile(r"[a-z0-9]+")


class HashingEmbedder:
    """A deterministic stand-in embedder: signed feature hashing of words and word bigrams.

    NOT a learned model: texts that share words land close together, paraphrases with other
    words do not. It exists for fast tests and the simulator, and its space is named
    ``stand-in:hashing/<dim>`` so it can never be mixed with a real space.
    """

    def __init__(self, dim: int = 64):
        self.dim = dim
        self.space_id = f"stand-in:hashing/{dim}"

    def embed_with_stats(self, texts: Sequence[str]) -> Embedding:
        out = np.zeros((len(texts), self.dim), np.float32)
        for i, t in enumerate(texts):
            words = _WORD.findall(t.lower())
            feats = words + [a + " " + b for a, b in zip(words, words[1:])]
            for f in feats:
                h = int.from_bytes(hashlib.blake2b(f.encode(), digest_size=8).digest(), "little")
                out[i, h % self.dim] += 1.0 if (h >> 32) & 1 else -1.0
        return Embedding(l2_normalise(out), self.space_id, sum(len(t.split()) for t in texts), 0.0)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self.embed_with_stats(texts).vectors


def separation(embedder, pairs: Sequence[dict]) -> dict:
    """Mean cosine of paraphrase pairs minus mean cosine of unrelated pairs.

    Args:
        pairs: dicts with ``a``, ``b`` and ``label`` in {"paraphrase", "unrelated"}.
    """
    sims = {"paraphrase": [], "unrelated": []}
    for p in pairs:
        v = embedder.embed([p["a"], p["b"]])
        sims[p["label"]].append(float(v[0] @ v[1]))
    para, unrel = float(np.mean(sims["paraphrase"])), float(np.mean(sims["unrelated"]))
    return {"paraphrase_cos": round(para, 4), "unrelated_cos": round(unrel, 4),
            "separation": round(para - unrel, 4), "pairs": len(pairs)}


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m p2pmoa.embed",
                                 description="Compare candidate embedding models on paraphrase pairs.")
    ap.add_argument("--compare", action="store_true", help="measure paraphrase separation of each candidate")
    ap.add_argument("--warm", action="store_true",
                    help="load the default embedder once so its centring vector is cached (make setup does this)")
    ap.add_argument("--pairs", default=str(Path(__file__).resolve().parent.parent / "tests" / "data" / "paraphrases.json"))
    args = ap.parse_args(argv)
    if args.warm:
        e = LlamaEmbedder()
        print(f"embedding space {e.space_id} ready (dim {e.dim})")
        return 0
    if not args.compare:
        ap.print_help()
        return 2
    pairs = json.loads(Path(args.pairs).read_text())
    result = {"stand-in:hashing/64 (not a model)": separation(HashingEmbedder(), pairs)}
    for name in ("smollm2-135m", "gemma3-270m"):
        result[name + " raw"] = separation(LlamaEmbedder(name, center=False), pairs)
        result[name + " centred"] = separation(LlamaEmbedder(name), pairs)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
