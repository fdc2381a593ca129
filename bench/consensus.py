"""Benchmark consensus/: PBFT decisions per second and messages per decision (N = 4, 16, 64),
the CPU cost of the daemon's one-shot 4-member round, and embedding-averaging rounds to
eps = 1e-3 on random 4-regular graphs (64-dim vectors).

In-process and single-threaded: messages are delivered FIFO from a queue, no signing, no
serialisation, no network. ``decisions_per_s`` is per CPU-second of this process
(``time.process_time``), so other load on the machine does not distort it; the wall-clock rate
is reported next to it (``--repeat N`` keeps the best of N CPU figures per measurement;
``--only pbft|averaging`` runs one part). Prints human-readable lines, then ONE JSON object as its last line:
{"pbft": {"4": {"decisions_per_s": ..., "messages_per_decision": ...}, ...},
 "pbft_one_shot_round": {...}, "averaging": {...}}
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import deque
from pathlib import Path

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from consensus.averaging import average_graph, normalise  # noqa: E402
from consensus.pbft import Broadcast, Decided, Receive, Replica, Request, Send  # noqa: E402


def pbft_throughput(n: int, decisions: int) -> dict:
    """Sequential rounds (one request decided before the next is submitted), like the
    daemon's per-query rounds but in one long-lived log (checkpoints and truncation run)."""
    ids = [f"m{i:03d}" for i in range(n)]
    weights = {m: 1 for m in ids}
    # happy path (no view change, no proofs): unauthenticated, as before, to time the protocol
    reps = {m: Replica(m, weights, unauthenticated=True) for m in ids}
    q: deque = deque()
    delivered = 0
    decided = 0

    def emit(src, effects):
        nonlocal decided
        for e in effects:
            t = type(e)
            if t is Broadcast:
                msg = e.msg
                q.extend((d, msg) for d in ids if d != src)
            elif t is Send:
                q.append((e.peer, e.msg))
            elif t is Decided:
                decided += 1

    t0, c0 = time.perf_counter(), time.process_time()
    for k in range(decisions):
        value = b"answer-%d" % k
        for m in ids:
            emit(m, reps[m].handle(Request(value)))
        while q:
            dst, msg = q.popleft()
            delivered += 1
            emit(dst, reps[dst].handle(Receive(msg)))
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    assert decided == n * decisions, f"only {decided} of {n * decisions} decisions"
    return {"decisions_per_s": round(decisions / cpu, 1),
            "wall_decisions_per_s": round(decisions / dt, 1),
            "messages_per_decision": round(delivered / decisions, 1),
            "messages_per_decision_over_n2": round(delivered / decisions / n**2, 3),
            "decisions": decisions, "seconds": round(dt, 3)}


def pbft_one_shot(rounds: int) -> dict:
    """The daemon's use: a fresh 4-member Replica group per query (seq_max=1)."""
    ids = ["a", "b", "c", "d"]
    weights = {m: 2500 for m in ids}
    c0 = time.process_time()
    msgs = 0
    for k in range(rounds):
        reps = {m: Replica(m, weights, seq_max=1, unauthenticated=True) for m in ids}
        q: deque = deque()
        for m in ids:
            for e in reps[m].handle(Request(b"chosen answer %d" % k)):
                if type(e) is Broadcast:
                    q.extend((d, e.msg) for d in ids if d != m)
        while q:
            dst, msg = q.popleft()
            msgs += 1
            for e in reps[dst].handle(Receive(msg)):
                if type(e) is Broadcast:
                    q.extend((d, e.msg) for d in ids if d != dst)
        assert all(r.decided_value(1) == b"chosen answer %d" % k for r in reps.values())
    dt = time.process_time() - c0
    return {"members": 4, "cpu_ms_per_round_all_members": round(1000 * dt / rounds, 4),
            "messages_per_round": msgs / rounds}


def four_regular(n: int, seed: int):
    """Union of two random Hamiltonian cycles: connected, 4-regular up to rare repeats."""
    rng = np.random.default_rng(seed)
    rows, cols = [], []
    for _ in range(2):
        p = rng.permutation(n)
        rows += [p, np.roll(p, -1)]
        cols += [np.roll(p, -1), p]
    r, c = np.concatenate(rows), np.concatenate(cols)
    a = sp.csr_array((np.ones(r.size), (r, c)), shape=(n, n))
    a.data[:] = 1.0
    return a


def averaging(n: int, dim: int, seed: int, dtype) -> dict:
    rng = np.random.default_rng(seed)
    a = four_regular(n, seed)
    x = normalise(rng.normal(size=(n, dim)).astype(np.float64)).astype(dtype)
    t0 = time.perf_counter()
    res = average_graph(a, x, alpha=0.5, eps=1e-3, rounds_max=10_000, dtype=dtype,
                        validate=False)
    dt = time.perf_counter() - t0
    return {"nodes": n, "dim": dim, "rounds_to_eps_1e-3": res.rounds,
            "converged": bool(res.converged), "seconds": round(dt, 3),
            "ms_per_round": round(1000 * dt / max(1, res.rounds), 3),
            "dtype": np.dtype(dtype).name}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller runs (CI smoke)")
    ap.add_argument("--huge", action="store_true", help="also average 1e6 nodes x 64 dims")
    ap.add_argument("--only", choices=("pbft", "averaging"),
                    help="run only the PBFT or only the averaging part")
    ap.add_argument("--repeat", type=int, default=1, metavar="N",
                    help="run each PBFT measurement N times and keep the best CPU figure "
                         "(filters other processes' interference on a shared machine; 1)")
    args = ap.parse_args(argv)
    if args.repeat < 1:
        ap.error("--repeat must be >= 1")
    counts = {4: 2000, 16: 300, 64: 30} if not args.quick else {4: 300, 16: 30, 64: 3}
    out: dict = {"pbft": {}, "averaging": {}}
    for n, k in counts.items() if args.only != "averaging" else ():
        r = max((pbft_throughput(n, k) for _ in range(args.repeat)),
                key=lambda r: r["decisions_per_s"])
        out["pbft"][str(n)] = r
        print(f"pbft N={n}: {r['decisions_per_s']} decisions/s, "
              f"{r['messages_per_decision']} messages/decision", flush=True)
    if args.only != "averaging":
        out["pbft_one_shot_round"] = min(
            (pbft_one_shot(300 if not args.quick else 50) for _ in range(args.repeat)),
            key=lambda r: r["cpu_ms_per_round_all_members"])
        print(f"one-shot 4-member round: {out['pbft_one_shot_round']}", flush=True)
    sizes = [1_000, 10_000, 100_000] if not args.quick else [1_000]
    if args.huge:
        sizes.append(1_000_000)
    if args.only == "pbft":
        sizes = []
    for n in sizes:
        r = averaging(n, 64, seed=n, dtype=np.float32 if n >= 100_000 else np.float64)
        out["averaging"][str(n)] = r
        print(f"averaging n={n}: {r['rounds_to_eps_1e-3']} rounds, {r['ms_per_round']} ms/round",
              flush=True)
    if args.only != "averaging":
        out["target_n4_decisions_per_s"] = 2000
        out["target_met"] = out["pbft"]["4"]["decisions_per_s"] >= 2000
    print(json.dumps(out))


if __name__ == "__main__":
    main()
