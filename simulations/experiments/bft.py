"""Experiment ``bft``: PBFT safety and liveness as Byzantine members cross N = 3f + 1.

Runs the production ``consensus.pbft.Replica`` (one-shot instance, ``seq_max=1``, as the daemon
runs per query) on the discrete-event engine over a complete graph of ``N`` members.

Scenarios (each point repeated ``--trials`` times with independent seeds):

* ``equivocate`` -- the first ``b`` members in sorted order (the primaries of views 0..b-1) are
  :class:`~simulations.machines.SplitBrainPbft` attackers: they propose ``A`` to one half of
  the honest members and ``B`` to the other, and prepare/commit both. Measured: share of runs in
  which two honest members decide different values (safety violation).
* ``silent`` -- ``b`` members say nothing (omission). Measured: share of runs in which every
  honest member decides within the horizon (liveness), and the decision time.
* ``weighted`` -- unequal integer weights (1..10); the attackers are taken heaviest-first until
  their weight share reaches the target. Same measure as ``equivocate``, against the Byzantine
  share of the total weight (threshold 1/3).
* ``equivocate_lossy`` / ``silent_lossy`` -- the two first scenarios with ``--loss`` per hop and a
  partition into two halves from 0 s until ``--heal-s``.

Published facts checked: with ``b < N/3`` (weight share < 1/3) no safety violation and (after
healing) liveness; at ``b >= N/3`` the split-brain attack produces violations and silence
stops progress.
"""
from __future__ import annotations

import argparse
import math
import random
from pathlib import Path

from simulations.engine import Engine
from simulations.errors import ExperimentError
from simulations.machines import PbftMachine, SilentMachine, SplitBrainPbft, pbft_size
from simulations.network import LinkModel, NetworkConditions, Partition
from simulations.report import (new_figure, run_sweep, save_figure, task_seed, write_csv,
                                write_summary)

NAME = "bft"
DESCRIPTION = ("PBFT (consensus.pbft) safety and liveness as the number of Byzantine members "
               "crosses N = 3f+1 (split-brain equivocating primaries, silent members), the "
               "trust-weighted variant as Byzantine weight crosses 1/3, and both under packet "
               "loss and a healing partition.")

N_MAX = 40


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--n-values", default="4,7,10,13", help="group sizes N (comma list; default 4,7,10,13)")
    p.add_argument("--trials", type=int, default=20, help="runs per point (default 20)")
    p.add_argument("--loss", type=float, default=0.05, help="per-hop loss of the lossy scenarios (default 0.05)")
    p.add_argument("--heal-s", type=float, default=3.0, help="partition heals at this virtual time (default 3 s)")
    p.add_argument("--horizon-s", type=float, default=60.0, help="virtual seconds per run (default 60)")
    p.add_argument("--weighted-n", type=int, default=10, help="members of the weighted scenario (default 10)")


def members_of(n: int) -> list[str]:
    return [f"m{i:03d}" for i in range(n)]


def split_honest(honest: list[str], weights: dict[str, int]) -> list[str]:
    """Half A of the honest members, balancing weight (heaviest first to the lighter half)."""
    a: list[str] = []
    wa = wb = 0
    for m in sorted(honest, key=lambda m: (-weights[m], m)):
        if wa <= wb:
            a.append(m)
            wa += weights[m]
        else:
            wb += weights[m]
    return sorted(a)


def trial(task: dict) -> dict:
    """One PBFT run. ``task``: n, byz (list of member ids), mode, weights, loss, heal_s,
    horizon_s, seed. Returns safety/liveness/time/cost figures."""
    n = task["n"]
    members = members_of(n)
    weights = task.get("weights") or {m: 1 for m in members}
    byz = list(task["byz"])
    honest = [m for m in members if m not in byz]
    half_a = split_honest(honest, weights)
    machines = []
    for m in members:
        if m in byz and task["mode"] == "equivocate":
            machines.append(SplitBrainPbft(m, weights, half_a=half_a, byzantine=byz,
                                           value_a=b"answer A", value_b=b"answer B"))
        elif m in byz:
            machines.append(SilentMachine())
        else:
            machines.append(PbftMachine(m, weights))
    import networkx as nx

    g = nx.complete_graph(n)
    link = LinkModel(loss_p=task.get("loss", 0.0))
    parts: tuple = ()
    if task.get("heal_s"):
        grp = frozenset(i for i, m in enumerate(members) if m in half_a or m in byz[: len(byz) // 2])
        parts = (Partition(0.0, task["heal_s"], (grp,)),)
    eng = Engine(g, machines, seed=task["seed"], conditions=NetworkConditions(link, parts),
                 peer_ids=members, size_fn=pbft_size)
    for i, m in enumerate(members):
        eng.inject(0.0, i, b"answer A")
    eng.run(until_s=task["horizon_s"])
    decided: dict[str, bytes] = {}
    t_max = 0.0
    for i, m in enumerate(members):
        if m in byz:
            continue
        for d in machines[i].decisions:
            if d.seq == 1:
                decided[m] = d.value
                t_max = max(t_max, d.at_s)
    values = set(decided.values())
    st = eng.statistics()
    byz_w = sum(weights[m] for m in byz)
    return {"scenario": task["scenario"], "n": n, "byzantine": len(byz),
            "byz_weight_share": byz_w / sum(weights.values()),
            "f_tolerated": (n - 1) // 3, "seed": task["seed"],
            "safety_violation": len(values) > 1, "live": len(decided) == len(honest),
            "honest_decided": len(decided), "decide_time_s": t_max if decided else float("nan"),
            "messages": st.hops_sent, "bytes": st.bytes_sent}


def _weights(n: int, seed: int) -> dict[str, int]:
    r = random.Random(seed)
    return {m: r.randint(1, 10) for m in members_of(n)}


def _heaviest_until(weights: dict[str, int], share: float) -> list[str]:
    total = sum(weights.values())
    out: list[str] = []
    acc = 0
    # the view-0 primary first (the equivocating primary), then heaviest first
    order = [min(weights)] + sorted((m for m in weights if m != min(weights)), key=lambda m: (-weights[m], m))
    for m in order:
        if acc / total >= share:
            break
        out.append(m)
        acc += weights[m]
    return out


def build_tasks(args: argparse.Namespace) -> list[dict]:
    try:
        ns = [int(x) for x in str(args.n_values).split(",") if x.strip()]
    except ValueError:
        raise ExperimentError(f"--n-values must be integers in [4, {N_MAX}], "
                              f"not {args.n_values!r}") from None
    if not ns or any(not (4 <= n <= N_MAX) for n in ns):
        raise ExperimentError(f"--n-values must be integers in [4, {N_MAX}]")
    if args.trials < 1:
        raise ExperimentError("--trials must be >= 1")
    if not (0.0 <= args.loss < 1.0):
        raise ExperimentError("--loss must be in [0, 1)")
    tasks = []
    base = {"horizon_s": args.horizon_s}
    for n in ns:
        members = members_of(n)
        for b in range(0, n // 2 + 1):
            for t in range(args.trials):
                for scen, mode, loss, heal in (("equivocate", "equivocate", 0.0, 0.0),
                                               ("silent", "silent", 0.0, 0.0),
                                               ("equivocate_lossy", "equivocate", args.loss, args.heal_s),
                                               ("silent_lossy", "silent", args.loss, args.heal_s)):
                    tasks.append({**base, "scenario": scen, "mode": mode, "n": n, "byz": members[:b],
                                  "loss": loss, "heal_s": heal,
                                  "seed": task_seed(args.seed, scen, n, b, t)})
    wn = args.weighted_n
    for share_pct in range(0, 55, 5):
        for t in range(args.trials):
            w = _weights(wn, task_seed(args.seed, "weights", t))
            tasks.append({**base, "scenario": "weighted", "mode": "equivocate", "n": wn,
                          "weights": w, "byz": _heaviest_until(w, share_pct / 100), "loss": 0.0,
                          "heal_s": 0.0, "seed": task_seed(args.seed, "weighted", share_pct, t)})
    return tasks


def _agg(rows: list[dict], key) -> dict:
    groups: dict = {}
    for r in rows:
        groups.setdefault(key(r), []).append(r)
    out = {}
    for k, rs in sorted(groups.items()):
        times = [r["decide_time_s"] for r in rs if r["live"]]
        out[k] = {"runs": len(rs), "violation_rate": sum(r["safety_violation"] for r in rs) / len(rs),
                  "live_rate": sum(r["live"] for r in rs) / len(rs),
                  "decide_time_s": sum(times) / len(times) if times else float("nan"),
                  "messages": sum(r["messages"] for r in rs) / len(rs),
                  "byz_weight_share": sum(r["byz_weight_share"] for r in rs) / len(rs)}
    return out


def run(args: argparse.Namespace, out: Path) -> dict:
    tasks = build_tasks(args)
    rows = run_sweep(trial, tasks, workers=args.workers, desc="bft", progress=args.progress, chunksize=8)
    write_csv(out / "bft.csv", rows)
    agg = _agg(rows, lambda r: (r["scenario"], r["n"], r["byzantine"]))
    files = ["bft.csv"]
    # plot 1: safety and liveness vs b/N for each N
    for scen, ylabel, field in (("equivocate", "share of runs with a safety violation", "violation_rate"),
                                ("silent", "share of runs where every honest member decided", "live_rate"),
                                ("equivocate_lossy", "share of runs with a safety violation", "violation_rate"),
                                ("silent_lossy", "share of runs where every honest member decided", "live_rate")):
        fig, ax = new_figure(f"PBFT, scenario '{scen}'", "Byzantine members / N", ylabel)
        for n in sorted({k[1] for k in agg if k[0] == scen}):
            pts = sorted((k[2] / n, v[field]) for k, v in agg.items() if k[0] == scen and k[1] == n)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=f"N={n}")
        ax.axvline(1 / 3, color="red", ls="--", lw=1, label="b = N/3")
        ax.set_ylim(-0.05, 1.05)
        ax.legend(fontsize=8)
        save_figure(fig, out / f"bft_{scen}.png")
        files.append(f"bft_{scen}.png")
    wagg = _agg([r for r in rows if r["scenario"] == "weighted"],
                lambda r: round(r["byz_weight_share"], 2))
    fig, ax = new_figure("Weighted PBFT, split-brain attackers", "Byzantine share of total weight",
                         "share of runs with a safety violation")
    wr = [r for r in rows if r["scenario"] == "weighted"]
    xs = [r["byz_weight_share"] for r in wr]
    ys = [1.0 if r["safety_violation"] else 0.0 for r in wr]
    ax.scatter(xs, ys, s=8, alpha=0.4, label="single runs")
    bins: dict = {}
    for x, y in zip(xs, ys):
        bins.setdefault(math.floor(x * 20) / 20, []).append(y)
    bx = sorted(bins)
    ax.plot([b + 0.025 for b in bx], [sum(bins[b]) / len(bins[b]) for b in bx], marker="o", color="k",
            label="rate per 0.05 bin")
    ax.axvline(1 / 3, color="red", ls="--", lw=1, label="W/3")
    ax.legend(fontsize=8)
    save_figure(fig, out / "bft_weighted.png")
    files.append("bft_weighted.png")

    below = [r for r in rows if r["scenario"] in ("equivocate", "equivocate_lossy") and 3 * r["byzantine"] < r["n"]]
    above = [r for r in rows if r["scenario"] == "equivocate" and 3 * r["byzantine"] >= r["n"]]
    wbelow = [r for r in wr if 3 * r["byz_weight_share"] < 1]
    wabove = [r for r in wr if 3 * r["byz_weight_share"] >= 1]
    live_below = [r for r in rows if r["scenario"] in ("silent", "silent_lossy") and 3 * r["byzantine"] < r["n"]]
    live_above = [r for r in rows if r["scenario"] == "silent" and 3 * r["byzantine"] >= r["n"]]
    rate = lambda rs, k: (sum(r[k] for r in rs) / len(rs)) if rs else float("nan")  # noqa: E731
    headline = {
        "violations_below_third": sum(r["safety_violation"] for r in below),
        "runs_below_third": len(below),
        "violation_rate_at_or_above_third": rate(above, "safety_violation"),
        "weighted_violations_below_third": sum(r["safety_violation"] for r in wbelow),
        "weighted_violation_rate_at_or_above_third": rate(wabove, "safety_violation"),
        "live_rate_below_third": rate(live_below, "live"),
        "live_rate_at_or_above_third_silent": rate(live_above, "live"),
    }
    findings = [
        f"Split-brain equivocation with b < N/3: {headline['violations_below_third']} safety violations in "
        f"{len(below)} runs (including {args.loss} loss and a partition healing at {args.heal_s} s).",
        f"With b >= N/3 the same attack breaks safety in {headline['violation_rate_at_or_above_third']:.0%} of runs.",
        f"Weighted quorums: {headline['weighted_violations_below_third']} violations while Byzantine weight < 1/3; "
        f"{headline['weighted_violation_rate_at_or_above_third']:.0%} of runs violate at or above 1/3.",
        f"Silent members: every honest member decides in {headline['live_rate_below_third']:.0%} of runs with b < N/3, "
        f"{headline['live_rate_at_or_above_third_silent']:.0%} with b >= N/3 (no quorum can form).",
    ]
    params = {k: getattr(args, k) for k in ("n_values", "trials", "loss", "heal_s", "horizon_s", "weighted_n", "seed")}
    import networkx as nx

    from simulations.network import topology_report

    topo = {f"N={n}": "complete graph (PBFT members talk directly)" for n in sorted({r["n"] for r in rows})}
    topo.update(topology_report(nx.complete_graph(max(r["n"] for r in rows))).as_dict())
    write_summary(out, NAME, description=DESCRIPTION, params=params, headline=headline,
                  findings=findings, files=files, topology=topo)
    return headline
