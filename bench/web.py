"""Benchmark of the node's web page and of sweeps on Ray; prints ONE JSON object as its last line.

Measures (issue 15):
  page_first_answer_s   question typed and Ask pressed -> first answer text shown on the page,
                        measured inside the page (performance.now()), in Debian's headless
                        Chromium driven by Playwright, against a real 3-node mesh of daemon
                        processes on 127.0.0.1 with the zero-latency stand-in model; median of
                        ``--questions`` questions (p90 and all values also reported).
  page_trace_events     consensus-trace items the page showed for one query (query sent,
                        phases, one per proposal, round, votes, decision); median.
  sim_bft_ray_speedup   wall seconds of ``p2pmoa sim bft`` with ``--workers 1`` / the same with
                        ``--ray --workers 2`` (a local Ray started on demand, its start-up
                        included: that is what the user waits for), same seed; the output
                        files are compared byte for byte (``ray_same_output``). For
                        context, ``sim_bft_pool_workers2_speedup`` is the same ratio for the
                        local process pool with 2 workers (what the machine's load allows).

Run: .venv/bin/python bench/web.py [--quick] [--only page|ray]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from node.procs import NodeProcess, wait_mesh  # noqa: E402
from node.webcheck import artifacts_dir, ask_on_page, browser_page  # noqa: E402

QUESTIONS = ["What colour is the sky on a clear day?", "Why do leaves fall in autumn?",
             "How many legs does a spider have?", "What is the boiling point of water?",
             "Who wrote Hamlet?", "What is two plus two?", "Name a prime number.",
             "What is the capital of Italy?", "Why is the sea salty?", "What is rust?"]


def bench_page(n_questions: int) -> dict:
    base = Path(tempfile.mkdtemp(prefix="p2pmoa-bench-web-"))
    nodes: list[NodeProcess] = []
    try:
        for i in range(3):
            nodes.append(NodeProcess(f"b{i}", base / f"b{i}", model=f"stand-in:m{i}",
                                     bootstrap=[nodes[0].addr] if nodes else [],
                                     extra=["--proposers-max", "3", "--deadline-s", "10"]))
        for n in nodes:
            n.start()
        for n in nodes:
            n.wait_ready(60)
        wait_mesh(nodes, 60)
        first, events, walls = [], [], []
        with browser_page() as page:
            page.goto(f"http://{nodes[0].api}/")
            page.wait_for_selector("tr.peer-row >> nth=1")
            for q in QUESTIONS[:n_questions]:
                res = ask_on_page(page, q, timeout_s=120)
                if res["error"] or res["first_answer_s"] is None:
                    raise RuntimeError(f"page showed no answer for {q!r}: {res['error']}")
                first.append(res["first_answer_s"])
                events.append(len(res["trace"]))
                walls.append(res["wall_s"])
            shot = artifacts_dir() / "web-page-bench.png"
            page.screenshot(path=str(shot), full_page=True)
        first.sort()
        return {"page_first_answer_s": round(statistics.median(first), 3),
                "page_first_answer_s_p90": round(first[min(len(first) - 1, int(0.9 * len(first)))], 3),
                "page_first_answer_s_all": [round(x, 3) for x in first],
                "page_decision_shown_s_median": round(statistics.median(walls), 3),
                "page_trace_events": statistics.median(events), "page_trace_events_all": events,
                "page_questions": len(first), "page_nodes": len(nodes), "page_screenshot": str(shot)}
    finally:
        for n in nodes:
            n.stop()


def _sim(out: Path, extra: list[str], args: list[str]) -> float:
    cmd = [sys.executable, "-m", "p2pmoa.cli", "sim", "bft", *args, "--seed", "7", "--out", str(out),
           "--no-progress", *extra]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {r.stderr[-2000:]}")
    return dt


def bench_ray(quick: bool) -> dict:
    try:
        import ray  # noqa: F401
    except ImportError:
        return {"sim_bft_ray_speedup": None, "ray": "not installed (pip install 'p2pmoa[ray]')"}
    args = (["--n-values", "4,7", "--trials", "8"] if quick else
            ["--n-values", "4,7,10,13", "--trials", "20"])
    base = Path(tempfile.mkdtemp(prefix="p2pmoa-bench-ray-"))
    t_local = _sim(base / "local", ["--workers", "1"], args)
    t_pool = _sim(base / "pool", ["--workers", "2"], args)  # context: local process pool, 2 workers
    t_ray = _sim(base / "ray", ["--workers", "2", "--ray"], args)
    files = sorted(p.name for p in (base / "local").iterdir())
    same = files == sorted(p.name for p in (base / "ray").iterdir()) and all(
        (base / "local" / f).read_bytes() == (base / "ray" / f).read_bytes() for f in files)
    return {"sim_bft_ray_speedup": round(t_local / t_ray, 3), "sim_bft_local_workers1_s": round(t_local, 2),
            "sim_bft_ray_workers2_s": round(t_ray, 2), "ray_same_output": same,
            "sim_bft_pool_workers2_speedup": round(t_local / t_pool, 3),
            "sim_bft_args": " ".join(args), "cpus": len(os.sched_getaffinity(0))}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer questions, smaller sweep")
    ap.add_argument("--only", choices=["page", "ray"], help="run one part")
    ap.add_argument("--questions", type=int, default=None, help="questions asked on the page (default 10, quick 3)")
    a = ap.parse_args()
    out: dict = {"load_avg_1m": round(os.getloadavg()[0], 2)}
    if a.only in (None, "page"):
        out.update(bench_page(a.questions or (3 if a.quick else 10)))
    if a.only in (None, "ray"):
        out.update(bench_ray(a.quick))
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
