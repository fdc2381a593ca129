"""Benchmark: single model vs MoA vs Sparse MoA on the shipped question set, in one process.

Default model (smollm2-135m), l=2 layers, n=4 proposers, k=2; SMoA with the default judge
(largest cluster of equivalent answers) and moderator (stop when the kept answers are
equivalent, p2pmoa.agreement), which need no embedding. Token counts are honest totals:
prompt + completion tokens of every generation call (and embedding tokens, if a judge used any).
``smoa_stopped_early`` counts questions where the moderator stopped before the last layer;
``smoa_moderator_layers`` counts every SMoA layer by (stop / continue / last layer) x (kept answers
agreeing / disagreeing): the moderator must stop only on agreeing layers. Accuracy is measured by
bench/quality.py, not here.

Prints a progress bar on stderr and ONE JSON object as the last line on stdout:
{"single": {...}, "moa": {...}, "smoa": {...}, "smoa_token_ratio": ..., "smoa_call_ratio": ...,
 "overhead_ratio": ...}. Targets: smoa_token_ratio <= 0.6, overhead_ratio <= 0.05.

Usage: python bench/moa.py [--questions N] [--max-tokens T]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # before bench/ (the script's own directory): bench/consensus.py is not the package

from p2pmoa import moa  # noqa: E402
from p2pmoa.llm import LlamaGenerator  # noqa: E402
from p2pmoa.models import DEFAULT_MODEL  # noqa: E402

QUESTIONS = ROOT / "p2pmoa" / "data" / "questions.json"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--questions", type=int, default=0, help="use only the first N questions (0: all)")
    ap.add_argument("--max-tokens", type=int, default=96, help="completion budget per call")
    ap.add_argument("--threads", type=int, default=1, help="llama.cpp threads (default 1: on a loaded "
                    "machine more threads spin against each other, measured 10-40x slower)")
    args = ap.parse_args()
    questions = json.loads(QUESTIONS.read_text())
    if args.questions:
        questions = questions[: args.questions]
    gen = LlamaGenerator.from_name(DEFAULT_MODEL, n_threads=args.threads)
    emb = None  # the agreement judge and moderator need no embedder
    gen.generate([moa.ChatMessage("user", "warm up")], moa.GenParams(max_tokens=4))  # page the weights in
    base = moa.MoAConfig(layers=2, proposers=moa.make_proposers(4, [None], moa.DEFAULT_ROLES), k=2,
                         max_tokens=args.max_tokens)
    modes = {m: moa.with_mode(base, m) for m in ("single", "moa", "smoa")}
    agg = {m: {"tokens": 0, "calls": 0, "embed_calls": 0, "wall_s": 0.0, "llm_s": 0.0} for m in modes}
    stopped = 0
    # every SMoA layer the moderator saw (last layers included): did the kept answers agree, did it stop?
    mod = {"stop_agreeing": 0, "stop_disagreeing": 0, "continue_agreeing": 0, "continue_disagreeing": 0,
           "last_layer_agreeing": 0, "last_layer_disagreeing": 0}
    bar = tqdm(total=len(questions) * len(modes), desc="bench/moa", unit="run", file=sys.stderr)
    for q in questions:
        for m, cfg in modes.items():
            t0 = time.perf_counter()
            trace = moa.run_local(q, cfg, {None: gen}, emb)
            wall = time.perf_counter() - t0
            t = trace["totals"]
            a = agg[m]
            a["tokens"] += t["tokens"]
            a["calls"] += t["calls"]
            a["embed_calls"] += t["embed_calls"]
            a["wall_s"] += wall
            a["llm_s"] += t["llm_s"]
            if m == "smoa":
                stopped += bool(trace.get("stopped_early"))
                for i, layer in enumerate(trace["layers"]):
                    md = layer.get("moderator") or {}
                    agree = "agreeing" if md.get("agree") else "disagreeing"
                    if i == len(trace["layers"]) - 1 and not md.get("stop"):
                        mod[f"last_layer_{agree}"] += 1
                    else:
                        mod[f"{'stop' if md.get('stop') else 'continue'}_{agree}"] += 1
            bar.update()
    bar.close()
    for a in agg.values():
        a["wall_s"] = round(a["wall_s"], 3)
        a["llm_s"] = round(a["llm_s"], 3)
    wall = sum(a["wall_s"] for a in agg.values())
    llm = sum(a["llm_s"] for a in agg.values())
    out = {
        **agg,
        "questions": len(questions), "model": gen.model_id, "embedder": None,
        "layers": 2, "proposers": 4, "k": 2, "max_tokens": args.max_tokens,
        "smoa_stopped_early": stopped,
        "smoa_moderator_layers": mod,
        "threads": args.threads,
        "smoa_token_ratio": round(agg["smoa"]["tokens"] / agg["moa"]["tokens"], 4),
        "smoa_call_ratio": round((agg["smoa"]["calls"] + agg["smoa"]["embed_calls"]) / agg["moa"]["calls"], 4),
        "smoa_generation_call_ratio": round(agg["smoa"]["calls"] / agg["moa"]["calls"], 4),
        "overhead_ratio": round((wall - llm) / wall, 4),
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
