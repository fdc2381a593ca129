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

ROLES = (
    "a careful scientist who states facts precisely",
    "a patient teacher who explains simply",
    "a sceptical fact checker",
    "a concise encyclopedia editor",
)
MODELS = ("smollm2-135m", "smollm2-135m", "gemma3-270m", "gemma3-270m")


def _say(msg: str) -> None:
    print(msg, flush=True)


def format_trace(trace: dict, names: dict[str, str] | None = None) -> str:
    """Readable rendering of a consensus trace (keys as the protocol reports them)."""
    names = names or {}
    nm = lambda p: f"{names.get(p, '?')} ({str(p)[:12]}…)" if p else "-"  # noqa: E731
    out = []
    method = trace.get("method", "?")
    out.append(f"method: {method}")
    for key in ("n_proposals", "n_expected", "decided_in_s", "view", "chosen", "digest"):
        if key in trace:
            v = trace[key]
            out.append(f"{key}: {nm(v) if key == 'chosen' else v}")
    props = trace.get("proposals") or []
    if props:
        out.append(f"proposals ({len(props)}):")
        for p in props:
            ans = " ".join(str(p.get("answer", "")).split())
            out.append(f"  - {nm(p.get('peer') or p.get('proposer'))}  model={p.get('model') or p.get('model_id')}"
                       f"  role={p.get('role', '?')!r}" + (f"  llm_s={p['llm_s']:.2f}" if 'llm_s' in p else ""))
            out.append(textwrap.indent(textwrap.fill(ans[:300] or "(empty)", 90), "      "))
    for key in ("weights", "votes", "scores", "trust"):
        if trace.get(key):
            v = trace[key]
            if isinstance(v, dict):
                out.append(f"{key}:")
                for k, x in v.items():
                    out.append(f"  {nm(k)}: {json.dumps(x) if not isinstance(x, (int, float, str)) else x}")
            else:
                out.append(f"{key}: {json.dumps(v)[:400]}")
    if trace.get("timings"):
        out.append("timings: " + ", ".join(f"{k}={v:.3f}s" if isinstance(v, (int, float)) else f"{k}={v}"
                                          for k, v in trace["timings"].items()))
    rest = {k: v for k, v in trace.items() if k not in {
        "method", "n_proposals", "n_expected", "decided_in_s", "view", "chosen", "digest",
        "proposals", "weights", "votes", "scores", "trust", "timings"}}
    if rest:
        out.append("other: " + json.dumps(rest)[:800])
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
                            consensus=consensus, embedder=embedder or ("hashing" if stand_in else "gemma3-270m"),
                            bootstrap=[nodes[0].addr] if nodes else [],
                            extra=["--deadline-s", "120", "--round-timeout-s", "120", "--proposers-max", "4", "--max-tokens", "48"])
            nodes.append(n)
        t0 = time.monotonic()
        _say(f"starting 4 nodes in {base} (logs: <node dir>/node.log); embedder "
             f"{nodes[0].embedder} (the whole mesh embeds in one space)")
        if nodes[0].embedder != "hashing":
            _say("  loading the embedder computes its centring vector: ~1 min per node on 2 cores")
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
        status, body = nodes[0].post("/v1/chat/completions", {
            "model": f"p2pmoa/{consensus}", "messages": [{"role": "user", "content": question}],
            "max_tokens": 48, "temperature": 0.2})
        dt = time.monotonic() - t1
        if status != 200:
            _say(f"the node answered HTTP {status}: {json.dumps(body)}")
            return 1
        names = {n.peer_id: n.name for n in nodes}
        _say(f"\nANSWER ({dt:.1f} s):")
        _say(textwrap.indent(textwrap.fill(body["choices"][0]["message"]["content"] or "(empty)", 90), "  "))
        _say("\nTRACE:")
        _say(textwrap.indent(format_trace(body.get("p2pmoa_trace", {}), names), "  "))
        code = 0
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
