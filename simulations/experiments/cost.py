"""Experiment ``cost``: messages and bytes per query vs N and degree, production protocol.

Runs :func:`simulations.mesh.run_mesh` (every node a ``p2pmoa.protocol.PeerProtocol``) and
splits the engine's hop counters into gossip (the flooded ``QueryAnnounce``) and direct streams
(proposals, acks, round start, PBFT / averaging / vote messages, decision).

* Gossip vs N and degree ``k``: flooding with dedup costs every node ``deg - 1`` forwards, so
  ``N(k-1) + 1`` hops per query on a k-regular graph -- O(N k), drawn on the plot.
* Round cost vs committee size ``m`` (originator + proposers): PBFT is all-to-all, O(m**2)
  messages per query; score voting is O(m); averaging O(m * rounds) on the committee's
  complete graph. Slopes are fitted on log-log axes.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

from simulations.errors import ExperimentError, parse_list
from simulations.mesh import MeshSpec, run_mesh
from simulations.network import TopologySpec, build_topology, topology_report
from simulations.report import (new_figure, run_sweep, save_figure, task_seed, write_csv,
                                write_summary)

NAME = "cost"
DESCRIPTION = ("Messages and bytes per query of the production peer protocol vs N and degree k "
               "(gossip flood O(N*k)) and vs committee size for PBFT (O(m^2)), averaging and voting.")


def trial(task: dict) -> dict:
    g = build_topology(TopologySpec(kind="regular", n=task["n"], degree=task["k"]), task["seed"])
    spec = MeshSpec(queries=task["queries"], method=task["method"], proposers=task["proposers"],
                    oversample=1.5, alpha_s=0.2, horizon_s=60.0, query_interval_s=5.0)
    res = run_mesh(g, spec, task["seed"])
    st = res.stats
    q = task["queries"]
    return {"part": task["part"], "n": task["n"], "k": task["k"], "method": task["method"],
            "committee": task["proposers"] + 1, "seed": task["seed"], "queries": q,
            "delivered": sum(r["delivered"] for r in res.rows),
            "gossip_hops_per_query": st.gossip_hops / q, "broadcasts_per_query": st.broadcasts / q,
            "gossip_hops_per_broadcast": st.gossip_hops / max(1, st.broadcasts), "gossip_bytes_per_query": st.gossip_bytes / q,
            "direct_msgs_per_query": (st.hops_sent - st.gossip_hops) / q,
            "direct_bytes_per_query": (st.bytes_sent - st.gossip_bytes) / q,
            "bytes_per_query": st.bytes_sent / q, "flood_formula": task["n"] * (task["k"] - 1) + 1}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--n-values", default="50,100,200,400,800", help="N for the gossip sweep")
    p.add_argument("--k-values", default="3,4,6,8", help="degrees for the gossip sweep (at N=200)")
    p.add_argument("--committees", default="4,8,12,16,24", help="committee sizes m for the round sweep")
    p.add_argument("--queries", type=int, default=4, help="queries per run (default 4)")
    p.add_argument("--trials", type=int, default=1, help="seeds per point (default 1)")


def build_tasks(args: argparse.Namespace) -> list[dict]:
    ns = parse_list(args.n_values, "n-values", 10, 5000, int)
    ks = parse_list(args.k_values, "k-values", 2, 50, int)
    ms = parse_list(args.committees, "committees", 2, 32, int)
    if args.queries < 1 or args.trials < 1:
        raise ExperimentError("--queries and --trials must be >= 1")
    tasks = []
    base = {"queries": args.queries}
    for t in range(args.trials):
        for n in ns:
            tasks.append({**base, "part": "gossip_n", "n": n, "k": 4, "method": "vote", "proposers": 4,
                          "seed": task_seed(args.seed, "n", n, t)})
        for k in ks:
            tasks.append({**base, "part": "gossip_k", "n": 200, "k": k if (200 * k) % 2 == 0 else k + 1,
                          "method": "vote", "proposers": 4, "seed": task_seed(args.seed, "k", k, t)})
        for m in ms:
            for method in ("pbft", "averaging", "vote"):
                tasks.append({**base, "part": "committee", "n": 100, "k": 6, "method": method,
                              "proposers": m - 1, "seed": task_seed(args.seed, "m", m, method, t)})
    return tasks


def _slope(xs, ys) -> float:
    xs, ys = np.log(np.asarray(xs, float)), np.log(np.asarray(ys, float))
    return float(np.polyfit(xs, ys, 1)[0]) if len(xs) > 1 else float("nan")


def run(args: argparse.Namespace, out: Path) -> dict:
    rows = run_sweep(trial, build_tasks(args), workers=args.workers, desc="cost", progress=args.progress)
    write_csv(out / "cost.csv", rows)
    files = ["cost.csv"]
    gn = sorted((r for r in rows if r["part"] == "gossip_n"), key=lambda r: r["n"])
    gk = sorted((r for r in rows if r["part"] == "gossip_k"), key=lambda r: r["k"])
    fig, ax = new_figure("Gossip flood cost per broadcast (k-regular)", "N (k=4)  /  k x 50 (N=200)",
                         "hops per broadcast")
    ax.plot([r["n"] for r in gn], [r["gossip_hops_per_broadcast"] for r in gn], "o", label="measured, vs N (k=4)")
    ax.plot([r["n"] for r in gn], [r["flood_formula"] for r in gn], "--", label="N(k-1)+1")
    ax.plot([50 * r["k"] for r in gk], [r["gossip_hops_per_broadcast"] for r in gk], "s", label="measured, vs k (N=200)")
    ax.plot([50 * r["k"] for r in gk], [r["flood_formula"] for r in gk], ":", label="N(k-1)+1, vs k")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    save_figure(fig, out / "cost_gossip.png")
    files.append("cost_gossip.png")
    cm = [r for r in rows if r["part"] == "committee"]
    fig, ax = new_figure("Direct messages per query vs committee size (N=100)", "committee size m",
                         "direct messages per query")
    slopes = {}
    for method in ("pbft", "averaging", "vote"):
        rs = sorted((r for r in cm if r["method"] == method), key=lambda r: r["committee"])
        xs = [r["committee"] for r in rs]
        ys = [r["direct_msgs_per_query"] for r in rs]
        slopes[method] = _slope(xs, ys)
        ax.plot(xs, ys, marker="o", label=f"{method} (slope {slopes[method]:.2f})")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    save_figure(fig, out / "cost_committee.png")
    files.append("cost_committee.png")
    ratio = [r["gossip_hops_per_broadcast"] / r["flood_formula"] for r in gn + gk]
    headline = {
        "gossip_hops_over_formula_min": min(ratio), "gossip_hops_over_formula_max": max(ratio),
        "gossip_slope_vs_n": _slope([r["n"] for r in gn], [r["gossip_hops_per_broadcast"] for r in gn]),
        "broadcasts_per_query_mean": sum(r["broadcasts_per_query"] for r in rows) / len(rows),
        "pbft_slope_vs_committee": slopes["pbft"], "averaging_slope_vs_committee": slopes["averaging"],
        "vote_slope_vs_committee": slopes["vote"],
        "delivered_share": sum(r["delivered"] for r in rows) / sum(r["queries"] for r in rows),
    }
    biggest = max(gn, key=lambda r: r["n"]) if gn else None
    headline["bytes_per_query_largest_n"] = biggest["bytes_per_query"] if biggest else float("nan")
    findings = [
        f"Gossip hops per broadcast are {headline['gossip_hops_over_formula_min']:.3f}-{headline['gossip_hops_over_formula_max']:.3f} "
        f"x N(k-1)+1 (log-log slope vs N {headline['gossip_slope_vs_n']:.2f}): O(N k). The protocol made "
        f"{headline['broadcasts_per_query_mean']:.2f} broadcasts per query on average (it re-announces a query "
        "that collected too few proposals).",
        f"Direct messages per query grow with committee size m with log-log slope {slopes['pbft']:.2f} for PBFT (O(m^2)), "
        f"{slopes['averaging']:.2f} for averaging and {slopes['vote']:.2f} for score voting.",
        f"{headline['delivered_share']:.0%} of the queries were delivered.",
    ]
    params = {k: getattr(args, k) for k in ("n_values", "k_values", "committees", "queries", "trials", "seed")}
    topo = topology_report(build_topology(TopologySpec(kind="regular", n=biggest["n"], degree=4), biggest["seed"])) \
        if biggest else None
    write_summary(out, NAME, description=__doc__.split("\n\n")[1], params=params, headline=headline,
                  findings=findings, files=files, topology=topo.as_dict() if topo else None)
    return headline
