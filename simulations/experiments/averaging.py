"""Experiment ``averaging``: embedding-averaging consensus vs spectral gap, and under poisoning.

Every node starts from the embedding of its own answer (``SyntheticAgent``: error rate
``--eps-node``, embeddings consistent with answers) and applies the averaging rule
``r_i <- (1 - a) r_i + a * rbar_i`` synchronously on the whole graph, by calling the production
``consensus.averaging.average_graph`` (Byzantine nodes are its ``fixed`` stubborn nodes).

Part 1 -- rounds vs spectral gap. For many topologies (random regular, Erdos-Renyi,
Watts-Strogatz, Barabasi-Albert, random geometric, complete) the rounds needed until
``max_i ||r_i(t+1) - r_i(t)|| < eps`` are plotted against the spectral gap ``lambda_2`` of the
normalised Laplacian, with the linear-algebra prediction: the lazy walk contracts disagreement by
``1 - a * gap`` per round, so rounds ~ ``ln(1/eps) / -ln(1 - a * gap)``.

Part 2 -- plain vs robust under embedding poisoning. A Byzantine share (placement random,
highest-degree or one region) holds a stubborn poisoned vector: ``far`` (opposite the honest
mean) or ``near`` ("a little is enough": one standard deviation off the honest mean in every
coordinate). Aggregators: plain mean, and coordinate-wise trimmed mean with ``F = 1, 2, 3``
of the neighbours' vectors (``trim_fraction = F/k``; W-MSR-style, LeBlanc et al.: safe when the
graph is (2F+1)-robust and each node has at most ``F`` Byzantine neighbours), coordinate-wise
median, and (``--geometric-median``, slower) the geometric median. Measured: distance of the
honest nodes' final mean from the honest initial mean, and whether they converged.
"""
from __future__ import annotations

import argparse
import math
import random
from pathlib import Path

import networkx as nx
import numpy as np

from simulations.agents import SyntheticAgent
from simulations.errors import ExperimentError
from simulations.faults import place
from simulations.network import TopologySpec, build_topology, topology_report
from simulations.report import (new_figure, run_sweep, save_figure, task_seed, write_csv,
                                write_summary)
from simulations.vector import poison_vectors

NAME = "averaging"
DESCRIPTION = ("Embedding-averaging consensus: rounds to converge vs the topology's spectral gap "
               "(many topologies), and plain vs robust (trimmed-mean) averaging under embedding "
               "poisoning (far / near the honest centre) vs Byzantine share and placement.")

TOPOLOGIES = (
    ("regular", {"degree": 3}), ("regular", {"degree": 4}), ("regular", {"degree": 8}),
    ("erdos_renyi", {"p": 0.03}), ("erdos_renyi", {"p": 0.1}),
    ("watts_strogatz", {"degree": 4, "p": 0.01}), ("watts_strogatz", {"degree": 4, "p": 0.1}),
    ("watts_strogatz", {"degree": 4, "p": 0.5}),
    ("barabasi_albert", {"degree": 1}), ("barabasi_albert", {"degree": 3}),
    ("geometric", {"radius": 0.15}), ("geometric", {"radius": 0.25}),
    ("complete", {}),
)


AGGS = ("mean", "trim1", "trim2", "trim3", "median")


def initial_vectors(n: int, dim: int, eps_node: float, seed: int) -> np.ndarray:
    """Embeddings of the nodes' answers to one synthetic question (float64, L2-normalised)."""
    agent = SyntheticAgent(eps_node, dim=dim, seed=seed, noise=0.2)
    q = f"question-{seed}"
    texts = [agent.candidate_text(q, agent.answer_index(v, q)) for v in range(n)]
    return np.stack([agent.embed_texts(v, [t])[0] for v, t in enumerate(texts)]).astype(np.float64)


def gap_trial(task: dict) -> dict:
    spec = TopologySpec(kind=task["kind"], n=task["n"], **task["params"])
    g = build_topology(spec, task["seed"])
    rep = topology_report(g)
    x0 = initial_vectors(g.number_of_nodes(), task["dim"], task["eps_node"], task["seed"])
    from consensus.averaging import average_graph

    adj = nx.to_scipy_sparse_array(g, nodelist=range(g.number_of_nodes()), format="csr")
    res = average_graph(adj, x0, alpha=task["a"], eps=task["eps"], rounds_max=task["rounds_max"])
    drift = float(np.linalg.norm(res.vectors.mean(axis=0) - x0.mean(axis=0)))
    gap = rep.spectral_gap
    predicted = math.log(1 / task["eps"]) / -math.log(1 - task["a"] * gap) if 0 < task["a"] * gap < 1 else float("nan")
    label = task["kind"] + "(" + ",".join(f"{k}={v}" for k, v in task["params"].items()) + ")"
    return {"part": "gap", "topology": label, "n": rep.n, "seed": task["seed"], "spectral_gap": gap,
            "diameter": rep.diameter, "r_robust_lower": rep.r_robust_lower, "r_robust_upper": rep.r_robust_upper,
            "rounds": res.rounds, "converged": res.converged, "predicted_rounds": predicted,
            "mean_drift": drift}


def poison_trial(task: dict) -> dict:
    spec = TopologySpec(kind=task["kind"], n=task["n"], **task["params"])
    g = build_topology(spec, task["seed"])
    n = g.number_of_nodes()
    x0 = initial_vectors(n, task["dim"], task["eps_node"], task["seed"])
    byz = place(g, task["share"], task["placement"], random.Random(task["seed"]))
    mask = np.zeros(n, dtype=bool)
    mask[byz] = True
    honest = x0[~mask]
    x = x0.copy()
    if byz:
        x[mask] = poison_vectors(task["mode"], honest, np.random.default_rng(task["seed"]))
    from consensus.averaging import average_graph

    adj = nx.to_scipy_sparse_array(g, nodelist=range(n), format="csr")
    agg = task["aggregator"]
    opts: dict = {}
    if agg.startswith("trim"):
        opts = {"aggregator": "trimmed_mean", "trim_fraction": int(agg[4:]) / task["params"]["degree"]}
    elif agg != "mean":
        opts = {"aggregator": agg}
    res = average_graph(adj, x, alpha=task["a"], eps=task["eps"], rounds_max=task["rounds_max"],
                        fixed=mask, **opts)
    final = res.vectors[~mask]
    distance = float(np.linalg.norm(final.mean(axis=0) - honest.mean(axis=0)))
    dev = final - final.mean(axis=0)
    spread = float(np.sqrt(np.einsum("ij,ij->i", dev, dev).max()))
    max_byz_nbrs = max((sum(1 for u in g.neighbors(v) if mask[u]) for v in range(n) if not mask[v]), default=0)
    return {"part": "poison", "mode": task["mode"], "placement": task["placement"], "share": task["share"],
            "byzantine": len(byz), "aggregator": agg,
            "seed": task["seed"], "distance": distance, "spread": spread,
            "rounds": res.rounds, "converged": res.converged, "max_byz_neighbours": max_byz_nbrs}


def _task(t: dict) -> dict:
    return gap_trial(t) if t["part"] == "gap" else poison_trial(t)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--n", type=int, default=200, help="nodes (default 200)")
    p.add_argument("--dim", type=int, default=32, help="embedding dimension (default 32)")
    p.add_argument("--a", type=float, default=0.5, help="averaging step a (default 0.5)")
    p.add_argument("--eps", type=float, default=1e-3, help="convergence tolerance (default 1e-3)")
    p.add_argument("--eps-node", type=float, default=0.3, help="per-node answer error rate (default 0.3)")
    p.add_argument("--trials", type=int, default=2, help="seeds per point (default 2)")
    p.add_argument("--shares", default="0,0.05,0.1,0.2,0.3,0.4", help="Byzantine shares of part 2")
    p.add_argument("--poison-degree", type=int, default=8, help="degree of the random regular graph of part 2 (default 8)")
    p.add_argument("--rounds-max", type=int, default=400, help="round limit of part 1 (default 400)")
    p.add_argument("--poison-n", type=int, default=100, help="nodes of part 2 (default 100)")
    p.add_argument("--poison-rounds-max", type=int, default=100, help="round limit of part 2 (default 100)")
    p.add_argument("--geometric-median", action="store_true", help="also run the (slow) geometric median")
    p.add_argument("--vector-n", type=int, default=0,
                   help="also run the vectorised mode on a random 4-regular graph of this many nodes "
                        "(64 dims, 1%% far poisoners, plain vs trimmed mean; e.g. 1000000)")


def build_tasks(args: argparse.Namespace) -> list[dict]:
    if not (10 <= args.n <= 20_000):
        raise ExperimentError("--n must be in [10, 20000]")
    if not (2 <= args.dim <= 1024) or not (0 < args.a <= 1) or not (0 < args.eps < 1) or args.trials < 1:
        raise ExperimentError("need 2 <= --dim <= 1024, 0 < --a <= 1, 0 < --eps < 1, --trials >= 1")
    try:
        shares = [float(x) for x in args.shares.split(",") if x.strip()]
    except ValueError as exc:
        raise ExperimentError("--shares must be a comma list of numbers") from exc
    if any(not (0 <= s < 1) for s in shares):
        raise ExperimentError("--shares must be in [0, 1)")
    base = {"n": args.n, "dim": args.dim, "a": args.a, "eps": args.eps, "eps_node": args.eps_node,
            "rounds_max": args.rounds_max}
    tasks = []
    for kind, params in TOPOLOGIES:
        for t in range(args.trials):
            tasks.append({**base, "part": "gap", "kind": kind, "params": params,
                          "seed": task_seed(args.seed, "gap", kind, sorted(params.items()), t)})
    if not (4 <= args.poison_degree < args.poison_n) or (args.poison_degree * args.poison_n) % 2:
        raise ExperimentError("--poison-degree must be in [4, --poison-n) with degree*n even")
    aggs = list(AGGS) + (["geometric_median"] if args.geometric_median else [])
    for mode in ("far", "near"):
        for placement in ("random", "highest_degree", "region"):
            for share in shares:
                for agg in aggs:
                    for t in range(args.trials):
                        tasks.append({**base, "part": "poison", "kind": "regular", "n": args.poison_n,
                                      "rounds_max": args.poison_rounds_max,
                                      "params": {"degree": args.poison_degree}, "mode": mode,
                                      "placement": placement, "share": share, "aggregator": agg,
                                      "seed": task_seed(args.seed, "poison", t)})
    return tasks


def vector_part(n: int, seed: int) -> list[dict]:
    """The vectorised mode (simulations.vector) at scale: plain vs trimmed mean F=1, 1% far
    poisoners placed at random, 64-dim vectors around a common centre, a = 0.9, eps = 1e-3."""
    from simulations.faults import place_mask
    from simulations.network import random_regular_sparse
    from simulations.vector import neighbour_table, run_averaging

    nbrs = neighbour_table(random_regular_sparse(n, 4, seed))
    gen = np.random.default_rng(seed)
    centre = gen.standard_normal(64)
    centre /= np.linalg.norm(centre)
    x0 = gen.standard_normal((n, 64), dtype=np.float32)
    x0 *= np.float32(0.5 / 8)
    x0 += centre.astype(np.float32)
    x0 /= np.linalg.norm(x0, axis=1, keepdims=True)
    rows = []
    for share in (0.0, 0.01):
        byz = place_mask(n, share, "random", gen)
        poison = poison_vectors("far", x0[:10_000][~byz[:10_000]], gen)
        for trim in (0, 1):
            _, res = run_averaging(nbrs, x0, a=0.9, eps=1e-3, rounds_max=300, byzantine=byz if byz.any() else None,
                                   poison=poison, trim=trim)
            rows.append({"n": n, "share": share, "aggregator": "mean" if trim == 0 else "trim1",
                         "rounds": res.rounds, "converged": res.converged,
                         "distance": res.honest_mean_distance, "spread": res.spread})
    return rows


def run(args: argparse.Namespace, out: Path) -> dict:
    tasks = build_tasks(args)
    rows = run_sweep(_task, tasks, workers=args.workers, desc="averaging", progress=args.progress)
    gap_rows = [r for r in rows if r["part"] == "gap"]
    poison_rows = [r for r in rows if r["part"] == "poison"]
    write_csv(out / "averaging_gap.csv", gap_rows)
    write_csv(out / "averaging_poison.csv", poison_rows)
    files = ["averaging_gap.csv", "averaging_poison.csv"]

    fig, ax = new_figure(f"Averaging rounds vs spectral gap (n={args.n}, a={args.a}, eps={args.eps})",
                         "spectral gap (lambda_2 of the normalised Laplacian)", "rounds to converge")
    for label in sorted({r["topology"] for r in gap_rows}):
        rs = [r for r in gap_rows if r["topology"] == label]
        ax.scatter([r["spectral_gap"] for r in rs], [r["rounds"] for r in rs], s=14, label=label)
    gs = np.logspace(np.log10(max(1e-4, min(r["spectral_gap"] for r in gap_rows))), 0, 50)
    ax.plot(gs, [math.log(1 / args.eps) / -math.log(1 - args.a * g) for g in gs], "k--", lw=1,
            label="ln(1/eps) / -ln(1 - a*gap)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.legend(fontsize=6, ncol=2)
    save_figure(fig, out / "averaging_gap.png")
    files.append("averaging_gap.png")

    for mode in ("far", "near"):
        fig, axes = None, None
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 3, figsize=(12, 4), sharey=True)
        for ax, placement in zip(axes, ("random", "highest_degree", "region")):
            for agg in sorted({r["aggregator"] for r in poison_rows}):
                rs = [r for r in poison_rows if r["mode"] == mode and r["placement"] == placement and r["aggregator"] == agg]
                shares = sorted({r["share"] for r in rs})
                ys = [float(np.mean([r["distance"] for r in rs if r["share"] == s])) for s in shares]
                ax.plot(shares, ys, marker="o", ms=3, label=agg)
            ax.set_title(f"poison '{mode}', placement {placement}", fontsize=9)
            ax.set_xlabel("Byzantine share")
            ax.set_yscale("symlog", linthresh=1e-3)
            ax.grid(True, alpha=0.3)
        axes[0].set_ylabel("||honest final mean - honest initial mean||")
        axes[0].legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / f"averaging_poison_{mode}.png", dpi=110, metadata={"Software": None})
        plt.close(fig)
        files.append(f"averaging_poison_{mode}.png")

    conv = [r for r in gap_rows if r["converged"]]
    inv = np.array([1 / r["spectral_gap"] for r in conv if r["spectral_gap"] > 0])
    rounds = np.array([r["rounds"] for r in conv if r["spectral_gap"] > 0], dtype=float)
    corr = float(np.corrcoef(np.log(inv), np.log(rounds))[0, 1]) if len(inv) > 2 else float("nan")
    ratio = [r["rounds"] / r["predicted_rounds"] for r in conv if r["predicted_rounds"] == r["predicted_rounds"]]

    def dist(mode, agg, share_max, placement="random"):
        rs = [r["distance"] for r in poison_rows if r["mode"] == mode and r["aggregator"] == agg
              and r["placement"] == placement and 0 < r["share"] <= share_max]
        return max(rs) if rs else float("nan")

    headline = {
        "gap_runs": len(gap_rows), "gap_runs_converged": len(conv),
        "corr_log_rounds_log_inverse_gap": corr,
        "rounds_over_prediction_median": float(np.median(ratio)) if ratio else float("nan"),
        "far_mean_distance_at_10pct": dist("far", "mean", 0.1),
        "far_trim1_distance_at_10pct": dist("far", "trim1", 0.1),
        "far_trim3_distance_at_10pct": dist("far", "trim3", 0.1),
        "near_mean_distance_at_10pct": dist("near", "mean", 0.1),
        "near_trim3_distance_at_10pct": dist("near", "trim3", 0.1),
        "far_median_distance_at_10pct": dist("far", "median", 0.1),
        "far_trim3_distance_at_30pct": dist("far", "trim3", 0.3),
        "far_trim3_distance_at_10pct_region": dist("far", "trim3", 0.1, "region"),
        "far_trim3_distance_at_10pct_hubs": dist("far", "trim3", 0.1, "highest_degree"),
    }
    reg = [r for r in poison_rows if r["placement"] == "region" and 0 < r["share"] <= 0.1]
    rnd = [r for r in poison_rows if r["placement"] == "random" and 0 < r["share"] <= 0.1]
    headline["max_byz_neighbours_region_10pct"] = max((r["max_byz_neighbours"] for r in reg), default=0)
    headline["max_byz_neighbours_random_10pct"] = max((r["max_byz_neighbours"] for r in rnd), default=0)
    findings = [
        f"{len(conv)}/{len(gap_rows)} runs converged on connected graphs; log(rounds) vs log(1/gap) correlation "
        f"{corr:.3f}; measured rounds / ln(1/eps)/-ln(1-a*gap) has median {headline['rounds_over_prediction_median']:.2f} "
        "(the prediction holds up to a constant: the stopping rule measures the per-round change, not the distance).",
        f"Far poisoning, random placement, share <= 10%: plain mean drifts {headline['far_mean_distance_at_10pct']:.3f}, "
        f"trimmed mean F=1 {headline['far_trim1_distance_at_10pct']:.3f}, F=3 {headline['far_trim3_distance_at_10pct']:.3f}.",
        f"Near-centre poisoning at <= 10%: plain {headline['near_mean_distance_at_10pct']:.3f}, "
        f"F=3 {headline['near_trim3_distance_at_10pct']:.3f}; at 30% even F=3 drifts {headline['far_trim3_distance_at_30pct']:.3f} (far).",
        f"Placement at <= 10%: an honest node sees up to {headline['max_byz_neighbours_random_10pct']} Byzantine neighbours "
        f"with random placement and {headline['max_byz_neighbours_region_10pct']} with region placement; F=3 drift is "
        f"{headline['far_trim3_distance_at_10pct']:.3f} (random), {headline['far_trim3_distance_at_10pct_region']:.3f} (region), "
        f"{headline['far_trim3_distance_at_10pct_hubs']:.3f} (highest degree).",
    ]
    params = {k: getattr(args, k) for k in ("n", "dim", "a", "eps", "eps_node", "trials", "shares",
                                             "poison_n", "poison_degree", "rounds_max", "poison_rounds_max",
                                             "geometric_median", "vector_n", "seed")}
    if args.vector_n:
        if not (100 <= args.vector_n <= 2_000_000):
            raise ExperimentError("--vector-n must be in [100, 2000000]")
        vrows = vector_part(args.vector_n, args.seed)
        write_csv(out / "averaging_vector.csv", vrows)
        files.append("averaging_vector.csv")
        for r in vrows:
            headline[f"vector_{r['aggregator']}_share{r['share']}_rounds"] = r["rounds"]
            headline[f"vector_{r['aggregator']}_share{r['share']}_distance"] = r["distance"]
        findings.append(f"Vectorised mode, {args.vector_n} nodes x 64 dims, random 4-regular: "
                        + "; ".join(f"{r['aggregator']} with {r['share']:.0%} poisoners: {r['rounds']} rounds, "
                                    f"converged={r['converged']}, drift {r['distance']:.4f}" for r in vrows) + ".")
    part2 = next(t for t in tasks if t["part"] == "poison")
    topo = topology_report(build_topology(TopologySpec(kind="regular", n=part2["n"], **part2["params"]), part2["seed"]))
    write_summary(out, NAME, description=DESCRIPTION, params=params, headline=headline, findings=findings, files=files,
                  topology={"part 2 graph": "", **topo.as_dict(), "part 1": "per topology in averaging_gap.csv"})
    return headline
