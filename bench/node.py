"""Benchmark of the node daemon on 127.0.0.1; prints ONE JSON object as its last line.

Measures (issue 4):
  api_overhead_ratio   as the issue defines it: median seconds of a one-node answer through the
                       HTTP API (real GGUF) / median seconds of a direct llama-cpp-python call
                       in this process with the same messages, sampling and token count;
                       target <= 1.05. Noisy when other work shares the 2 cores.
  api_vs_node_llm_ratio the stricter, contention-proof variant: per request, end-to-end API
                       seconds / seconds of the llama.cpp call inside the node (the trace's
                       llm_s); median. It charges every fixed cost (HTTP, gossip, protocol,
                       signatures) against a 16-token generation.
  pbft_ms_p50/p99      consensus latency of a 4-node PBFT round on loopback EXCLUDING
                       generation: the originator's ``round_s`` (RoundStart to decision:
                       every member verifies the bundle, embeds, runs pre-prepare/prepare/
                       commit over signed frames on libp2p streams). The nodes use the
                       zero-latency stand-in generator and hashing embedder.
  query_e2e_ms_p50/p99 the whole query through the API with the same stand-ins (gossip,
                       proposals with acks, round, HTTP).
  load_*               sustained load at twice the service rate on one node (stand-in with a
                       fixed service time): the buffer stays bounded, the excess gets 429 busy
                       errors, and every accepted query is answered (nothing accepted is lost).

Run: .venv/bin/python bench/node.py [--quick]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from node.procs import NodeProcess, wait_mesh  # noqa: E402

QUESTION = "Name the largest planet in the solar system."


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = min(len(xs) - 1, max(0, round(q / 100 * (len(xs) - 1))))
    return xs[k]


def _ask(node: NodeProcess, q: str, max_tokens: int, method: str = "pbft", seed: int = 0):
    return node.post("/v1/chat/completions", {
        "model": f"p2pmoa/{method}", "messages": [{"role": "user", "content": q}],
        "max_tokens": max_tokens, "temperature": 0.0, "seed": seed})


def bench_api_overhead(base: Path, reps: int, max_tokens: int = 32) -> dict:
    """One node with the real model, deciding alone, vs a direct llama.cpp call."""
    from p2pmoa.effects import ChatMessage, GenParams
    from p2pmoa.llm import LlamaGenerator

    node = NodeProcess("solo", base / "solo", model="smollm2-135m", consensus="pbft",
                       extra=["--max-tokens", str(max_tokens), "--deadline-s", "300",
                              "--proposers-max", "1"]).start()
    try:
        node.wait_ready(300)
        api_s, direct_s, tokens, node_llm_s, node_total_s = [], [], [], [], []
        gen = LlamaGenerator.from_name("smollm2-135m", n_threads=1)
        for i in range(reps):
            for _ in range(120):  # a well-behaved client honours 429 busy (admission control)
                t0 = time.perf_counter()
                status, body = _ask(node, f"{QUESTION} ({i})", max_tokens, seed=i)
                if status != 429:
                    break
                time.sleep(1.0)
            api_s.append(time.perf_counter() - t0)
            assert status == 200, body
            tokens.append(body.get("usage", {}).get("completion_tokens", 0))
            tr = body["p2pmoa_trace"]
            node_llm_s.append(tr["proposals"][0]["llm_s"])
            node_total_s.append(tr["timings"]["total_s"])
            t0 = time.perf_counter()
            # the same call the node makes: its role as system message, its sampling params
            gen.generate([ChatMessage("system", node.role), ChatMessage("user", f"{QUESTION} ({i})")],
                         GenParams(max_tokens=max_tokens, temperature=0.2, seed=0))
            direct_s.append(time.perf_counter() - t0)
        per_req = [a / l for a, l in zip(api_s, node_llm_s) if l > 0]
        return {"api_s_p50": statistics.median(api_s), "direct_s_p50": statistics.median(direct_s),
                "api_overhead_ratio": statistics.median(api_s) / statistics.median(direct_s),
                "api_vs_node_llm_ratio": statistics.median(per_req),
                "api_completion_tokens_p50": statistics.median(tokens) if tokens else 0,
                "node_llm_s_p50": statistics.median(node_llm_s),
                "node_protocol_total_s_p50": statistics.median(node_total_s)}
    finally:
        node.stop()


def bench_pbft(base: Path, rounds: int) -> dict:
    nodes: list[NodeProcess] = []
    for i in range(4):
        nodes.append(NodeProcess(f"n{i}", base / f"n{i}", model="stand-in", consensus="pbft",
                                 bootstrap=[nodes[0].addr] if nodes else [],
                                 extra=["--deadline-s", "10", "--proposers-max", "4"]))
    try:
        for n in nodes:
            n.start()
        for n in nodes:
            n.wait_ready(120)
        mesh_s = wait_mesh(nodes, 60)
        e2e, rnd = [], []
        _ask(nodes[0], "warm up", 8)
        for i in range(rounds):
            t0 = time.perf_counter()
            status, body = _ask(nodes[i % 4], f"question {i}", 8, seed=i)
            e2e.append((time.perf_counter() - t0) * 1000)
            assert status == 200, body
            rnd.append(body["p2pmoa_trace"]["timings"]["round_s"] * 1000)
        return {"n_nodes": 4, "pbft_rounds": rounds, "mesh_formed_s": round(mesh_s, 3),
                "pbft_ms_p50": _pct(rnd, 50), "pbft_ms_p99": _pct(rnd, 99),
                "query_e2e_ms_p50": _pct(e2e, 50), "query_e2e_ms_p99": _pct(e2e, 99)}
    finally:
        for n in nodes:
            n.stop()


def bench_load(base: Path, duration_s: float, service_s: float = 0.2) -> dict:
    """Offer 2x the service rate to one node for ``duration_s``; count outcomes."""
    node = NodeProcess("load", base / "load", model="stand-in", consensus="pbft",
                       extra=["--deadline-s", "2", "--buffer-max", "8", "--proposers-max", "1",
                              "--stand-in-delay-s", str(service_s)]).start()
    try:
        node.wait_ready(120)
        rate = 2.0 / service_s
        results: list[tuple[int, float]] = []
        lock = threading.Lock()

        def one(i: int) -> None:
            t0 = time.perf_counter()
            status, _ = _ask(node, f"load {i}", 8, seed=i)
            with lock:
                results.append((status, time.perf_counter() - t0))
        threads = []
        t_start = time.perf_counter()
        i = 0
        max_depth = 0
        while time.perf_counter() - t_start < duration_s:
            th = threading.Thread(target=one, args=(i,))
            th.start()
            threads.append(th)
            i += 1
            st = node.status() or {}
            max_depth = max(max_depth, (st.get("buffer") or {}).get("unfinished", 0))
            time.sleep(1.0 / rate)
        for th in threads:
            th.join(timeout=120)
        ok = sum(1 for s, _ in results if s == 200)
        busy = sum(1 for s, _ in results if s == 429)
        other = len(results) - ok - busy
        return {"load_offered_per_s": rate, "load_sent": i, "load_ok": ok, "load_busy": busy,
                "load_other": other, "load_buffer_max_seen": max_depth, "load_buffer_capacity": 8,
                "load_accepted_lost": other}
    finally:
        node.stop()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer repetitions")
    ap.add_argument("--skip-real", action="store_true", help="skip the real-model overhead part")
    ap.add_argument("--only", choices=["pbft", "load", "overhead"], help="run one part")
    a = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="p2pmoa-bench-"))
    out: dict = {}
    parts = [("pbft", lambda: bench_pbft(base, 10 if a.quick else 40)),
             ("load", lambda: bench_load(base, 5 if a.quick else 15)),
             ("overhead", lambda: bench_api_overhead(base, 2 if a.quick else 5))]
    for name, fn in parts:
        if (a.only and name != a.only) or (name == "overhead" and a.skip_real):
            continue
        try:
            out.update(fn())
        except Exception as exc:  # report the failure in the JSON instead of losing the rest
            out[f"{name}_error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
