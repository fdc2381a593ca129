"""Do memory notes in the prompt make the real model answer better? (issue 14: notes default)

With the real generator (SmolLM2-135M through p2pmoa/llm.py, greedy decoding), answer questions
of the shipped workload ``tests/data/memory_workload.json`` twice, with the prompt the node
builds (:func:`p2pmoa.memory.build_messages`) WITH the memory notes and WITHOUT them, and grade
each answer against the workload's reference answer (correct = every content word of the
reference, number words as digits, appears in the answer).

Two sets of questions, both with a note in memory:

* ``related``: paraphrase queries whose original (same question, same answer) is in memory:
  the note holds the answer (what notes are FOR; the upper bound of their use).
* ``as_retrieved``: the notes the production retrieval (default ``MemoryConfig``, recorded real
  embeddings ``tests/data/memory_workload_vectors.npz``) actually puts into the prompt of
  queries it does not answer from memory, replaying the workload in order.

Prints one JSON object as the last line: accuracy with and without notes per set, prompt
tokens with and without notes. Usage: python bench/memory_notes.py [--n 20] [--max-tokens 48]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
sys.path.insert(0, os.path.dirname(_HERE))

import numpy as np  # noqa: E402

from p2pmoa.effects import GenParams  # noqa: E402
from p2pmoa.memory import (PRIVATE, SHARED, Memory, MemoryConfig, MemoryEntry,  # noqa: E402
                           Retrieval, build_messages)

ROOT = Path(__file__).resolve().parent.parent
WORKLOAD = ROOT / "tests" / "data" / "memory_workload.json"
VECTORS = ROOT / "tests" / "data" / "memory_workload_vectors.npz"
ROLE = "a helpful, concise assistant"
_NUM = {w: str(i) for i, w in enumerate("zero one two three four five six seven eight nine ten "
                                       "eleven twelve".split())}
_STOP = frozenset("a an the of and in on at to by is are was it its".split())


def _words(text: str) -> list[str]:
    return [_NUM.get(w, w) for w in re.findall(r"[a-z0-9]+(?:\.[0-9]+)?", text.lower())]


def correct(answer: str, gold: str) -> bool:
    want = [w for w in _words(gold) if w not in _STOP]
    have = set(_words(answer))
    return bool(want) and all(w in have for w in want)


def sets(work, V, n: int):
    by_id = {q["id"]: q for q in work}
    related = []
    for q in work:
        if q["kind"] == "paraphrase" and len(related) < n:
            o = by_id[q["of"]]
            e = MemoryEntry("o/" + o["id"], SHARED, o["text"], o["answer"], V[0], 0.0)
            related.append((q, Retrieval(shared=((e, 1.0),))))
    retrieved = []
    mem = Memory(MemoryConfig())
    for i, q in enumerate(work):
        r = mem.retrieve(q["text"], V[i])
        if r.hit is not None:
            continue
        if not r.empty and len(retrieved) < n:
            retrieved.append((q, r))
        now = float(i)
        mem.remember_private(MemoryEntry(q["id"], PRIVATE, q["text"], q["answer"], V[i], now), now)
        share, _, _ = mem.should_share(q["text"], V[i])
        if share:
            mem.add_shared(MemoryEntry("o/" + q["id"], SHARED, q["text"], q["answer"], V[i], now), now)
    return {"related": related, "as_retrieved": retrieved}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20, help="questions per set (default 20)")
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    from p2pmoa.llm import LlamaGenerator
    # one thread: llama.cpp's worker threads spin while they wait for each other, which on a
    # busy shared machine burns CPU without progress
    gen = LlamaGenerator.from_name(args.model, n_threads=args.threads)
    work = json.loads(WORKLOAD.read_text())["queries"]
    V = np.load(VECTORS)["vectors"].astype(np.float32)
    params = GenParams(max_tokens=args.max_tokens, temperature=0.0, seed=0)
    out: dict = {"model": gen.model_id, "max_tokens": args.max_tokens}
    rows = []
    t0 = time.perf_counter()
    for name, items in sets(work, V, args.n).items():
        acc = {"with": 0, "without": 0}
        ptok = {"with": 0, "without": 0}
        for q, r in items:
            for cond, ret in (("with", r), ("without", None)):
                g = gen.generate(build_messages(ROLE, q["text"], ret), params)
                ok = correct(g.text, q["answer"])
                acc[cond] += ok
                ptok[cond] += g.prompt_tokens
                rows.append({"set": name, "cond": cond, "q": q["text"], "gold": q["answer"],
                             "note": [e.query for e, _ in (*r.private, *r.shared)] if ret else [],
                             "answer": g.text, "correct": ok})
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
        k = max(1, len(items))
        out[name] = {"questions": len(items), "accuracy_with_notes": round(acc["with"] / k, 3),
                     "accuracy_without_notes": round(acc["without"] / k, 3),
                     "prompt_tokens_with": ptok["with"], "prompt_tokens_without": ptok["without"]}
    out["seconds"] = round(time.perf_counter() - t0, 1)
    out["load_avg_1m"] = os.getloadavg()[0]
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
