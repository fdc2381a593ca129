"""Benchmark: do the packaged models return just their answer?

Asks N graded questions (tests/data/graded_questions.json, spread over the kinds) as a mesh
node does (system = a role from ``moa.DEFAULT_ROLES``, cycling; user = the question) and counts
per model: replies that echo ``Question:``/``Answer:`` scaffolding, leak role text, run to the
token limit, span several lines, and are right (bench/quality.py's grader).

``--legacy-prompt`` renders the base model's prompt and stop sequences as before issue 9
(role preamble, ``Question: …`` / ``Answer:``, stop only at ``Question:`` or three newlines,
no cleaning) to measure the "before".

Prints ONE JSON object as the last line on stdout.

Usage: python bench/clean.py [--n 40] [--max-tokens 96] [--models gemma3-270m,smollm2-135m]
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.quality import grade  # noqa: E402
from p2pmoa import llm  # noqa: E402
from p2pmoa.effects import ChatMessage, GenParams  # noqa: E402
from p2pmoa.moa import DEFAULT_ROLES  # noqa: E402

SCAFFOLD = re.compile(r"(?im)^\s*(?:question|answer)\s*:")
ROLE_TEXT = re.compile(r"(?i)you are|domain expert|patient teacher|fact-checker|precise scientist|"
                       r"practical engineer|encyclopedia editor")


def legacy_generate(g, messages, params):
    """The pre-issue-9 completion path of a base model (for the 'before' figures)."""
    parts = []
    for m in messages:
        parts.append(m.content.strip() if m.role == "system" else f"Question: {m.content.strip()}")
    prompt = "\n\n".join(parts) + "\nAnswer:"
    out = g._llm.create_completion(prompt=prompt, max_tokens=params.max_tokens, temperature=params.temperature,
                                   top_p=params.top_p, seed=params.seed,
                                   stop=["\nQuestion:", "\n\n\n", "<end_of_turn>", "<eos>"])
    usage = out.get("usage") or {}
    return (out["choices"][0]["text"] or "").strip(), int(usage.get("completion_tokens", 0))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--max-tokens", type=int, default=96)
    ap.add_argument("--models", default="gemma3-270m,smollm2-135m")
    ap.add_argument("--legacy-prompt", action="store_true")
    args = ap.parse_args()
    qs = json.loads((ROOT / "tests" / "data" / "graded_questions.json").read_text())
    step = max(1, len(qs) // args.n)
    qs = qs[::step][: args.n]
    out: dict = {"questions": len(qs), "max_tokens": args.max_tokens, "legacy_prompt": args.legacy_prompt}
    for name in args.models.split(","):
        g = llm.LlamaGenerator.from_name(name)
        st = {"scaffold": 0, "role_leak": 0, "hit_token_limit": 0, "multiline": 0, "right": 0,
              "completion_tokens": 0}
        t0 = time.perf_counter()
        for i, q in enumerate(qs):
            msgs = [ChatMessage("system", DEFAULT_ROLES[i % len(DEFAULT_ROLES)]), ChatMessage("user", q["question"])]
            p = GenParams(max_tokens=args.max_tokens, temperature=0.7, seed=i)
            if args.legacy_prompt and not g.chat:
                text, ct = legacy_generate(g, msgs, p)
            else:
                r = g.generate(msgs, p)
                text, ct = r.text, r.completion_tokens
            st["scaffold"] += bool(SCAFFOLD.search(text))
            st["role_leak"] += bool(ROLE_TEXT.search(text))
            st["hit_token_limit"] += ct >= args.max_tokens
            st["multiline"] += "\n" in text
            st["right"] += grade(text, q["gold"], q["question"])
            st["completion_tokens"] += ct
        st["wall_s"] = round(time.perf_counter() - t0, 1)
        out[name] = st
        print(name, st, file=sys.stderr)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
