"""Benchmark: graded accuracy of every method against the best single model.

Question set: ``tests/data/graded_questions.json`` (315 questions with gold answers, six kinds:
arithmetic, capitals, one-word facts, units, yes/no, one-step reasoning; built by
``tests/data/make_graded_questions.py``). Both packaged models answer (SmolLM2-135M-Instruct,
chat; Gemma-3-270M, base model prompted as completion).

Methods (each question is asked through the project's own code paths):

- ``single_smollm2`` / ``single_gemma``: one call, the node prompt (role + question).
- ``moa`` / ``smoa`` / ``cascade``: :func:`p2pmoa.moa.run_local`, 4 proposers alternating
  the two models, 2 layers, k=2, aggregator SmolLM2.
- ``pbft`` / ``vote`` / ``score`` / ``averaging`` / ``aggregate``: a real 4-node in-process mesh
  (:class:`p2pmoa.testing.InMemoryMesh`, the production :class:`~p2pmoa.protocol.PeerProtocol`,
  Ed25519 identities): nodes 0, 2 run SmolLM2 and nodes 1, 3 Gemma; node 0 is the originator;
  the mesh embeds in the default space (centred Gemma).
  ``score`` is leaderless scoring (trust-weighted coordinate median of the members' scores).
  A method not run is reported as null.

Node 0 uses role 0 with SmolLM2 and node 1 role 0 with Gemma, so ``single_smollm2`` and
``single_gemma`` are exactly those nodes' proposals, and ``oracle`` = some proposal of the mesh
is right. Generations and embeddings are memoised per (model, prompt, params) / text, so a call
that several methods make identically is run once (their cost is still counted per method).

Grading: the canonical answer (:func:`p2pmoa.agreement.canonical_answer`) must state the gold:
for a number gold, the answer's main number equals it; for yes/no, the leading yes/no matches;
otherwise the gold phrase occurs as whole words. ``gap_recovered`` = (method − best_single) /
(oracle − best_single). ``wins``/``losses`` count questions a method got right and the best
single model wrong, and the reverse.

Prints progress on stderr and ONE JSON object as the last line on stdout.

Usage: python bench/quality.py [--limit N] [--max-tokens T] [--methods a,b,...]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from p2pmoa import agreement as ag  # noqa: E402
from p2pmoa import moa  # noqa: E402
from p2pmoa.effects import ChatMessage, GenParams  # noqa: E402

QUESTIONS = ROOT / "tests" / "data" / "graded_questions.json"
MODELS = ("smollm2-135m", "gemma3-270m")
MESH_METHODS = ("pbft", "vote", "score", "averaging", "aggregate")
ALL_METHODS = ("single_smollm2", "single_gemma", "moa", "smoa", "cascade", "vote", "score", "pbft",
               "averaging", "aggregate")
ROLE = moa.DEFAULT_ROLES[0]


def grade(answer: str, gold: list[str], question: str) -> bool:
    """Is ``answer`` right? See the module docstring; independent of the agreement rule."""
    c = ag.normalise(ag.canonical_answer(answer))
    if not c:
        return False
    for g in gold:
        ng = ag.normalise(g)
        if re.fullmatch(r"-?\d+(?:\.\d+)?", ng):
            q = ag.main_quantity(c, ag.normalise(question))
            if q is not None and abs(q.value - float(ng)) < 1e-9:
                return True
        elif ng in ("yes", "no"):
            if ag.polarity(c) == (ng == "yes"):
                return True
        elif re.search(rf"(?<![\w]){re.escape(ng)}(?![\w])", c):
            return True
    return False


class CachedGenerator:
    """Memoises a real generator by (messages, params): identical calls run once."""

    def __init__(self, gen):
        self.gen = gen
        self.model_id = gen.model_id
        self.cache: dict = {}

    def generate(self, messages, params):
        key = (tuple((m.role, m.content) for m in messages), params)
        if key not in self.cache:
            self.cache[key] = self.gen.generate(messages, params)
        return self.cache[key]


class CachedEmbedder:
    def __init__(self, emb):
        self.emb = emb
        self.space_id = emb.space_id
        self.dim = emb.dim
        self.cache: dict = {}

    def embed(self, texts):
        import numpy as np

        missing = [t for t in dict.fromkeys(texts) if t not in self.cache]
        if missing:
            for t, v in zip(missing, self.emb.embed(missing)):
                self.cache[t] = v
        return np.array([self.cache[t] for t in texts], dtype=np.float32)

    def embed_with_stats(self, texts):
        from p2pmoa.embed import Embedding

        return Embedding(self.embed(list(texts)), self.space_id)


def run_mesh(question: str, method: str, gens: list, embedder, max_tokens: int, qi: int) -> tuple[str, dict]:
    """One query through a 4-node in-process mesh of real models; returns (answer, trace)."""
    from p2pmoa.identity import Ed25519Identity, Ed25519Verifier
    from p2pmoa.protocol import PeerProtocol, ProtocolConfig
    from p2pmoa.testing import InMemoryMesh

    mesh = InMemoryMesh(embedder, seed=qi)
    ids = []
    roles = [ROLE, ROLE, moa.DEFAULT_ROLES[2], moa.DEFAULT_ROLES[2]]
    for i, g in enumerate(gens):
        signer = Ed25519Identity.from_seed(hashlib.sha256(f"quality:{i}".encode()).digest())
        cfg = ProtocolConfig(role=roles[i], model_id=g.model_id, space_id=embedder.space_id, method=method,
                             proposers_max=len(gens), collect_timeout_s=3600.0, round_timeout_s=3600.0,
                             view_timeout_s=600.0, gen_params=GenParams(max_tokens=max_tokens, temperature=0.7,
                                                                        seed=qi))
        proto = PeerProtocol(signer, Ed25519Verifier(), cfg, rng=random.Random(qi * 31 + i))
        ids.append(mesh.add(proto, g))
    mesh.ask(ids[0], f"q{qi}", question)
    mesh.run(until_s=10 * 3600.0)
    out = mesh.delivered.get((ids[0], f"q{qi}"))
    if out is None:
        return "", {"failed": [f.reason for _, f in mesh.failed]}
    return out.answer, out.trace


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=0,
                    help="use N questions, taken round-robin over the kinds (0: all 315)")
    ap.add_argument("--max-tokens", type=int, default=64, help="completion budget per call (tokens)")
    ap.add_argument("--methods", default=",".join(m for m in ALL_METHODS if m != "aggregate"),
                    help="comma-separated methods (aggregate: the mesh's synthesis, off by default)")
    ap.add_argument("--from-rows", action="store_true",
                    help="no model calls: summarise only the questions already in --rows (an interrupted run)")
    ap.add_argument("--rows", default="", help="JSON-lines file of per-question results: appended as "
                    "questions finish, and questions already in it are not asked again (resume)")
    args = ap.parse_args()
    qs = json.loads(QUESTIONS.read_text())
    if args.limit and args.limit < len(qs):
        # round-robin over the kinds, spread inside each kind: a short run sees every kind
        kinds: dict[str, list[dict]] = {}
        for q in qs:
            kinds.setdefault(q["kind"], []).append(q)
        per_kind = -(-args.limit // len(kinds))
        spread = {k: [v[int(i * len(v) / per_kind)] for i in range(min(per_kind, len(v)))] for k, v in kinds.items()}
        qs = [spread[k][i] for i in range(per_kind) for k in kinds if i < len(spread[k])][: args.limit]
    methods = [m for m in args.methods.split(",") if m]

    t0 = time.perf_counter()
    if args.from_rows:
        if not args.rows or not Path(args.rows).exists():
            print("bench/quality.py: --from-rows needs an existing --rows file", file=sys.stderr)
            return 2
        have = {json.loads(x)["id"] for x in Path(args.rows).read_text().splitlines() if x.strip()}
        qs = [q for q in qs if q["id"] in have]
        real, embedder, mesh_gens, base_cfg = {}, None, [], None
    else:
        from p2pmoa.embed import LlamaEmbedder
        from p2pmoa.llm import LlamaGenerator

        real = {m: CachedGenerator(LlamaGenerator.from_name(m)) for m in MODELS}
        for g in real.values():  # page the weights in before timing anything
            g.gen.generate([ChatMessage("user", "warm up")], GenParams(max_tokens=2))
        embedder = CachedEmbedder(LlamaEmbedder())
        mesh_gens = [real["smollm2-135m"], real["gemma3-270m"], real["smollm2-135m"], real["gemma3-270m"]]
        proposers = tuple(moa.Proposer(model=mesh_gens[i].gen.spec.name, role=r, temperature=0.7)
                          for i, r in enumerate([ROLE, ROLE, moa.DEFAULT_ROLES[2], moa.DEFAULT_ROLES[2]]))
        base_cfg = moa.MoAConfig(layers=2, proposers=proposers, k=2, aggregator_model="smollm2-135m",
                                 max_tokens=args.max_tokens)

    def get(model):
        return real[model or "smollm2-135m"]

    per: dict[str, list[dict]] = {m: [] for m in methods}
    oracle = []
    done_rows: dict[str, dict] = {}
    if args.rows and Path(args.rows).exists():
        for line in Path(args.rows).read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                done_rows[row["id"]] = row
    for qi, q in enumerate(qs):
        question = q["question"]
        if q["id"] in done_rows and all(m in done_rows[q["id"]]["methods"] for m in methods):
            row = done_rows[q["id"]]
            oracle.append(row["oracle"])
            for m in methods:
                per[m].append(row["methods"][m])
            continue
        params = GenParams(max_tokens=args.max_tokens, temperature=0.7, seed=qi)
        # the four mesh proposals, exactly as the mesh nodes generate them (cached for the mesh)
        props = []
        for i, g in enumerate(mesh_gens):
            role = ROLE if i < 2 else moa.DEFAULT_ROLES[2]
            props.append(g.generate((ChatMessage("system", role), ChatMessage("user", question)), params))
        oracle.append(any(grade(p.text, q["gold"], question) for p in props))
        for m in methods:
            if m == "single_smollm2" or m == "single_gemma":
                r = props[0 if m == "single_smollm2" else 1]
                ans, tokens, calls = r.text, r.prompt_tokens + r.completion_tokens, 1
            elif m in ("moa", "smoa", "cascade"):
                trace = moa.run_local(question, moa.with_mode(base_cfg, m), get, embedder)
                ans, tokens, calls = trace["answer"], trace["totals"]["tokens"], trace["totals"]["calls"]
            elif m in MESH_METHODS:
                ans, trace = run_mesh(question, m, mesh_gens, embedder, args.max_tokens, qi)
                tokens = sum(p.prompt_tokens + p.completion_tokens for p in props)
                calls = len(props) + (1 if m == "aggregate" else 0)
                # (for aggregate, the synthesis call's tokens are not in the mesh trace: not counted)
            else:
                continue
            per[m].append({"id": q["id"], "kind": q["kind"], "right": grade(ans, q["gold"], question),
                           "tokens": tokens, "calls": calls, "answer": ans[:120]})
        if args.rows:
            with open(args.rows, "a") as fh:
                fh.write(json.dumps({"id": q["id"], "oracle": oracle[-1],
                                     "methods": {m: per[m][-1] for m in methods}}) + "\n")
        done = {m: sum(x["right"] for x in v) for m, v in per.items()}
        print(f"[{qi + 1}/{len(qs)}] {time.perf_counter() - t0:.0f}s oracle {sum(oracle)} {done}",
              file=sys.stderr, flush=True)

    n = len(qs)
    res: dict = {"questions": n, "max_tokens": args.max_tokens,
                 "models": [real[m].model_id for m in MODELS] if real else list(MODELS),
                 "embedder": embedder.space_id if embedder else "(from rows)"}
    for m in ALL_METHODS:
        v = per.get(m)
        if not v:
            res[m] = None
            continue
        res[m] = {"accuracy": round(sum(x["right"] for x in v) / n, 4),
                  "tokens_per_q": round(sum(x["tokens"] for x in v) / n, 1),
                  "calls_per_q": round(sum(x["calls"] for x in v) / n, 3)}
    singles = [m for m in ("single_smollm2", "single_gemma") if res.get(m)]
    best = max(singles, key=lambda m: res[m]["accuracy"]) if singles else None
    res["oracle"] = round(sum(oracle) / n, 4)
    res["best_single"] = res[best]["accuracy"] if best else None
    res["best_single_method"] = best
    gap = res["oracle"] - (res["best_single"] or 0)
    res["gap_recovered"] = {}
    res["wins_losses_vs_best_single"] = {}
    for m in methods:
        if m in singles or not per.get(m) or best is None:
            continue
        res["gap_recovered"][m] = round((res[m]["accuracy"] - res["best_single"]) / gap, 4) if gap > 0 else None
        wins = sum(x["right"] and not y["right"] for x, y in zip(per[m], per[best]))
        losses = sum(y["right"] and not x["right"] for x, y in zip(per[m], per[best]))
        res["wins_losses_vs_best_single"][m] = {"wins": wins, "losses": losses}
    cons = [m for m in res["gap_recovered"] if m not in ("moa", "smoa", "cascade")]
    if cons:
        top = max(cons, key=lambda m: res[m]["accuracy"])
        res["best_consensus"] = top
        res["best_consensus_minus_best_single"] = round(res[top]["accuracy"] - (res["best_single"] or 0), 4)
    if res.get("moa") and res.get("smoa"):
        res["smoa_token_ratio"] = round(res["smoa"]["tokens_per_q"] / res["moa"]["tokens_per_q"], 4)
    res["per_kind"] = {}
    for m in methods:
        if per.get(m):
            kinds: dict = {}
            for x in per[m]:
                k = kinds.setdefault(x["kind"], [0, 0])
                k[0] += x["right"]
                k[1] += 1
            res["per_kind"][m] = {k: f"{a}/{b}" for k, (a, b) in kinds.items()}
    res["wall_s"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
