"""`p2pmoa demo`: a real 4-node mesh on 127.0.0.1 answers one question by PBFT.

Starts four ``p2pmoa node run`` processes (two SmolLM2-135M, two Gemma-3-270M, each in a
different role), bootstrapped through the first; waits until every node sees the other
three on the query topic; asks one question through node 1's OpenAI-compatible API; prints
the answer and a readable consensus trace; stops every process with SIGTERM.
"""
from __future__ import annotations

import json
import shutil
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from node.procs import NodeProcess, ProcessError, wait_mesh
from p2pmoa.client import post_json

ROLES = (
    "a careful scientist who states facts precisely",
    "a patient teacher who explains simply",
    "a sceptical fact checker",
    "a concise encyclopedia editor",
)
MODELS = ("smollm2-135m", "smollm2-135m", "gemma3-270m", "gemma3-270m")
DEFAULT_DEMO_EMBEDDER = "gemma3-270m"
"""The demo's mesh embedding space: the real centred Gemma-3 embedder (docs/embeddings.md). Its
centring vector is cached on disk by ``make setup`` (``python -m p2pmoa.embed --warm``), so
each node loads it in seconds; ``--stand-in`` runs use the hashing stand-in instead."""


def _say(msg: str) -> None:
    print(msg, flush=True)


def format_trace(trace: dict, names: dict[str, str] | None = None) -> str:
    """Readable rendering of the consensus trace of ``p2pmoa_trace`` (see p2pmoa.protocol)."""
    names = names or {}
    nm = lambda p: f"{names.get(p, '?')} ({str(p)[:14]}…)" if p else "-"  # noqa: E731
    out = [f"query {trace.get('query_id', '?')} asked at {nm(trace.get('originator'))}, "
           f"method {trace.get('method', '?')}: {trace.get('n_proposals', '?')} of "
           f"{trace.get('n_expected', '?')} expected proposals in the round"]
    props = trace.get("proposals") or []
    chosen = (trace.get("decision") or {}).get("proposer")
    for p in props:
        ans = " ".join(str(p.get("answer", "")).split())
        mark = "=>" if p.get("peer") == chosen else "  "
        cent = p.get("centrality")
        out.append(f"{mark} {nm(p.get('peer'))} model={p.get('model_id')} role={p.get('role', '?')!r}")
        out.append(f"     llm {p.get('llm_s', 0):.1f} s, {p.get('completion_tokens', '?')} tokens, "
                   f"arrived after {p.get('arrived_s', 0):.2f} s"
                   + (f", centrality {cent:.3f}" if isinstance(cent, (int, float)) else ""))
        out.append(textwrap.indent(textwrap.fill(ans[:300] or "(empty)", 88), "     | "))
    if trace.get("weights"):
        out.append("vote weights (from trust): " + ", ".join(
            f"{names.get(k, k[:8])}={v}" for k, v in trace["weights"].items()))
    if trace.get("votes"):
        out.append("score votes: " + json.dumps({names.get(k, k[:8]): v for k, v in trace["votes"].items()}))
    d = trace.get("decision") or {}
    if d:
        out.append(f"decision: {nm(d.get('proposer'))}'s answer, PBFT view {d.get('view', 0)}, "
                   f"digest {str(d.get('digest', ''))[:16]}…")
    t = trace.get("timings") or {}
    if t:
        out.append("timings: " + ", ".join(f"{k} {v:.3f} s" for k, v in t.items()
                                           if isinstance(v, (int, float))))
    for note in trace.get("notes") or []:
        out.append(f"note: {note}")
    if trace.get("nacks"):
        out.append("refusals: " + json.dumps(trace["nacks"]))
    return "\n".join(out)


def run_demo(question: str, consensus: str = "pbft", stand_in: bool = False,
             keep_dir: bool = False, base: Path | None = None, embedder: str | None = None) -> int:
    base = base or Path(tempfile.mkdtemp(prefix="p2pmoa-demo-"))
    nodes: list[NodeProcess] = []
    code = 1
    try:
        for i in range(4):
            model = "stand-in:" + MODELS[i] if stand_in else MODELS[i]
            n = NodeProcess(f"node{i + 1}", base / f"node{i + 1}", model=model, role=ROLES[i],
                            consensus=consensus, embedder=embedder or ("hashing" if stand_in else DEFAULT_DEMO_EMBEDDER),
                            bootstrap=[nodes[0].addr] if nodes else [],
                            extra=["--deadline-s", "120", "--round-timeout-s", "120", "--proposers-max", "4", "--max-tokens", "48"])
            nodes.append(n)
        t0 = time.monotonic()
        _say(f"starting 4 nodes in {base} (logs: <node dir>/node.log); embedder "
             f"{nodes[0].embedder} (the whole mesh embeds in one space)")
        if nodes[0].embedder == "hashing":
            _say("  (ranking embeddings: hashing stand-in, not a model)")
        for n in nodes:
            n.start()
            _say(f"  {n.name}: model={n.model:<22} peer={n.peer_id}  api=http://{n.api}")
        for n in nodes:
            n.wait_ready(timeout_s=900)
        _say(f"all APIs up after {time.monotonic() - t0:.1f} s; waiting for the mesh")
        mesh_s = wait_mesh(nodes, timeout_s=120)
        _say(f"mesh formed: every node sees the other 3 on the query topic ({mesh_s:.1f} s)")
        _say(f"\nasking {nodes[0].name} ({consensus}): {question}")
        t1 = time.monotonic()
        # a busy node answers 429 + Retry-After: wait as asked (bounded), saying so on stderr
        reply = post_json(f"http://{nodes[0].api}/v1/chat/completions", {
            "model": f"p2pmoa/{consensus}", "messages": [{"role": "user", "content": question}],
            "max_tokens": 48, "temperature": 0.2}, timeout_s=900, budget_s=600)
        status, body = reply.status, reply.body
        dt = time.monotonic() - t1
        if status != 200:
            _say(f"the node answered HTTP {status}: {json.dumps(body)}")
            return 1
        names = {n.peer_id: n.name for n in nodes}
        _say(f"\nANSWER ({dt:.1f} s):")
        _say(textwrap.indent(textwrap.fill(body["choices"][0]["message"]["content"] or "(empty)", 90), "  "))
        _say("\nTRACE:")
        trace = body.get("p2pmoa_trace", {})
        _say(textwrap.indent(format_trace(trace, names), "  "))
        _say("\nVERIFY: the decision each node recorded (GET /status):")
        qid = trace.get("query_id")
        deadline = time.monotonic() + 15
        while True:
            recorded = {n.name: ((n.status() or {}).get("protocol") or {}).get("decisions", {}).get(qid)
                        for n in nodes}
            if all(recorded.values()) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        for name, d in recorded.items():
            _say(f"  {name}: " + (f"digest {d['digest'][:16]}…" if d else "no decision recorded"))
        digests = {d["digest"] for d in recorded.values() if d}
        same = len(digests) == 1 and all(recorded.values())
        _say("  all nodes recorded the same decision" if same else "  nodes DISAGREE or are missing")
        code = 0 if same else 1
    except ProcessError as exc:
        _say(f"demo failed: {exc}")
    except KeyboardInterrupt:
        _say("interrupted")
    finally:
        _say("\nstopping nodes")
        for n in reversed(nodes):
            rc = n.stop()
            _say(f"  {n.name} exited with {rc}")
        if not keep_dir and code == 0:
            shutil.rmtree(base, ignore_errors=True)
        elif code != 0:
            _say(f"logs kept in {base}")
    return code


def main(args) -> int:
    return run_demo(args.question, args.consensus, args.stand_in, args.keep_dir,
                    embedder=args.embedder)


if __name__ == "__main__":
    sys.exit(run_demo("What is the boiling point of water at sea level, in degrees Celsius?"))
