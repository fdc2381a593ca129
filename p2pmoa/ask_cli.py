"""``p2pmoa ask``: answer a question locally (``--local``) or through a running node's API."""
from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
import urllib.error
import urllib.request
from pathlib import Path

from p2pmoa.models import DEFAULT_MODEL

DEFAULT_API = os.environ.get("P2PMOA_API", "127.0.0.1:8700")


def register(sub) -> None:
    p = sub.add_parser(
        "ask", help="ask a question (locally, or through a running node)",
        description="Ask a question. With --local the Mixture-of-Agents pipeline runs on this "
                    "machine with the packaged GGUF models; without it the question goes to a "
                    "running node's API (see `p2pmoa node run`), which asks the mesh.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("question", help="the question to answer")
    p.add_argument("--local", action="store_true", help="run the pipeline here instead of asking a node")
    p.add_argument("--mode", choices=["single", "moa", "smoa", "cascade"], default="smoa",
                   help="single: one model call; moa: layered Mixture-of-Agents; smoa: Sparse MoA (judge keeps k, moderator may stop early); cascade: ask 2 proposers, the rest only if they disagree")
    p.add_argument("--layers", type=int, default=2, help="proposer layers (l)")
    p.add_argument("--proposers", type=int, default=4, help="proposers per layer (n)")
    p.add_argument("--k", type=int, default=2, help="responses the SMoA judge keeps per layer (k < n)")
    p.add_argument("--model", action="append", default=None, metavar="NAME|PATH",
                   help=f"model(s) for the proposers, cycled; repeat for a mixed set (default {DEFAULT_MODEL}); "
                        "the first one also aggregates")
    p.add_argument("--judge", choices=["agreement", "centrality", "llm"], default="agreement",
                   help="SMoA judge: largest cluster of equivalent answers (default), embedding centrality, "
                        "or the LLM (only its 'Best:' numbers count; agreement fallback)")
    p.add_argument("--moderator", choices=["agreement", "llm", "never"], default="agreement",
                   help="SMoA early stop: when the kept answers are equivalent (agreement), the LLM, or never")
    p.add_argument("--threshold", type=float, default=None,
                   help="agreement score at which two answers count as the same answer (default 0.5)")
    p.add_argument("--roles", type=Path, default=None, help="roles file (JSON list or one role per line)")
    p.add_argument("--task", nargs=2, metavar=("DESCRIPTION", "REQUIREMENT"), default=None,
                   help="generate proposer roles once from a dataset description and task requirement (cached)")
    p.add_argument("--max-tokens", type=int, default=128, help="completion budget per call (tokens)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    p.add_argument("--json", action="store_true", help="print the whole trace as JSON")
    p.add_argument("--api", default=DEFAULT_API, help="node API address (without --local)")
    p.add_argument("--consensus", choices=["pbft", "averaging", "vote", "aggregate", "score", "cascade"],
                   default=None,
                   help="aggregation method the node uses (without --local; default: the node's); "
                        "cascade: the node asks itself and one peer, and the whole mesh only if they disagree")
    p.add_argument("--stream", action="store_true",
                   help="without --local: use the API's streaming path (server-sent events)")
    p.add_argument("--retry-budget-s", type=float, default=180.0,
                   help="without --local: most seconds to spend waiting when the node answers busy "
                        "(429 Retry-After); each retry is reported on stderr")
    p.set_defaults(func=run)


def run(args) -> int:
    if not args.question.strip():
        print("p2pmoa ask: the question is empty", file=sys.stderr)
        return 2
    if args.local:
        return _run_local(args)
    return _run_remote(args)


def _run_local(args) -> int:
    from p2pmoa import moa
    from p2pmoa.embed import DEFAULT_EMBED_MODEL, LlamaEmbedder
    from p2pmoa.llm import LlamaGenerator, LLMError
    from p2pmoa.models import ModelError

    models = args.model or [DEFAULT_MODEL]
    try:
        roles = list(moa.DEFAULT_ROLES)
        loaded: dict = {}

        def get(name):
            name = name or models[0]
            if name not in loaded:
                _status(f"loading model {name}")
                loaded[name] = LlamaGenerator.from_name(name)
            return loaded[name]

        if args.roles:
            roles = moa.load_roles(args.roles)
        elif args.task:
            from p2pmoa.models import _cache_dir
            roles, source = moa.generate_roles(args.task[0], args.task[1], args.proposers, get(None),
                                               cache_dir=_cache_dir() / "roles")
            _status(f"roles: {source}")
        kw = {} if args.threshold is None else {"agreement_threshold": args.threshold}
        cfg = moa.MoAConfig(mode=args.mode, layers=args.layers,
                            proposers=moa.make_proposers(args.proposers, models, roles), k=args.k,
                            judge=args.judge, moderator=args.moderator, aggregator_model=models[0],
                            max_tokens=args.max_tokens, seed=args.seed, **kw)
        embedder = None
        if args.mode == "smoa" and args.judge == "centrality":
            _status(f"loading embedder {DEFAULT_EMBED_MODEL}")
            embedder = LlamaEmbedder(DEFAULT_EMBED_MODEL)
        trace = moa.run_local(args.question, cfg, get, embedder, on_step=_status)
    except (ModelError, LLMError, moa.MoAConfigError) as exc:
        print(f"p2pmoa ask: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # e.g. a --roles file that is missing or unreadable
        print(f"p2pmoa ask: cannot read {exc.filename or 'a file'}: {exc.strerror or exc}. "
              "Fix: check the path given to --roles", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(trace, indent=2))
    else:
        print(format_trace(trace))
    return 0


def _status(msg: str) -> None:
    if sys.stderr.isatty():
        print(f"\r\033[K… {msg}", end="", file=sys.stderr, flush=True)


def _short(text: str, width: int = 100) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[: width - 1] + "…"


def format_trace(trace: dict) -> str:
    """A readable rendering of a local pipeline trace."""
    if sys.stderr.isatty():
        print("\r\033[K", end="", file=sys.stderr)
    out = [f"Answer ({trace['mode']}):", textwrap.indent(textwrap.fill(trace["answer"] or "(empty)", 96), "  "), ""]
    for layer in trace.get("layers", []):
        out.append(f"Layer {layer['index'] + 1}:")
        for r in layer["responses"]:
            out.append(f"  [{r['proposer']}] {r['model']} t={r['temperature']} "
                       f"{r['prompt_tokens']}+{r['completion_tokens']} tok {r['llm_s']:.2f}s")
            out.append(f"      role: {_short(r['role'], 80)}")
            out.append(f"      {_short(r['text'])}")
        if "judge" in layer:
            j = layer["judge"]
            out.append(f"  judge ({j['method']}): kept {j['kept']}  clusters {j.get('clusters')}")
        if "moderator" in layer:
            m = layer["moderator"]
            out.append(f"  moderator ({m['method']}): {'STOP' if m['stop'] else 'continue'} — {m['reason']}")
    if "exit_level" in trace:
        out.append(f"Cascade exit level {trace['exit_level']}: {trace['exit_reason']}  clusters {trace['clusters']}")
    if "aggregator" in trace and trace["mode"] != "single":
        a = trace["aggregator"]
        if a.get("skipped"):
            out.append(f"Aggregator: skipped ({a['reason']})")
        else:
            out.append(f"Aggregator: {a['model']} {a['prompt_tokens']}+{a['completion_tokens']} tok {a['llm_s']:.2f}s")
    t = trace["totals"]
    out.append(f"Totals: {t['calls']} LLM calls, {t['embed_calls']} embed calls, {t['tokens']} tokens "
               f"({t['prompt_tokens']} prompt + {t['completion_tokens']} completion + {t['embed_tokens']} embed), "
               f"{t['llm_s']:.2f}s in llama.cpp, {t.get('wall_s', 0):.2f}s wall")
    return "\n".join(out)


def _run_remote(args) -> int:
    body = {"model": "p2pmoa",
            "messages": [{"role": "user", "content": args.question}],
            "max_tokens": args.max_tokens}
    if args.consensus:
        body["consensus"] = args.consensus
    from p2pmoa.client import post_json
    url = f"http://{args.api}/v1/chat/completions"
    try:
        reply = post_json(url, body, timeout_s=600, budget_s=args.retry_budget_s,
                          stream=args.stream)
    except (urllib.error.URLError, OSError) as exc:
        print(f"p2pmoa ask: cannot reach a node at {args.api} ({exc}). Start one with `p2pmoa node run`, "
              "or use --local to run the pipeline on this machine.", file=sys.stderr)
        return 1
    data = reply.body
    if reply.status != 200 or "error" in data:
        print(f"p2pmoa ask: node at {args.api} answered {reply.status}: {json.dumps(data)}",
              file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    print(data["choices"][0]["message"]["content"])
    trace = data.get("p2pmoa_trace")
    if trace:
        print()
        print(format_mesh_trace(trace))
    return 0


def format_mesh_trace(trace: dict) -> str:
    """A readable summary of a node's consensus trace (the API's ``p2pmoa_trace`` field)."""
    out = []
    for key in ("method", "query_id", "decided_by", "proposals_received", "proposals_expected", "view", "latency_s"):
        if key in trace:
            out.append(f"{key}: {trace[key]}")
    c = trace.get("cascade")
    if isinstance(c, dict):
        out.append(f"cascade exit level {c.get('exit_level')}: {c.get('reason')}")
        for lv in c.get("levels", []) if isinstance(c.get("levels"), list) else []:
            if isinstance(lv, dict):
                out.append(f"  level {lv.get('level')} ({lv.get('query_id')}, {lv.get('method')}): "
                           f"{lv.get('calls')} calls, {lv.get('agreeing')} of {lv.get('answers')} agree")
    for p in trace.get("proposals", [])[:16]:
        if isinstance(p, dict):
            who = str(p.get("peer", p.get("responder", "?")))[:16]
            out.append(f"  {who}… {p.get('model_id', p.get('model', '?'))}: {_short(str(p.get('answer', p.get('text', ''))), 90)}")
    rest = {k: v for k, v in trace.items() if k not in {"proposals", "cascade"} and not any(line.startswith(f"{k}:") for line in out)}
    if rest:
        out.append(json.dumps(rest, indent=2, default=str)[:3000])
    return "\n".join(out)
