"""Benchmark: graded accuracy of every method against the best single model.

Question set: ``tests/data/graded_questions.json`` (315 questions with gold answers, six kinds:
arithmetic, capitals, one-word facts, units, yes/no, one-step reasoning; built by
``tests/data/make_graded_questions.py``). Both packaged models answer (SmolLM2-135M-Instruct,
chat; Gemma-3-270M, base model prompted as completion).

Methods (each question is asked through the project's own code paths):

- ``pbft`` / ``vote`` / ``score`` / ``averaging`` / ``aggregate``: a real 4-node in-process mesh
  (:class:`p2pmoa.testing.InMemoryMesh`, the production :class:`~p2pmoa.protocol.PeerProtocol`,
  Ed25519 identities): nodes 0, 2 run SmolLM2 and nodes 1, 3 Gemma; node 0 is the originator;
  the mesh embeds in the default space (centred Gemma). ``score`` is leaderless scoring
  (trust-weighted coordinate median of the members' scores). Cost: every generation call any
  node makes for the query.
- ``single_smollm2`` / ``single_gemma``: exactly node 0's / node 1's proposal (one call each);
  ``oracle``: some proposal of the mesh is right.
- ``moa`` / ``smoa`` / ``cascade``: :func:`p2pmoa.moa.run_local`, the mesh's 4 (model, role)
  proposers, each sampling with the seed its mesh node samples with (so their first layer is
  the mesh's four proposals), 2 layers, k=2, aggregator SmolLM2. ``cascade`` is ``--mode
  cascade`` (first 2 proposers, then all 4).
- ``mesh_cascade``: :mod:`p2pmoa.cascade` on the mesh: a ``vote`` query to the cheap tier
  (originator + one peer, nodes 0 and 1), and if their answers do not agree an ordinary
  ``vote`` query to all 4 nodes; cost = every call of both queries. Output per exit level.
  A method not run is reported as null.

Model calls: one llama.cpp thread per model (``--threads``; more threads spin against each
other on a loaded machine). A call identical in model, messages and sampling parameters (seed
included) is run once and shared between the methods that make it; each method is still charged
every call it makes (``model_calls`` in the output says how many were shared). Per-question seeds
derive from the question id, so a shard or a resumed run asks exactly the same calls.

Grading: the canonical answer (:func:`p2pmoa.agreement.canonical_answer`) must state the gold:
for a number gold, the answer's main number equals it; for yes/no, the leading yes/no matches;
otherwise the gold phrase occurs as whole words. ``gap_recovered`` = (method − best_single) /
(oracle − best_single). ``wins``/``losses`` count questions a method got right and the best
single model wrong, and the reverse.

Prints progress on stderr and ONE JSON object as the last line on stdout.

Usage: python bench/quality.py [--questions F] [--limit N] [--max-tokens T] [--methods a,b,...] [--rows F]
       [--shard i/n] [--threads T] [--from-rows]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from p2pmoa import agreement as ag  # noqa: E402
from p2pmoa import cascade  # noqa: E402
from p2pmoa import moa  # noqa: E402
from p2pmoa.effects import ChatMessage, GenParams  # noqa: E402

QUESTIONS = ROOT / "tests" / "data" / "graded_questions.json"
MODELS = ("smollm2-135m", "gemma3-270m")
MESH_METHODS = ("pbft", "vote", "score", "averaging", "aggregate")
ALL_METHODS = ("single_smollm2", "single_gemma", "moa", "smoa", "cascade", "mesh_cascade", "vote", "score",
               "pbft", "averaging", "aggregate")
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
    """Memoises a real generator by (messages, params incl. seed): a call that several methods
    make identically (same model, prompt, sampling parameters and seed) runs once. Every
    method's cost still counts each call it makes (see :class:`Meter`)."""

    def __init__(self, gen):
        self.gen = gen
        self.model_id = gen.model_id
        self.cache: dict = {}
        self.hits = self.misses = 0
        self.model_s = 0.0

    def generate(self, messages, params):
        key = (tuple((m.role, m.content) for m in messages), params)
        if key in self.cache:
            self.hits += 1
        else:
            self.misses += 1
            t = time.perf_counter()
            self.cache[key] = self.gen.generate(messages, params)
            self.model_s += time.perf_counter() - t
        return self.cache[key]

    def rate(self, question, answers):
        key = ("rate", question, tuple(answers))
        if key in self.cache:
            self.hits += 1
        else:
            self.misses += 1
            t = time.perf_counter()
            self.cache[key] = self.gen.rate(question, list(answers))
            self.model_s += time.perf_counter() - t
        return self.cache[key]


class Meter:
    """What one method run asked one generator for: calls and tokens (prompt + completion),
    counted whether or not the cache answered, and the first call's (params, result)."""

    def __init__(self, gen):
        self.gen = gen
        self.model_id = gen.model_id
        self.calls = self.tokens = 0
        self.first = None

    def generate(self, messages, params):
        r = self.gen.generate(messages, params)
        self.calls += 1
        self.tokens += r.prompt_tokens + r.completion_tokens
        if self.first is None:
            self.first = (params, r)
        return r

    def rate(self, question, answers):
        """A member's rating of a round's answers: one call (prompt evaluation only, no
        generation), charged the tokens it evaluated."""
        r = self.gen.rate(question, answers)
        self.calls += 1
        self.tokens += int(getattr(r, "tokens", 0))
        return r


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


NODE_ROLES = (ROLE, ROLE, moa.DEFAULT_ROLES[2], moa.DEFAULT_ROLES[2])


def run_mesh(question: str, method: str, gens: list, embedder, max_tokens: int, qi: int,
             nodes: tuple[int, ...] = (0, 1, 2, 3)) -> tuple[str, dict, list[Meter]]:
    """One query through an in-process mesh of real models (``nodes``: which of the 4 bench
    nodes take part; node 0 is the originator); returns (answer, trace, per-node meters)."""
    from p2pmoa.identity import Ed25519Identity, Ed25519Verifier
    from p2pmoa.protocol import PeerProtocol, ProtocolConfig
    from p2pmoa.testing import InMemoryMesh

    mesh = InMemoryMesh(embedder, seed=qi)
    ids, meters = [], []
    for i in nodes:
        g = Meter(gens[i])
        signer = Ed25519Identity.from_seed(hashlib.sha256(f"quality:{i}".encode()).digest())
        cfg = ProtocolConfig(role=NODE_ROLES[i], model_id=g.model_id, space_id=embedder.space_id, method=method,
                             proposers_max=len(nodes), collect_timeout_s=3600.0, round_timeout_s=3600.0,
                             view_timeout_s=600.0, rate_candidates=True, gen_params=GenParams(max_tokens=max_tokens, temperature=0.7,
                                                                        seed=qi))
        proto = PeerProtocol(signer, Ed25519Verifier(), cfg, rng=random.Random(qi * 31 + i))
        ids.append(mesh.add(proto, g))
        meters.append(g)
    mesh.ask(ids[0], f"q{qi}", question)
    mesh.run(until_s=10 * 3600.0)
    out = mesh.delivered.get((ids[0], f"q{qi}"))
    if out is None:
        return "", {"failed": [f.reason for _, f in mesh.failed]}, meters
    return out.answer, out.trace, meters


def read_rows(paths: list[str]) -> dict[str, dict]:
    """Per-question rows of one or more --rows files, merged by question id (methods united)."""
    out: dict[str, dict] = {}
    for path in paths:
        if not Path(path).exists():
            continue
        for line in Path(path).read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                have = out.setdefault(row["id"], {"id": row["id"], "oracle": row["oracle"], "methods": {}})
                have["methods"].update(row["methods"])
    return out


def _acc(rows: list[dict]) -> float:
    return round(sum(x["right"] for x in rows) / len(rows), 4) if rows else None


def summarise(table: dict[str, dict], methods: list[str]) -> dict:
    """The JSON summary. Each method is scored over the questions it was run on; its
    ``best_single``, ``oracle`` and ``gap_recovered`` are taken over the same questions, and
    its wins/losses against the best single model are paired per question."""
    res: dict = {"questions": len(table)}
    singles = [m for m in ("single_smollm2", "single_gemma") if m in methods]
    best = max(singles, key=lambda m: _acc([t["methods"][m] for t in table.values() if m in t["methods"]]) or 0,
               default=None)
    res["oracle"] = _acc([{"right": t["oracle"]} for t in table.values()])
    res["best_single_method"] = best
    res["best_single"] = _acc([t["methods"][best] for t in table.values() if best in t["methods"]]) if best else None
    res["gap_recovered"] = {}
    res["wins_losses_vs_best_single"] = {}
    for m in ALL_METHODS:
        rows = [t["methods"][m] for t in table.values() if m in t["methods"]]
        if m not in methods or not rows:
            res[m] = None
            continue
        res[m] = {"questions": len(rows), "accuracy": _acc(rows),
                  "tokens_per_q": round(sum(x["tokens"] for x in rows) / len(rows), 1),
                  "calls_per_q": round(sum(x["calls"] for x in rows) / len(rows), 3)}
        if best is None or m in singles:
            continue
        both = [t for t in table.values() if m in t["methods"] and best in t["methods"]]
        bs = _acc([t["methods"][best] for t in both])
        orc = _acc([{"right": t["oracle"]} for t in both])
        acc = _acc([t["methods"][m] for t in both])
        res[m]["best_single_same_questions"] = bs
        res[m]["oracle_same_questions"] = orc
        res["gap_recovered"][m] = round((acc - bs) / (orc - bs), 4) if orc > bs else None
        res["wins_losses_vs_best_single"][m] = {
            "wins": sum(t["methods"][m]["right"] and not t["methods"][best]["right"] for t in both),
            "losses": sum(t["methods"][best]["right"] and not t["methods"][m]["right"] for t in both),
            "questions": len(both)}
    cons = [m for m in res["gap_recovered"] if m not in ("moa", "smoa", "cascade")]
    if cons:
        top = max(cons, key=lambda m: res[m]["accuracy"])
        res["best_consensus"] = top
        res["best_consensus_minus_best_single"] = round(res[top]["accuracy"] - res[top]["best_single_same_questions"], 4)
    if res.get("moa") and res.get("smoa"):
        both = [t for t in table.values() if "moa" in t["methods"] and "smoa" in t["methods"]]
        res["smoa_vs_moa_same_questions"] = {
            "questions": len(both),
            "moa_accuracy": _acc([t["methods"]["moa"] for t in both]),
            "smoa_accuracy": _acc([t["methods"]["smoa"] for t in both]),
            "smoa_token_ratio": round(sum(t["methods"]["smoa"]["tokens"] for t in both)
                                      / max(1, sum(t["methods"]["moa"]["tokens"] for t in both)), 4),
            "smoa_wins": sum(t["methods"]["smoa"]["right"] and not t["methods"]["moa"]["right"] for t in both),
            "smoa_losses": sum(t["methods"]["moa"]["right"] and not t["methods"]["smoa"]["right"] for t in both)}
        res["smoa_token_ratio"] = res["smoa_vs_moa_same_questions"]["smoa_token_ratio"]
    for m in ("cascade", "mesh_cascade"):
        rows = [t["methods"][m] for t in table.values() if m in t["methods"]]
        if rows and all("exit_level" in x for x in rows):
            lv: dict = {}
            for x in rows:
                lv.setdefault(str(x["exit_level"]), []).append(x)
            res[m]["exit_levels"] = {k: {"questions": len(v), "accuracy": _acc(v),
                                         "tokens_per_q": round(sum(x["tokens"] for x in v) / len(v), 1),
                                         "calls_per_q": round(sum(x["calls"] for x in v) / len(v), 3)}
                                     for k, v in sorted(lv.items())}
    rows = [t["methods"]["smoa"] for t in table.values() if "smoa" in t["methods"]]
    if rows and all("stopped_early" in x for x in rows):
        res["smoa"]["stopped_early"] = sum(x["stopped_early"] for x in rows)
        res["smoa"]["aggregator_calls"] = sum(x["aggregator"] for x in rows)
    res["per_kind"] = {}
    for m in methods:
        kinds: dict = {}
        for t in table.values():
            if m in t["methods"]:
                x = t["methods"][m]
                k = kinds.setdefault(x["kind"], [0, 0])
                k[0] += x["right"]
                k[1] += 1
        if kinds:
            res["per_kind"][m] = {k: f"{a}/{b}" for k, (a, b) in kinds.items()}
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--questions", default=str(QUESTIONS),
                    help="JSON list of questions, each {id, kind, question, gold: [accepted answers]} "
                    "(default: the shipped tests/data/graded_questions.json)")
    ap.add_argument("--limit", type=int, default=0,
                    help="use N questions, taken round-robin over the kinds (0: all 315)")
    ap.add_argument("--max-tokens", type=int, default=64, help="completion budget per call (tokens)")
    ap.add_argument("--methods", default="",
                    help="comma-separated methods (default: all but aggregate, the mesh's synthesis; with "
                    "--from-rows: the methods found in the rows)")
    ap.add_argument("--threads", type=int, default=1, help="llama.cpp threads per model (default 1: "
                    "on a shared machine more threads spin against each other)")
    ap.add_argument("--shard", default="", help="i/n: ask only every n-th question from the i-th "
                    "(parallel workers; merge their --rows files and summarise with --from-rows)")
    ap.add_argument("--from-rows", action="store_true",
                    help="no model calls: summarise only the questions already in --rows (an interrupted run)")
    ap.add_argument("--rows", default="", help="JSON-lines file of per-question results: appended as "
                    "questions finish, and questions already in it are not asked again (resume); with "
                    "--from-rows a comma-separated list (shards, or runs of different methods: merged by "
                    "question, every method summarised over the questions it has)")
    args = ap.parse_args()
    try:
        qs = json.loads(Path(args.questions).read_text())
        assert isinstance(qs, list) and qs
        for q in qs:
            assert isinstance(q["id"], str) and isinstance(q["question"], str) and isinstance(q["gold"], list)
            q.setdefault("kind", "other")
    except (OSError, ValueError, AssertionError, KeyError, TypeError) as exc:
        print(f"bench/quality.py: --questions {args.questions}: not a JSON list of questions "
              f"{{id, question, gold: [...], kind}} ({type(exc).__name__}: {exc})", file=sys.stderr)
        return 2
    if args.limit and args.limit < len(qs):
        # round-robin over the kinds, spread inside each kind: a short run sees every kind
        kinds: dict[str, list[dict]] = {}
        for q in qs:
            kinds.setdefault(q["kind"], []).append(q)
        per_kind = -(-args.limit // len(kinds))
        # distinct questions, evenly spaced inside each kind (a kind smaller than its share gives all it has)
        spread = {k: [v[j] for j in sorted({int(i * len(v) / per_kind) for i in range(per_kind)})]
                  for k, v in kinds.items()}
        qs = [spread[k][i] for i in range(per_kind) for k in kinds if i < len(spread[k])][: args.limit]
    args.methods_given = bool(args.methods)
    methods = [m for m in (args.methods or ",".join(m for m in ALL_METHODS if m != "aggregate")).split(",") if m]
    bad = [m for m in methods if m not in ALL_METHODS]
    if bad:
        print(f"bench/quality.py: unknown method(s) {','.join(bad)}; choose from {','.join(ALL_METHODS)}",
              file=sys.stderr)
        return 2
    if args.shard:
        try:
            i, k = (int(x) for x in args.shard.split("/"))
            assert 0 <= i < k
        except (ValueError, AssertionError):
            print(f"bench/quality.py: --shard must be i/n with 0 <= i < n, got {args.shard!r}", file=sys.stderr)
            return 2
        qs = qs[i::k]

    t0 = time.perf_counter()
    load0 = [round(x, 2) for x in os.getloadavg()]
    if args.from_rows:
        if not args.rows or not all(Path(f).exists() for f in args.rows.split(",")):
            print("bench/quality.py: --from-rows needs an existing --rows file", file=sys.stderr)
            return 2
        have = read_rows(args.rows.split(","))
        qs = [q for q in qs if q["id"] in have]
        if not args.methods_given:
            methods = [m for m in ALL_METHODS if any(m in r["methods"] for r in have.values())]
        real, embedder, mesh_gens = {}, None, []
    else:
        from p2pmoa.embed import LlamaEmbedder
        from p2pmoa.llm import LlamaGenerator

        # one llama.cpp thread per model: on a shared, loaded machine two spinning threads per
        # call ran 10-40x slower than one (measured: SmolLM2 1.9-3.9 vs 27-41 tokens/s at load 10-15)
        real = {m: CachedGenerator(LlamaGenerator.from_name(m, n_threads=args.threads)) for m in MODELS}
        for g in real.values():  # page the weights in before timing anything
            g.gen.generate([ChatMessage("user", "warm up")], GenParams(max_tokens=2))
        embedder = CachedEmbedder(LlamaEmbedder(n_threads=args.threads))
        mesh_gens = [real["smollm2-135m"], real["gemma3-270m"], real["smollm2-135m"], real["gemma3-270m"]]

    def get(model):
        return real[model or "smollm2-135m"]

    per: dict[str, list[dict]] = {m: [] for m in methods}
    oracle = []
    done_rows = read_rows(args.rows.split(",") if args.rows else [])
    table: dict[str, dict] = {}  # question id -> {"oracle": bool, "methods": {method: row}}
    for qi, q in enumerate(qs):
        question = q["question"]
        if q["id"] in done_rows and (args.from_rows or all(m in done_rows[q["id"]]["methods"] for m in methods)):
            row = done_rows[q["id"]]
            table[q["id"]] = {"oracle": row["oracle"],
                              "methods": {m: v for m, v in row["methods"].items() if m in methods}}
            continue
        qseed = int(hashlib.sha256(q["id"].encode()).hexdigest()[:6], 16)  # per question, not per position
        results: dict[str, tuple[str, int, int, dict]] = {}  # method -> (answer, tokens, calls, extra)
        # the mesh's own proposals: node i's first call. single_smollm2 / single_gemma are nodes
        # 0 / 1 exactly; the local pipelines' proposers sample with the same seeds, so their first
        # layer is the very same four calls (run once, counted for each method)
        props = None
        mesh_first = [m for m in methods if m in MESH_METHODS] or ["vote"]
        for m in dict.fromkeys(mesh_first + [m for m in methods if m in MESH_METHODS]):
            ans, trace, meters = run_mesh(question, m, mesh_gens, embedder, args.max_tokens, qseed)
            if props is None:
                props = [mt.first for mt in meters]
            if m in methods:
                results[m] = (ans, sum(mt.tokens for mt in meters), sum(mt.calls for mt in meters), {})
        texts = [r.text if r is not None else "" for _, r in props]
        oracle.append(any(grade(t, q["gold"], question) for t in texts))
        for name, i in (("single_smollm2", 0), ("single_gemma", 1)):
            r = props[i][1]
            results[name] = (r.text, r.prompt_tokens + r.completion_tokens, 1, {})
        proposers = tuple(moa.Proposer(model=mesh_gens[i].gen.spec.name, role=NODE_ROLES[i], temperature=0.7,
                                       seed=props[i][0].seed) for i in range(4))
        base_cfg = moa.MoAConfig(layers=2, proposers=proposers, k=2, aggregator_model="smollm2-135m",
                                 max_tokens=args.max_tokens)
        for m in ("moa", "smoa", "cascade"):
            if m in methods:
                tr = moa.run_local(question, moa.with_mode(base_cfg, m), get, embedder)
                extra = {}
                if m == "smoa":
                    extra = {"stopped_early": bool(tr.get("stopped_early")),
                             "layers": len(tr["layers"]),
                             "aggregator": not tr.get("aggregator", {}).get("skipped", False)}
                elif m == "cascade":
                    extra = {"exit_level": tr.get("exit_level")}
                results[m] = (tr["answer"], tr["totals"]["tokens"], tr["totals"]["calls"], extra)
        if "mesh_cascade" in methods:
            def ask(step, _q=question, _s=qseed):
                nodes = (0, 1, 2, 3) if step.proposers_max is None else tuple(range(step.proposers_max))
                ans, trace, meters = run_mesh(_q, step.method, mesh_gens, embedder, args.max_tokens, _s, nodes)
                ask.tokens += sum(mt.tokens for mt in meters)
                ask.calls += sum(mt.calls for mt in meters)
                return ans, trace
            ask.tokens = ask.calls = 0
            done, levels = cascade.run(question, ask, cascade.CascadePolicy(first=2, m=2, method="vote"))
            results["mesh_cascade"] = (done.answer, ask.tokens, ask.calls, {"exit_level": done.level})
        for m in methods:
            ans, tokens, calls, extra = results[m]
            per[m].append({"id": q["id"], "kind": q["kind"], "right": grade(ans, q["gold"], question),
                           "tokens": tokens, "calls": calls, "answer": ans[:120], **extra})
        table[q["id"]] = {"oracle": oracle[-1], "methods": {m: per[m][-1] for m in methods}}
        if args.rows:
            with open(args.rows, "a") as fh:
                fh.write(json.dumps({"id": q["id"], "oracle": oracle[-1], "proposals": [t[:120] for t in texts],
                                     "methods": {m: per[m][-1] for m in methods}}) + "\n")
        done_n = {m: sum(x["right"] for x in v) for m, v in per.items()}
        print(f"[{qi + 1}/{len(qs)}] {time.perf_counter() - t0:.0f}s oracle {sum(oracle)} {done_n}",
              file=sys.stderr, flush=True)

    res = summarise(table, methods)
    res.update({"max_tokens": args.max_tokens,
                "models": [real[m].model_id for m in MODELS] if real else list(MODELS),
                "embedder": embedder.space_id if embedder else "(from rows)"})
    if real:
        hits = sum(g.hits for g in real.values())
        misses = sum(g.misses for g in real.values())
        res["model_calls"] = {"requested": hits + misses, "run": misses, "shared": hits,
                              "model_s": round(sum(g.model_s for g in real.values()), 1),
                              "note": "a call identical in model, messages and sampling parameters (seed "
                                      "included) is run once and shared; every method is charged each call "
                                      "it makes"}
    res["load"] = {"start": load0, "end": [round(x, 2) for x in os.getloadavg()], "threads": args.threads}
    res["wall_s"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
