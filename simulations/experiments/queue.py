"""Experiment ``queue``: Distributed-MoA prompt-buffer stability (Mitra, Kaswan, Ulukus 2024).

Model (stated so the bound can be checked): ``N`` nodes on a graph; each node's users submit
prompts as a Poisson process of rate ``lambda`` (prompts/s per node). A prompt runs ``M``
layers; in each layer the originating node sends the prompt to ``k`` distinct random peers
(proposers), each queues one LLM job in its prompt buffer (FIFO, one job at a time, service
time ~ Exp(mean ``alpha_i``) seconds), and when all ``k`` answers are back the originator queues
one aggregation job in its own buffer; after the last layer the originator runs one final
job. A prompt therefore costs ``(k+1)M + 1`` LLM jobs, spread uniformly over the nodes, so a
node's buffer is stable iff ``((k+1)M + 1) * lambda < 1/alpha_max`` (the DMoA bound; with
unequal ``alpha_i`` the slowest node decides). The jobs run on the engine's per-node LLM servers
(the simulator's model of the daemon's single-model worker).

Two variants:

* ``fifo`` -- unbounded buffers: reproduces the trend of DMoA Table I (queue and latency grow
  with ``M`` and ``k`` and with ``lambda``; past the bound the backlog grows with time).
* ``admission`` -- the originator admits each prompt through the production
  ``p2pmoa.buffer.PromptBuffer.admit`` (capacity and the same stability bound on the measured
  arrival rate and generation times); refused prompts are counted. The queue stays bounded
  past the bound at the cost of refusals.
"""
from __future__ import annotations

import argparse
import math
import random
from pathlib import Path

import networkx as nx

from p2pmoa.effects import ChatMessage, Deliver, Generate, PeerId, QueryId, Send
from p2pmoa.protocol import FrameIn, GenerateDone, UserQuery
from simulations.agents import SyntheticAgent
from simulations.engine import Engine, ServiceModel
from simulations.machines import ProtocolEvents
from simulations.errors import ExperimentError, parse_list
from simulations.network import LinkModel, NetworkConditions
from simulations.report import (new_figure, run_sweep, save_figure, task_seed, write_csv,
                                write_summary)

NAME = "queue"
DESCRIPTION = ("Distributed-MoA prompt-buffer stability: time-average queue length and latency vs "
               "arrival rate lambda, layers M and proposers k on per-node LLM servers, with the "
               "bound ((k+1)M+1)*lambda < 1/alpha_max drawn on the plots; a second variant admits "
               "prompts through p2pmoa.buffer.PromptBuffer.")

N_MAX = 200


def jobs_per_prompt(m_layers: int, k_proposers: int) -> int:
    return (k_proposers + 1) * m_layers + 1


def lambda_bound(m_layers: int, k_proposers: int, alpha_max_s: float) -> float:
    """Largest stable per-node arrival rate (prompts/s): ``1 / (((k+1)M+1) alpha_max)``."""
    return 1.0 / (jobs_per_prompt(m_layers, k_proposers) * alpha_max_s)


class DmoaMachine(ProtocolEvents):
    """One node of the DMoA model above (not the production peer protocol: the queueing model).

    It is its own machine and speaks the peer protocol's event types (``UserQuery`` for a
    submitted prompt, ``FrameIn`` for a message, ``GenerateDone`` whose ``llm_s`` is the
    seconds the job held the LLM server, what a daemon measures).

    Args:
        node: this node's index; ``peers``: candidate proposers (the other nodes).
        m_layers, k_proposers: ``M`` and ``k``.
        seed: seeds this node's proposer choices.
        buffer: a ``p2pmoa.buffer.PromptBuffer`` for admission, or ``None`` (unbounded FIFO).
    """

    def __init__(self, node: int, peers: list[int], peer_ids: list[str], *, m_layers: int,
                 k_proposers: int, seed: int, buffer=None) -> None:
        super().__init__()
        self.machine = self
        self.node = node
        self.peers = peers
        self.ids = peer_ids
        self.m = m_layers
        self.k = k_proposers
        self.rng = random.Random(seed)
        self.buffer = buffer
        self.pending: dict[str, list] = {}  # prompt id -> [layer, answers received, arrived_at]
        self.latencies: list[float] = []
        self.refused = 0
        self.submitted = 0

    def on_input(self, payload, now: float):
        return (UserQuery(payload, payload, now=now),)

    def on_generate_done(self, job_id: str, generation, service_s: float, now: float):
        from dataclasses import replace

        return GenerateDone(job_id, replace(generation, llm_s=service_s), now=now)

    def handle(self, ev) -> list:
        match ev:
            case UserQuery(query_id=pid):
                self.submitted += 1
                if self.buffer is not None and not self._admit(pid, ev.now):
                    self.refused += 1
                    return []
                self.pending[pid] = [1, 0, ev.now]
                return self._layer(pid)
            case FrameIn(data=("job", pid, layer, origin)):
                return [Generate(f"p|{pid}|{layer}|{origin}", (ChatMessage("user", pid),))]
            case FrameIn(data=("res", pid, layer)):
                st = self.pending.get(pid)
                if st is None or st[0] != layer:
                    return []
                st[1] += 1
                if st[1] == self.k:
                    return [Generate(f"a|{pid}|{layer}|", (ChatMessage("user", pid),))]
                return []
            case GenerateDone(job_id=job_id, generation=gen):
                service_s = gen.llm_s
                if self.buffer is not None:
                    self.buffer.record_generation_time(service_s, ev.now)
                kind, pid, layer, origin = job_id.split("|")
                if kind == "p":
                    return [Send(PeerId(origin), ("res", pid, int(layer)))]
                st = self.pending[pid]
                if kind == "a":
                    if st[0] < self.m:
                        st[0] += 1
                        st[1] = 0
                        return self._layer(pid)
                    return [Generate(f"f|{pid}|0|", (ChatMessage("user", pid),))]
                # final job
                del self.pending[pid]
                self.latencies.append(ev.now - st[2])
                if self.buffer is not None:
                    from p2pmoa.buffer import QueryState

                    self.buffer.set_state(QueryId(pid), QueryState.DONE, ev.now)
                return [Deliver(QueryId(pid), "done", {})]
        return []

    def _layer(self, pid: str) -> list:
        layer = self.pending[pid][0]
        chosen = self.rng.sample(self.peers, self.k)
        me = self.ids[self.node]
        return [Send(PeerId(self.ids[p]), ("job", pid, layer, me)) for p in chosen]

    def _admit(self, pid: str, now: float) -> bool:
        from p2pmoa.buffer import Admitted
        from p2pmoa.messages import QueryAnnounce

        ann = QueryAnnounce(query_id=QueryId(pid), origin=PeerId(self.ids[self.node]), prompt=pid,
                            method="aggregate", created_at=now, deadline_s=600.0, proposers_max=self.k)
        return isinstance(self.buffer.admit(ann, local=True, now=now), Admitted)


def trial(task: dict) -> dict:
    import logging

    # every refusal is logged by the buffer (for node operators); thousands here are expected
    logging.getLogger("p2pmoa.buffer").setLevel(logging.ERROR)
    n, m, k, lam = task["n"], task["m"], task["k"], task["lam"]
    rng = random.Random(task["seed"])
    alphas = [task["alpha_max_s"] * (0.5 + 0.5 * rng.random()) for _ in range(n)]
    alphas[0] = task["alpha_max_s"]  # the slowest node sets the bound
    ids = [f"n{i:04d}" for i in range(n)]
    g = nx.complete_graph(n)
    machines = []
    for v in range(n):
        buf = None
        if task["variant"] == "admission":
            from p2pmoa.buffer import MemoryStore, PromptBuffer

            buf = PromptBuffer(MemoryStore(), capacity=task["capacity"], layers_m=m, proposers_k=k,
                               rate_window_s=task["rate_window_s"])
        machines.append(DmoaMachine(v, [u for u in range(n) if u != v], ids, m_layers=m, k_proposers=k,
                                    seed=task_seed(task["seed"], "node", v), buffer=buf))
    eng = Engine(g, machines, seed=task["seed"], peer_ids=ids,
                 conditions=NetworkConditions(LinkModel(latency="const", latency_s=0.01, jitter_s=0.0)),
                 service=ServiceModel(alpha_s=alphas), agent=SyntheticAgent(0.0, seed=task["seed"]))
    horizon = task["horizon_s"]
    for v in range(n):
        t = 0.0
        i = 0
        while True:
            t += rng.expovariate(lam)
            if t >= horizon:
                break
            eng.inject(t, v, f"q{v}-{i}")
            i += 1
    eng.run(until_s=horizon / 2)
    backlog_half = sum(eng.backlog(v) for v in range(n)) / n
    eng.run(until_s=horizon)
    qs = eng.queue_statistics()
    lat = [x for mach in machines for x in mach.latencies]
    backlog = sum(eng.backlog(v) for v in range(n)) / n
    submitted = sum(mach.submitted for mach in machines)
    refused = sum(mach.refused for mach in machines)
    bound = lambda_bound(m, k, task["alpha_max_s"])
    return {"variant": task["variant"], "n": n, "M": m, "k": k, "lambda": lam, "lambda_bound": bound,
            "load": lam / bound, "seed": task["seed"], "horizon_s": horizon,
            "queue_mean": sum(q["queue_mean"] for q in qs) / n,
            "queue_max_node": max(q["queue_mean"] for q in qs),
            "backlog_half": backlog_half, "backlog_end": backlog,
            "latency_mean_s": sum(lat) / len(lat) if lat else float("nan"),
            "delivered": len(lat), "submitted": submitted, "refused": refused,
            "admitted_load": (submitted - refused) / (n * horizon) / bound,
            "utilisation_max": max(q["utilisation"] for q in qs)}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--n", type=int, default=10, help="nodes (default 10)")
    p.add_argument("--layers", default="1,2,3", help="M values (default 1,2,3)")
    p.add_argument("--proposers", default="1,2,3", help="k values (default 1,2,3)")
    p.add_argument("--loads", default="0.2,0.4,0.6,0.8,0.9,1.1,1.3",
                   help="lambda as fractions of the bound (default 0.2..1.3)")
    p.add_argument("--alpha-max-s", type=float, default=1.0, help="slowest node's mean service time (default 1 s)")
    p.add_argument("--horizon-s", type=float, default=600.0, help="virtual seconds per run (default 600)")
    p.add_argument("--trials", type=int, default=2, help="runs per point (default 2)")
    p.add_argument("--capacity", type=int, default=8, help="PromptBuffer capacity of the admission variant")


def build_tasks(args: argparse.Namespace) -> list[dict]:
    if not (2 <= args.n <= N_MAX):
        raise ExperimentError(f"--n must be in [2, {N_MAX}]")
    ms = parse_list(args.layers, "layers", 1, 10, int)
    ks = parse_list(args.proposers, "proposers", 1, args.n - 1, int)
    try:
        loads = [float(x) for x in args.loads.split(",") if x.strip()]
    except ValueError as exc:
        raise ExperimentError("--loads must be a comma list of numbers") from exc
    if not loads or any(not (0 < x <= 5) for x in loads) or args.alpha_max_s <= 0 or args.horizon_s <= 0:
        raise ExperimentError("--loads in (0, 5], --alpha-max-s and --horizon-s > 0")
    tasks = []
    base = {"n": args.n, "alpha_max_s": args.alpha_max_s, "horizon_s": args.horizon_s,
            "capacity": args.capacity, "rate_window_s": 60.0}
    for m in ms:
        for k in ks:
            for load in loads:
                for t in range(args.trials):
                    lam = load * lambda_bound(m, k, args.alpha_max_s)
                    tasks.append({**base, "variant": "fifo", "m": m, "k": k, "lam": lam,
                                  "seed": task_seed(args.seed, "fifo", m, k, load, t)})
    # Table I of DMoA fixes lambda and varies M and k: one absolute lambda, stable for the
    # largest (M, k) of the sweep (half its bound), run for every (M, k).
    lam_table = 0.5 * lambda_bound(max(ms), max(ks), args.alpha_max_s)
    for m in ms:
        for k in ks:
            for t in range(4 * args.trials):
                tasks.append({**base, "variant": "table", "m": m, "k": k, "lam": lam_table,
                              "seed": task_seed(args.seed, "table", m, k, t)})
    m2, k2 = ms[min(1, len(ms) - 1)], ks[min(1, len(ks) - 1)]
    # admission also runs well past the bound (2x), where an unbounded queue would diverge
    for load in sorted(set(loads) | {2.0}):
        for t in range(args.trials):
            tasks.append({**base, "variant": "admission", "m": m2, "k": k2,
                          "lam": load * lambda_bound(m2, k2, args.alpha_max_s),
                          "seed": task_seed(args.seed, "adm", m2, k2, load, t)})
    return tasks


def _mean(xs):
    xs = [x for x in xs if not math.isnan(x)]
    return sum(xs) / len(xs) if xs else float("nan")


def run(args: argparse.Namespace, out: Path) -> dict:
    tasks = build_tasks(args)
    rows = run_sweep(trial, tasks, workers=args.workers, desc="queue", progress=args.progress)
    write_csv(out / "queue.csv", rows)
    pts: dict = {}
    for r in rows:
        pts.setdefault((r["variant"], r["M"], r["k"], round(r["load"], 6)), []).append(r)
    agg = {key: {"lambda": rs[0]["lambda"], "bound": rs[0]["lambda_bound"],
                 "queue": _mean([r["queue_mean"] for r in rs]),
                 "latency": _mean([r["latency_mean_s"] for r in rs]),
                 "backlog": _mean([r["backlog_end"] for r in rs]),
                 "refused": _mean([r["refused"] / max(1, r["submitted"]) for r in rs])}
           for key, rs in pts.items()}
    files = ["queue.csv"]
    table_rows = []
    for metric, ylabel, fname in (("queue", "time-average queue length (jobs per node)", "queue_length.png"),
                                  ("latency", "mean prompt latency (s)", "queue_latency.png")):
        fig, ax = new_figure(f"DMoA prompt buffers, N={args.n}, alpha_max={args.alpha_max_s}s",
                             "arrival rate lambda x ((k+1)M+1) x alpha_max", ylabel)
        for (variant, m, k) in sorted({(a, b, c) for a, b, c, _ in agg if a == "fifo"}):
            xs = sorted(l for v, mm, kk, l in agg if (v, mm, kk) == (variant, m, k))
            ax.plot(xs, [agg[(variant, m, k, x)][metric] for x in xs], marker="o", ms=3, label=f"M={m}, k={k}")
        ax.axvline(1.0, color="red", ls="--", lw=1.2, label="bound ((k+1)M+1)*lambda = 1/alpha_max")
        ax.set_yscale("log")
        ax.legend(fontsize=7, ncol=2)
        save_figure(fig, out / fname)
        files.append(fname)
    adm = sorted((l, v) for (var, m, k, l), v in agg.items() if var == "admission")
    fifo_same = {l: agg.get(("fifo", rows[-1]["M"], rows[-1]["k"], l)) for l, _ in adm}
    # (the admission tasks come last, so rows[-1] names their M and k)
    fig, ax = new_figure(f"PromptBuffer admission (M={rows[-1]['M']}, k={rows[-1]['k']})",
                         "offered load lambda / bound", "queue length / refused share")
    ax.plot([l for l, _ in adm], [v["queue"] for _, v in adm], marker="o", label="queue, admission")
    ax.plot([l for l, _ in adm], [fifo_same[l]["queue"] if fifo_same[l] else float("nan") for l, _ in adm],
            marker="s", label="queue, unbounded FIFO")
    ax.plot([l for l, _ in adm], [v["refused"] for _, v in adm], marker="^", label="share of prompts refused")
    ax.axvline(1.0, color="red", ls="--", lw=1.2, label="bound")
    ax.set_yscale("symlog", linthresh=0.1)
    ax.legend(fontsize=8)
    save_figure(fig, out / "queue_admission.png")
    files.append("queue_admission.png")
    table = {(m, k): v for (var, m, k, l), v in agg.items() if var == "table"}
    for (m, k), v in sorted(table.items()):
        table_rows.append({"M": m, "k": k, "lambda": v["lambda"], "queue_mean": v["queue"],
                           "latency_mean_s": v["latency"]})
    write_csv(out / "queue_table.csv", table_rows)
    files.append("queue_table.csv")
    below = [v for (var, m, k, l), v in agg.items() if var == "fifo" and l < 1.0]
    above = [v for (var, m, k, l), v in agg.items() if var == "fifo" and l > 1.0]
    ms = sorted({m for _, m, _ in [(0, *mk) for mk in table]})
    ks = sorted({k for _, _, k in [(0, *mk) for mk in table]})

    def at(m, k, metric):
        return table[(m, k)][metric]

    fifo_rows = [r for r in rows if r["variant"] == "fifo"]
    grow_above = [r["backlog_end"] > r["backlog_half"] for r in fifo_rows if r["load"] > 1.05]
    grow_below = [r["backlog_end"] > r["backlog_half"] for r in fifo_rows if r["load"] < 0.85]
    headline = {
        "share_growing_above_bound": sum(grow_above) / len(grow_above) if grow_above else float("nan"),
        "share_growing_below_0_85": sum(grow_below) / len(grow_below) if grow_below else float("nan"),
        "max_backlog_below_bound": max((v["backlog"] for v in below), default=float("nan")),
        "min_backlog_above_bound": min((v["backlog"] for v in above), default=float("nan")),
        "latency_grows_with_M": all(at(ms[i], ks[0], "latency") < at(ms[i + 1], ks[0], "latency")
                                    for i in range(len(ms) - 1)),
        "latency_grows_with_k": all(at(ms[0], ks[i], "latency") < at(ms[0], ks[i + 1], "latency")
                                    for i in range(len(ks) - 1)),
        "admission_max_queue": max((v["queue"] for _, v in adm), default=float("nan")),
        "admission_backlog_end_max": max((r["backlog_end"] for r in rows
                                          if r["variant"] == "admission"), default=float("nan")),
        "admission_admitted_load_max": max((r["admitted_load"] for r in rows
                                            if r["variant"] == "admission"), default=float("nan")),
        "admission_refused_share_at_max_load": adm[-1][1]["refused"] if adm else float("nan"),
    }
    findings = [
        f"Below the bound the end-of-run backlog stays small (at most {headline['max_backlog_below_bound']:.1f} jobs per node); "
        f"past it the backlog is at least {headline['min_backlog_above_bound']:.1f} jobs per node after {args.horizon_s:.0f} s, and it "
        f"grew between half time and the end in {headline['share_growing_above_bound']:.0%} of the runs above 1.05x the bound "
        f"(vs {headline['share_growing_below_0_85']:.0%} of runs below 0.85x: noise around a stable level).",
        f"At one fixed lambda = {table_rows[0]['lambda']:.4f}/s (Table I style, queue_table.csv), latency grows with M: "
        f"{headline['latency_grows_with_M']}, with k: {headline['latency_grows_with_k']}; queue at (M,k)=({ms[0]},{ks[0]}) "
        f"{at(ms[0], ks[0], 'queue'):.2f} vs ({ms[-1]},{ks[-1]}) {at(ms[-1], ks[-1], 'queue'):.2f} jobs per node.",
        f"With PromptBuffer admission the time-average queue stays at most {headline['admission_max_queue']:.2f} jobs per node; "
        f"at the highest load {headline['admission_refused_share_at_max_load']:.0%} of prompts are refused instead. "
        f"The rule (idle node always admits; busy node keeps the bound on its own measured alpha) admitted at most "
        f"{headline['admission_admitted_load_max']:.2f}x the slowest node's bound (faster nodes use their own alpha), "
        f"and its end-of-run backlog was at most {headline['admission_backlog_end_max']:.1f} jobs per node at every load up to 2x "
        f"the bound (unbounded FIFO past the bound: at least {headline['min_backlog_above_bound']:.1f}).",
    ]
    params = {k: getattr(args, k) for k in ("n", "layers", "proposers", "loads", "alpha_max_s", "horizon_s",
                                             "trials", "capacity", "seed")}
    from simulations.network import topology_report

    write_summary(out, NAME, description=__doc__.split("\n\n")[1], params=params, headline=headline,
                  findings=findings, files=files, topology=topology_report(nx.complete_graph(args.n)).as_dict())
    return headline
