"""Experiment ``sybil``: fresh identities against the production protocol's seat rules.

``H`` honest nodes (13: a complete graph; 1,000: a random 8-regular graph) run
``p2pmoa.protocol.PeerProtocol`` on the simulator and ask each other ``--warmup`` queries, so
they have some history together. Then ``S`` fresh identities join (``S`` from 0 to 4x ``H``),
each linked to ``--sybil-links`` random honest nodes. They follow the protocol but their
model gives one identical wrong answer, ``speed`` times faster than the honest models (``inf``:
instantly). Honest nodes then ask ``--queries`` questions. Measured per point: the share of
delivered answers whose chosen proposer is honest (``honest_answer_rate``), the largest number
of sybil seats in one round, and the share delivered; for an **open** mesh and a **rostered**
one (every honest node holds the roster of honest peer ids, p2pmoa/roster.py).

What the open mesh can and cannot do (p2pmoa/seats.py): an originator that knows established
peers gives new identities at most ``(k-1)//3`` seats at weight 0; one that has no history yet
(bootstrap) seats anyone. At 1,000 nodes a node takes part in few rounds during the warm-up,
so many originators are still bootstrapping when the sybils arrive: the figure shows how far
history protects an open mesh of that size, and that a roster protects it fully.
"""
from __future__ import annotations

import argparse
import math
import random
from pathlib import Path
from typing import Any

import networkx as nx

from simulations.engine import Engine, NodeAdapter, ServiceModel
from simulations.errors import ExperimentError
from simulations.network import LinkModel, NetworkConditions
from simulations.report import run_sweep, task_seed, write_csv, write_summary

NAME = "sybil"
DESCRIPTION = ("Fresh sybil identities (0 to 4x the honest nodes, answering one wrong answer faster "
               "than honest models) join a mesh of 13 or 1,000 honest nodes running the production "
               "protocol: share of delivered answers from an honest proposer and most sybil seats in "
               "a round, open vs rostered mesh.")


class LateJoiner(NodeAdapter):
    """A node that does not exist before ``join_s``: everything that happens to it before is
    dropped; the first event at or after ``join_s`` starts its protocol first (``Started``
    and ``PeerUp`` for its neighbours, as :class:`PeerMachine` does on start)."""

    def __init__(self, inner: Any, join_s: float) -> None:
        self.inner = inner
        self.join_s = join_s
        self.started = False
        self.decisions: list = []

    @property
    def machine(self) -> "LateJoiner":
        return self

    def handle(self, event) -> list:
        proto = self.inner.proto
        out: list = []
        if not self.started:
            self.started = True
            for ev in self.inner.on_start(event.now):
                out.extend(proto.handle(ev))
            if isinstance(event, self.inner.P.Started):
                return out
        return out + list(proto.handle(event))

    def on_message(self, src, msg, topic, now):
        return self.inner.on_message(src, msg, topic, now) if now >= self.join_s else None

    def on_timer(self, name, now):
        return self.inner.on_timer(name, now) if now >= self.join_s else None

    def on_start(self, now):
        return self.inner.on_start(now) if now >= self.join_s else ()

    def on_recover(self, now):
        return self.inner.on_recover(now) if now >= self.join_s else ()

    def on_input(self, payload, now):
        return self.inner.on_input(payload, now) if now >= self.join_s else ()

    def on_generate_done(self, job_id, generation, service_s, now):
        return self.inner.on_generate_done(job_id, generation, service_s, now) if now >= self.join_s else None

    def on_embed_done(self, job_id, vectors, now):
        return self.inner.on_embed_done(job_id, vectors, now) if now >= self.join_s else None

    def on_output(self, effect, now):
        return self.inner.on_output(effect, now)


class MeetsLateJoiners(NodeAdapter):
    """An honest node's adapter that tells its protocol of its sybil neighbours only when they
    join (the engine would otherwise report every graph neighbour as connected from the start)."""

    def __init__(self, inner: Any, late: list, join_s: float) -> None:
        self.inner = inner
        self.late = late
        self.join_s = join_s
        self.decisions: list = []
        self.members = inner.members

    @property
    def machine(self) -> "MeetsLateJoiners":
        return self

    def handle(self, event) -> list:
        proto = self.inner.proto
        if self.late and event.now >= self.join_s:
            for p in self.late:
                proto.handle(self.inner.P.PeerUp(p, now=event.now))
            self.late = []
        return proto.handle(event)

    def on_message(self, src, msg, topic, now):
        return self.inner.on_message(src, msg, topic, now)

    def on_timer(self, name, now):
        return self.inner.on_timer(name, now)

    def on_start(self, now):
        return self.inner.on_start(now)

    def on_recover(self, now):
        return self.inner.on_recover(now)

    def on_input(self, payload, now):
        return self.inner.on_input(payload, now)

    def on_generate_done(self, job_id, generation, service_s, now):
        return self.inner.on_generate_done(job_id, generation, service_s, now)

    def on_embed_done(self, job_id, vectors, now):
        return self.inner.on_embed_done(job_id, vectors, now)

    def on_output(self, effect, now):
        return self.inner.on_output(effect, now)


def _graph(h: int, s: int, links: int, rng: random.Random) -> nx.Graph:
    if h <= 32:
        g = nx.complete_graph(h)
    else:
        g = nx.random_regular_graph(8, h, seed=rng.randrange(1 << 30))
    for j in range(h, h + s):
        for u in rng.sample(range(h), min(h, links)):
            g.add_edge(j, u)
    return g


def trial(task: dict) -> dict:
    from p2pmoa.identity import InsecureSimRegistry, InsecureSimSigner, InsecureSimVerifier
    from p2pmoa.protocol import PeerProtocol, ProtocolConfig
    from simulations.agents import SyntheticAgent
    from simulations.faults import FaultyAgent
    from simulations.machines import PeerMachine

    seed, h, s = task["seed"], task["honest"], task["sybils"]
    rng = random.Random(seed)
    g = _graph(h, s, task["sybil_links"], rng)
    n = h + s
    registry = InsecureSimRegistry()
    signers = [InsecureSimSigner.create(random.Random(f"{seed}|id|{i}"), registry) for i in range(n)]
    ids = [x.peer_id for x in signers]
    honest_ids = frozenset(ids[:h])
    base = SyntheticAgent(task["eps_node"], dim=32, seed=seed)
    agent = FaultyAgent(base, list(range(h, n)), "colluding_wrong")
    k = task["proposers"]
    # honest nodes answer on their own: about 2k of the honest nodes are asked per query
    select_ppm = min(1_000_000, max(1, int(1_000_000 * 2 * k / max(1, h - 1))))
    join_s = task["warmup"] * task["interval_s"] + task["collect_s"] + 2 * task["round_s"]
    machines: list = []
    for i in range(n):
        cfg = ProtocolConfig(role=f"You are expert {i}.", model_id=base.model_id,
                             space_id=agent.space_id, method=task["method"], proposers_max=k,
                             select_ppm=select_ppm, collect_timeout_s=task["collect_s"],
                             round_timeout_s=task["round_s"],
                             seat_seniority_s=task["seniority_s"],
                             roster=honest_ids if task["rostered"] and i < h else None)
        proto = PeerProtocol(signers[i], InsecureSimVerifier(registry), cfg,
                             rng=random.Random(f"{seed}|rng|{i}"))
        nbrs = sorted(g.neighbors(i))
        if i < h:
            m = PeerMachine(proto, [ids[u] for u in nbrs if u < h])
            late = [ids[u] for u in nbrs if u >= h]
            machines.append(MeetsLateJoiners(m, late, join_s) if late else m)
        else:
            machines.append(LateJoiner(PeerMachine(proto, [ids[u] for u in nbrs]), join_s))
    speed = task["speed"]
    alpha = [task["alpha_s"]] * h + [task["alpha_s"] / speed if math.isfinite(speed) else 1e-4] * s
    eng = Engine(g, machines, seed=seed, conditions=NetworkConditions(LinkModel()),
                 agent=agent, service=ServiceModel(alpha_s=alpha, distribution="const",
                                                   embed_s=0.01),
                 peer_ids=ids, size_fn=len)
    eng.start()
    asked = []
    total = task["warmup"] + task["queries"]
    for q in range(total):
        t = 0.001 + q * task["interval_s"] + (join_s - task["warmup"] * task["interval_s"]
                                              if q >= task["warmup"] else 0.0)
        origin = rng.randrange(h)
        qid = f"q{q:05d}"
        eng.inject(t, origin, (qid, f"Question {q} (seed {seed}): which candidate is right?",
                               task["method"]))
        if q >= task["warmup"]:
            asked.append((qid, origin))
    eng.run(until_s=join_s + task["queries"] * task["interval_s"] + task["collect_s"]
            + 4 * task["round_s"] + 30)
    delivered = {(node, d.query_id): d for _, node, d in eng.deliveries}
    sybil_ids = frozenset(ids[h:])
    got = honest_ans = seats_max = members = 0
    for qid, origin in asked:
        d = delivered.get((origin, qid))
        if d is None:
            continue
        got += 1
        tr = d.trace if isinstance(d.trace, dict) else {}
        if tr.get("decision", {}).get("proposer") in honest_ids:
            honest_ans += 1
        seats_max = max(seats_max, sum(m in sybil_ids for m in tr.get("members", [])))
        members += len(tr.get("members", []))
    q = len(asked)
    return {"honest": h, "sybils": s, "ratio": s / h, "speed": speed, "rostered": task["rostered"],
            "method": task["method"], "seed": seed, "queries": q,
            "delivered": got / q if q else float("nan"),
            "honest_answer_rate": honest_ans / q if q else float("nan"),
            "sybil_seats_max": seats_max,
            "members_mean": members / got if got else float("nan"),
            "events": eng.statistics().events}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--honest", default="13,1000", help="honest node counts (default 13,1000)")
    p.add_argument("--ratios", default="0,0.5,1,2,4", help="sybils per honest node (default 0..4)")
    p.add_argument("--ratios-large", default="0,1,4",
                   help="ratios for meshes over 100 honest nodes (default 0,1,4: cost)")
    p.add_argument("--speeds", default="inf,10",
                   help="sybil speed advantage over honest models, 'inf' = instant (default inf,10)")
    p.add_argument("--speeds-large", default="inf",
                   help="speeds for meshes over 100 honest nodes (default inf: cost)")
    p.add_argument("--method", default="pbft", choices=("pbft", "vote", "averaging"))
    p.add_argument("--proposers", type=int, default=8, help="seats per round (default 8)")
    p.add_argument("--warmup", type=int, default=30, help="honest-only queries first (default 30)")
    p.add_argument("--warmup-large", type=int, default=100,
                   help="warm-up queries for meshes over 100 honest nodes (default 100)")
    p.add_argument("--queries", type=int, default=12, help="queries after the sybils join (default 12)")
    p.add_argument("--sybil-links", type=int, default=4, help="honest nodes each sybil links to")
    p.add_argument("--eps-node", type=float, default=0.1, help="honest per-node error rate")
    p.add_argument("--alpha-s", type=float, default=2.0, help="honest model time per answer, s")
    p.add_argument("--seniority-s", type=float, default=None,
                   help="seat seniority (p2pmoa/seats.py); default: the warm-up's length, so "
                        "the honest nodes are senior when the sybils arrive and the sybils are "
                        "not yet senior while the queries run (instant sybils; a patient one "
                        "that waits this long counts as known unless its history says otherwise)")
    p.add_argument("--trials", type=int, default=1, help="seeds per point (default 1)")


def _floats(text: str, what: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise ExperimentError(f"{what} must be numbers") from exc


def build_tasks(args: argparse.Namespace) -> list[dict]:
    hs = [int(x) for x in _floats(args.honest, "--honest")]
    speeds = _floats(args.speeds, "--speeds")
    if any(not (4 <= h <= 5000) for h in hs) or any(sp <= 0 for sp in speeds):
        raise ExperimentError("--honest in [4, 5000], --speeds > 0")
    if args.queries < 1 or args.trials < 1 or args.warmup < 0 or not 2 <= args.proposers <= 64:
        raise ExperimentError("--queries, --trials >= 1, --warmup >= 0, --proposers in [2, 64]")
    tasks = []
    for h in hs:
        large = h > 100
        ratios = _floats(args.ratios_large if large else args.ratios, "--ratios")
        sps = _floats(args.speeds_large, "--speeds-large") if large else speeds
        if any(not (0 <= r <= 4) for r in ratios):
            raise ExperimentError("ratios must be in [0, 4]")
        for r in ratios:
            for sp in (sps if r > 0 else sps[:1]):
                for rostered in (False, True):
                    for t in range(args.trials):
                        tasks.append({
                            "honest": h, "sybils": int(round(r * h)), "speed": sp,
                            "rostered": rostered, "method": args.method,
                            "proposers": args.proposers, "eps_node": args.eps_node,
                            "warmup": args.warmup_large if large else args.warmup,
                            "queries": args.queries, "sybil_links": args.sybil_links,
                            "alpha_s": args.alpha_s, "collect_s": 4 * args.alpha_s + 2.0,
                            "round_s": 10.0, "interval_s": 4 * args.alpha_s + 2.0 if not large
                            else 0.5,
                            "seed": task_seed(args.seed, h, r, sp, rostered, t)})
                        tk = tasks[-1]
                        warm_s = tk["warmup"] * tk["interval_s"]
                        tk["seniority_s"] = (args.seniority_s if args.seniority_s is not None
                                             else max(1.0, warm_s))
    return tasks


def run(args: argparse.Namespace, out: Path) -> dict:
    tasks = build_tasks(args)
    rows = run_sweep(trial, tasks, workers=args.workers, desc="sybil", progress=args.progress)
    write_csv(out / "sybil.csv", rows)
    files = ["sybil.csv"]
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    hs = sorted({r["honest"] for r in rows})
    fig, axes = plt.subplots(1, len(hs), figsize=(5 * len(hs), 3.8), sharey=True, squeeze=False)
    for ax, h in zip(axes[0], hs):
        for rostered in (False, True):
            for sp in sorted({r["speed"] for r in rows}):
                rs = [r for r in rows if r["honest"] == h and r["rostered"] == rostered
                      and (r["speed"] == sp or r["sybils"] == 0)]
                xs = sorted({r["ratio"] for r in rs})
                ys = [sum(r["honest_answer_rate"] for r in rs if r["ratio"] == x)
                      / sum(1 for r in rs if r["ratio"] == x) for x in xs]
                ax.plot(xs, ys, marker="o", ls="-" if rostered else "--",
                        label=f"{'rostered' if rostered else 'open'}, speed x{sp:g}")
        ax.set_title(f"{h} honest nodes", fontsize=9)
        ax.set_xlabel("sybil identities per honest node")
        ax.set_ylim(-0.05, 1.05)
        ax.grid(True, alpha=0.3)
    axes[0][0].set_ylabel("answers from an honest proposer")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "sybil_honest_answers.png", dpi=110, metadata={"Software": None})
    plt.close(fig)
    files.append("sybil_honest_answers.png")

    def agg(h, rostered, key, fn=min):
        vals = [r[key] for r in rows if r["honest"] == h and r["rostered"] == rostered
                and r["sybils"] > 0]
        return fn(vals) if vals else float("nan")

    headline: dict = {"runs": len(rows)}
    findings = []
    for h in hs:
        for rostered in (False, True):
            tag = f"{h}_{'rostered' if rostered else 'open'}"
            headline[f"honest_answer_rate_min_{tag}"] = agg(h, rostered, "honest_answer_rate")
            headline[f"sybil_seats_max_{tag}"] = agg(h, rostered, "sybil_seats_max", max)
            findings.append(
                f"{h} honest nodes, {'rostered' if rostered else 'open'} mesh: with sybils, at "
                f"least {headline[f'honest_answer_rate_min_{tag}']:.0%} of answers came from an "
                f"honest proposer; sybils held at most {headline[f'sybil_seats_max_{tag}']} seats "
                f"of a round (bound for new identities: {(args.proposers - 1) // 3}).")
    params = {k: getattr(args, k) for k in ("honest", "ratios", "ratios_large", "speeds",
                                             "speeds_large", "seniority_s", "method",
                                             "proposers", "warmup", "warmup_large", "queries",
                                             "sybil_links", "eps_node", "alpha_s", "trials",
                                             "seed")}
    write_summary(out, NAME, description=DESCRIPTION, params=params, headline=headline,
                  findings=findings, files=files)
    return headline
