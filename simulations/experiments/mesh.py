"""Experiment ``mesh``: the production peer protocol on a large simulated mesh with liars.

Every node runs ``p2pmoa.protocol.PeerProtocol`` (see :mod:`simulations.mesh`); a query is
gossiped over the graph, a sample of about ``2 x proposers`` nodes answer with their
(synthetic) model, the originator forms a committee and the committee agrees by the chosen
method. A share of the nodes is Byzantine:

* ``colluding_wrong`` -- their models all give the same wrong answer (honest protocol);
* ``garbage`` -- the protocol's own fault mode: garbage proposals, random votes, a PBFT
  primary proposing a value outside the bundle;
* ``silent`` -- they never send anything.

Measured per (method, behaviour, Byzantine share): share of queries delivered, share answered
correctly (the synthetic correct candidate), mean latency. Honest nodes err independently with
``--eps-node``. ``--scale`` adds the headline run: 1,000 nodes x 100 queries on a random
4-regular graph (gossip + averaging), timed.
"""
from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

from simulations.errors import ExperimentError
from simulations.faults import FaultSpec
from simulations.mesh import MeshSpec, run_mesh
from simulations.network import LinkModel, TopologySpec, build_topology, topology_report
from simulations.report import (new_figure, run_sweep, save_figure, task_seed, write_csv,
                                write_summary)

NAME = "mesh"
DESCRIPTION = ("The production peer protocol (gossip, proposals, PBFT / averaging / vote rounds) on a "
               "simulated mesh with a share of Byzantine nodes (colluding wrong answers, garbage, "
               "silent): delivered and correct answers vs Byzantine share; --scale times 1,000 nodes x "
               "100 queries.")


def topology_of(task: dict) -> TopologySpec:
    return TopologySpec(kind=task["topology"], n=task["n"], degree=task["k"], p=task["p"],
                        radius=task["radius"], path=task["graph_file"])


def trial(task: dict) -> dict:
    g = build_topology(topology_of(task), task["seed"])
    spec = MeshSpec(queries=task["queries"], method=task["method"], proposers=task["proposers"],
                    eps_node=task["eps_node"], link=LinkModel(loss_p=task["loss"]),
                    byzantine=FaultSpec(task["behaviour"], task["share"], "random"),
                    alpha_s=0.3, query_interval_s=2.0, horizon_s=60.0)
    t0 = time.perf_counter()
    res = run_mesh(g, spec, task["seed"])
    wall = time.perf_counter() - t0
    rows = res.rows
    lat = [r["latency_s"] for r in rows if r["delivered"]]
    return {"method": task["method"], "behaviour": task["behaviour"], "share": task["share"],
            "n": task["n"], "seed": task["seed"], "queries": len(rows),
            "delivered": sum(r["delivered"] for r in rows) / len(rows),
            "correct": sum(r["correct"] for r in rows) / len(rows),
            "latency_s": sum(lat) / len(lat) if lat else float("nan"),
            "events": res.stats.events, "wall_s_unreported": wall}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--n", type=int, default=150, help="nodes (default 150)")
    p.add_argument("--topology", default="regular",
                   help="regular, erdos_renyi, watts_strogatz, barabasi_albert, geometric, complete, file")
    p.add_argument("--graph-file", default=None, help="GraphML or edge-list file for --topology file")
    p.add_argument("--k", type=int, default=4, help="degree / neighbours / BA m (default 4)")
    p.add_argument("--p", type=float, default=0.1, help="Erdos-Renyi p or Watts-Strogatz rewiring (default 0.1)")
    p.add_argument("--radius", type=float, default=0.2, help="random geometric radius (default 0.2)")
    p.add_argument("--queries", type=int, default=12, help="queries per run (default 12)")
    p.add_argument("--proposers", type=int, default=6, help="proposals per query (default 6)")
    p.add_argument("--eps-node", type=float, default=0.2, help="honest per-node error rate (default 0.2)")
    p.add_argument("--shares", default="0,0.1,0.2,0.3,0.45", help="Byzantine shares")
    p.add_argument("--methods", default="averaging,pbft,vote", help="aggregation methods")
    p.add_argument("--behaviours", default="colluding_wrong,garbage,silent", help="Byzantine behaviours")
    p.add_argument("--loss", type=float, default=0.0, help="per-hop loss (default 0)")
    p.add_argument("--trials", type=int, default=1, help="seeds per point (default 1)")
    p.add_argument("--scale", action="store_true", help="also time 1,000 nodes x 100 queries (gossip + averaging)")


def build_tasks(args: argparse.Namespace) -> list[dict]:
    if args.topology == "file":  # the graph file decides n (the summary reported --n before)
        from simulations.network import load_graph_file
        args.n = load_graph_file(args.graph_file).number_of_nodes()
        if not 10 <= args.n <= 5000:
            raise ExperimentError(f"graph file {args.graph_file} has {args.n} nodes; the mesh "
                                  "experiment needs 10-5000")
    if not (10 <= args.n <= 5000) or args.queries < 1 or args.trials < 1:
        raise ExperimentError("--n in [10, 5000], --queries and --trials >= 1")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    behaviours = [b.strip() for b in args.behaviours.split(",") if b.strip()]
    if any(m not in ("averaging", "pbft", "vote", "aggregate") for m in methods):
        raise ExperimentError("--methods: averaging, pbft, vote, aggregate")
    if any(b not in ("colluding_wrong", "garbage", "silent", "random_answer", "poison_far", "poison_near",
                     "equivocate", "crash_recover", "sybil") for b in behaviours):
        raise ExperimentError(f"unknown behaviour in {behaviours}")
    try:
        shares = [float(x) for x in args.shares.split(",") if x.strip()]
    except ValueError as exc:
        raise ExperimentError("--shares must be numbers") from exc
    if any(not (0 <= s < 1) for s in shares):
        raise ExperimentError("--shares must be in [0, 1)")
    base = {"n": args.n, "k": args.k, "topology": args.topology, "graph_file": args.graph_file, "p": args.p,
            "radius": args.radius, "queries": args.queries, "proposers": args.proposers,
            "eps_node": args.eps_node, "loss": args.loss}
    return [{**base, "method": m, "behaviour": b, "share": s, "seed": task_seed(args.seed, m, b, s, t)}
            for m in methods for b in behaviours for s in shares for t in range(args.trials)]


def scale_run(seed: int) -> dict:
    """1,000 nodes x 100 queries, gossip + averaging, on a random 4-regular graph."""
    g = build_topology(TopologySpec(kind="regular", n=1000, degree=4), seed)
    t0 = time.perf_counter()
    res = run_mesh(g, MeshSpec(queries=100, method="averaging", proposers=8, query_interval_s=1.0), seed)
    wall = time.perf_counter() - t0
    return {"nodes": 1000, "queries": 100, "wall_s": wall, "events": res.stats.events,
            "delivered": sum(r["delivered"] for r in res.rows), "correct": sum(r["correct"] for r in res.rows),
            "hops": res.stats.hops_sent, "bytes": res.stats.bytes_sent}


def run(args: argparse.Namespace, out: Path) -> dict:
    tasks = build_tasks(args)
    topo = topology_report(build_topology(topology_of(tasks[0]), tasks[0]["seed"])).as_dict()
    rows = run_sweep(trial, tasks, workers=args.workers, desc="mesh", progress=args.progress)
    # wall-clock seconds are not deterministic: kept out of the CSV
    write_csv(out / "mesh.csv", rows, columns=[c for c in rows[0] if c != "wall_s_unreported"])
    files = ["mesh.csv"]
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    behaviours = sorted({r["behaviour"] for r in rows})
    fig, axes = plt.subplots(1, len(behaviours), figsize=(4 * len(behaviours), 3.8), sharey=True, squeeze=False)
    for ax, b in zip(axes[0], behaviours):
        for m in sorted({r["method"] for r in rows}):
            rs = [r for r in rows if r["behaviour"] == b and r["method"] == m]
            shares = sorted({r["share"] for r in rs})
            ys = [sum(r["correct"] for r in rs if r["share"] == s) / sum(1 for r in rs if r["share"] == s) for s in shares]
            ax.plot(shares, ys, marker="o", label=m)
        ax.axvline(1 / 3, color="red", ls="--", lw=1)
        ax.set_title(f"Byzantine: {b}", fontsize=9)
        ax.set_xlabel("Byzantine share of nodes")
        ax.set_ylim(-0.05, 1.05)
        ax.grid(True, alpha=0.3)
    axes[0][0].set_ylabel("share of queries answered correctly")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "mesh_correct.png", dpi=110, metadata={"Software": None})
    plt.close(fig)
    files.append("mesh_correct.png")

    def rate(method, behaviour, lo, hi, key="correct"):
        rs = [r[key] for r in rows if r["method"] == method and r["behaviour"] == behaviour and lo <= r["share"] <= hi]
        return sum(rs) / len(rs) if rs else float("nan")

    headline = {"runs": len(rows), "delivered_share": sum(r["delivered"] for r in rows) / len(rows)}
    for m in sorted({r["method"] for r in rows}):
        headline[f"{m}_correct_no_byzantine"] = rate(m, rows[0]["behaviour"], 0, 0)
        for b in behaviours:
            headline[f"{m}_{b}_correct_share_le_0.2"] = rate(m, b, 0.01, 0.2)
    findings = [f"{headline['delivered_share']:.0%} of queries delivered over {len(rows)} runs."]
    for m in sorted({r["method"] for r in rows}):
        findings.append(f"{m}: correct {headline[f'{m}_correct_no_byzantine']:.0%} without Byzantine nodes; with <= 20% Byzantine: "
                        + ", ".join(f"{b} {headline[f'{m}_{b}_correct_share_le_0.2']:.0%}" for b in behaviours) + ".")
    if args.scale:
        sc = scale_run(args.seed)
        (out / "mesh_scale.json").write_text(
            "{" + ", ".join(f'"{k}": {v!r}' for k, v in sc.items() if k != "wall_s") + "}\n")
        files.append("mesh_scale.json")
        headline["scale_1000x100_delivered"] = sc["delivered"]
        headline["scale_1000x100_events"] = sc["events"]
        findings.append(f"Scale: 1,000 nodes x 100 queries (gossip + averaging): {sc['delivered']} delivered, "
                        f"{sc['correct']} correct, {sc['events']} events (wall time is printed on stderr, not "
                        "written to the deterministic files).")
        import sys

        print(f"mesh --scale: 1000 nodes x 100 queries took {sc['wall_s']:.1f} s", file=sys.stderr, flush=True)
    params = {k: getattr(args, k) for k in ("topology", "graph_file", "n", "k", "p", "radius", "queries", "proposers",
                                             "eps_node", "shares", "methods", "behaviours", "loss", "trials", "scale",
                                             "seed")}
    write_summary(out, NAME, description=DESCRIPTION, params=params, headline=headline,
                  findings=findings, files=files, topology={"first run's graph": "", **topo})
    return headline
