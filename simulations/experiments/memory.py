"""Experiment ``memory``: collaborative memory at mesh scale, with and without Byzantine writers.

Every node runs the production memory code: :class:`p2pmoa.memory.Memory` (two tiers, top-k,
near-duplicate rule, eviction) and :class:`p2pmoa.memory_share.MemoryAgent` (share rule, member
verification against the node's own decision, endorsement quorum for non-members). A stream of
user queries is drawn from the shipped workload (``tests/data/memory_workload.json``): with
probability ``repeat`` a query re-asks an earlier question, in other words when the workload has
a paraphrase of it; otherwise it asks a new question (which may be a look-alike of an earlier
one). Query vectors are the RECORDED real embeddings of the workload
(``tests/data/memory_workload_vectors.npz``, made by ``bench/memory.py --record-vectors``);
without that file the stand-in hashing embedder is used and the summary says so.

A query asked at node o is answered from o's memory on a near-duplicate hit; otherwise a round
runs with o and up to ``members - 1`` of its graph neighbours. The round's decision is the
query's reference answer (a STAND-IN for the consensus of an honest supermajority; this
experiment measures memory, the consensus experiments measure consensus). o remembers it,
shares it by the ``tau_share`` rule, members verify it against their own decision and endorse
it to their neighbours, who accept it on a > 2/3 endorsement quorum (trust weights all 1) and
relay the members' endorsements on, so the entry floods the graph.

Byzantine writers (fraction ``byzantine`` of the nodes, never asking): whenever one is a member
of a round it sends every neighbour a validly signed share of that round with a poisoned answer
(a member-endorsed copy, to reach non-members too), and every step one of them invents a round
(poisoned answer, members = itself and its neighbours) and, if it has Byzantine neighbours, a
second round made of colluders only, and they all endorse both. Trust: as in the protocol
(``LocalTrust``, updated by the originator of a round), an originator's score of each member
of its round moves towards 1 (Byzantine members too: they take part in consensus honestly,
the poisoning is extra), and a node's score of a sender drops when it blames it; non-members
count only endorsers they trust above 0.5. Signatures are not simulated (forged and
unsigned frames are covered by the protocol tests with Ed25519): every attack here is
*validly signed*.

Cost model per query (tokens): a round costs ``m (p + c) + m (1 + m) c`` (generation of ``m``
members with prompt ``p`` = 20 and completion ``c`` = 96 tokens, plus the embeddings the
protocol computes), a memory hit costs the query embedding (``p``); memory on also embeds every
query first.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import random
from pathlib import Path

import networkx as nx
import numpy as np

from p2pmoa.memory import Memory, MemoryConfig
from p2pmoa.memory_share import MemoryAgent, entry_id_of
from p2pmoa.messages import Decision, MemoryShare
from simulations.errors import ExperimentError, parse_list
from simulations.report import run_sweep, save_figure, task_seed, write_csv, write_summary

NAME = "memory"
DESCRIPTION = ("Collaborative memory: hit rate, tokens saved and answer agreement vs capacity C, "
               "tau_share and the share of repeated/paraphrased queries, with and without "
               "Byzantine writers (production memory core and share verification).")

ROOT = Path(__file__).resolve().parents[2]
WORKLOAD = ROOT / "tests" / "data" / "memory_workload.json"
VECTORS = ROOT / "tests" / "data" / "memory_workload_vectors.npz"
PROMPT_TOKENS, COMPLETION_TOKENS = 20, 96
POISON = "POISON"


def load_workload() -> tuple[list[dict], dict[str, np.ndarray], str]:
    work = json.loads(WORKLOAD.read_text())["queries"]
    if VECTORS.exists():
        z = np.load(VECTORS)
        vecs = {str(i): v.astype(np.float32) for i, v in zip(z["ids"], z["vectors"])}
        space = str(z["space_id"])
    else:  # pragma: no cover - the file ships; this keeps the experiment usable without it
        from p2pmoa.embed import HashingEmbedder
        e = HashingEmbedder(64)
        V = e.embed([q["text"] for q in work])
        vecs = {q["id"]: V[i] for i, q in enumerate(work)}
        space = e.space_id
    for k, v in vecs.items():
        vecs[k] = v / max(float(np.linalg.norm(v)), 1e-9)
    return work, vecs, space


def _round_cost(m: int) -> int:
    return m * (PROMPT_TOKENS + COMPLETION_TOKENS) + m * (1 + m) * COMPLETION_TOKENS


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def trial(task: dict) -> dict:
    rng = random.Random(task["seed"])
    work, vecs, space = load_workload()
    g = nx.random_regular_graph(task["degree"], task["n"], seed=rng.getrandbits(32))
    nodes = [f"n{i}" for i in range(task["n"])]
    nbrs = {nodes[i]: [nodes[j] for j in g.neighbors(i)] for i in range(task["n"])}
    byz = set(rng.sample(nodes, int(round(task["byzantine"] * task["n"]))))
    honest = [x for x in nodes if x not in byz]
    cfg = MemoryConfig(capacity=task["capacity"], tau_share=task["tau"], alpha=task["alpha"],
                       beta=task["beta"])
    agents = {x: MemoryAgent(Memory(cfg), x) for x in nodes}
    trust: dict[str, dict[str, float]] = {x: {} for x in nodes}  # LocalTrust-like scores
    decided: dict[str, Decision] = {}  # query id -> decision (every honest member recorded it)
    prompts: dict[str, str] = {}
    members_of: dict[str, tuple] = {}

    originals = [q for q in work if q["kind"] != "paraphrase"]
    paras: dict[str, list[dict]] = {}
    for q in work:
        if q["kind"] == "paraphrase":
            paras.setdefault(q["of"], []).append(q)
    rng.shuffle(originals)
    asked: list[dict] = []
    st = {"queries": 0, "hits": 0, "wrong_hits": 0, "poison_hits": 0, "rounds": 0,
          "tokens_on": 0, "tokens_off": 0, "repeats": 0}

    pending: list[tuple[str, str, MemoryShare]] = []  # messages in flight (FIFO)

    def deliver(sender: str, to: str, msg: MemoryShare, now: float) -> None:
        a = agents[to]
        if to in byz:
            return
        mine = decided.get(msg.query_id) if to in members_of.get(msg.query_id, ()) else None
        prompt = prompts.get(msg.query_id) if mine is not None else None
        tb = trust[to]
        v = a.receive(sender, msg, my_decision=mine, my_prompt=prompt,
                      weights=lambda ms: {m: 1 + round(9 * tb.get(m, 0.5)) for m in ms},
                      frame=sender.encode(), trust_score=lambda m: tb.get(m, 0.5))
        if v.blame:
            tb[sender] = tb.get(sender, 0.5) * 0.8
        if v.status != "accepted":
            return
        vec = vecs.get(msg.query_id.split("#")[0])
        if vec is None:  # an invented round's query: the receiver embeds its text itself
            vec = vecs[rng.choice(list(vecs))]
        a.store_incoming(entry_id_of(msg.origin, msg.query_id), vec, now)
        if v.endorse:
            for peer in a.fanout(nbrs[to], msg.members):
                pending.append((to, peer, msg))
        for peer in a.fanout(nbrs[to], msg.members) if v.relay else ():
            for signer in v.relay:  # the members' signed frames, relayed unchanged
                pending.append((signer.decode(), peer, msg))

    def flood(now: float) -> None:
        while pending:
            s_, t_, m_ = pending.pop(0)
            deliver(s_, t_, m_, now)

    for step in range(task["queries"]):
        now = step * task["interval_s"]
        repeat = asked and (rng.random() < task["repeat"] or len(asked) == len(originals))
        if repeat:
            base = rng.choice(asked)
            cands = paras.get(base["id"], [])
            q = rng.choice(cands) if cands else base
            st["repeats"] += 1
        else:
            q = originals[len(asked)]
            asked.append(q)
        o = rng.choice(honest)
        qid = f"{q['id']}#{step}"
        vec = vecs[q["id"]]
        st["queries"] += 1
        a = agents[o]
        a.wants_local_lookup(qid, True)
        a.on_vector(qid, q["text"], vec, local=True)
        hit = a.answer_from_memory(qid)
        st["tokens_off"] += _round_cost(task["members"])
        st["tokens_on"] += PROMPT_TOKENS
        if hit is not None:
            st["hits"] += 1
            st["wrong_hits"] += hit.answer != q["answer"]
            st["poison_hits"] += POISON in hit.answer
            a.remember_answer(qid, q["text"], hit.answer, now)
        else:
            st["rounds"] += 1
            st["tokens_on"] += _round_cost(task["members"])
            ms = tuple(sorted([o] + rng.sample(nbrs[o], min(task["members"] - 1, len(nbrs[o])))))
            d = Decision(qid, "pbft", q["answer"], _digest(q["answer"]), o, len(ms), len(ms))
            decided[qid], prompts[qid], members_of[qid] = d, q["text"], ms
            for y in ms:  # as in the protocol, the originator updates its trust in the members
                if y != o:  # (Byzantine members too: they take part in consensus honestly)
                    s0 = trust[o].get(y, 0.5)
                    trust[o][y] = s0 + 0.2 * (1.0 - s0)
            share = a.decided(qid, q["text"], d, ms, now)
            if share is not None:
                for peer in a.fanout(nbrs[o], share.members):
                    pending.append((o, peer, share))
            for b in (m for m in ms if m in byz):  # a Byzantine member poisons this round
                bad = MemoryShare(qid, o, q["text"], POISON, _digest(POISON), "pbft", ms, now)
                for peer in nbrs[b]:
                    pending.append((b, peer, bad))
            flood(now)
        a.forget_query(qid)
        if byz:  # one Byzantine node invents a round, its Byzantine neighbours endorse it
            b = rng.choice(sorted(byz))
            fake_q = rng.choice(originals)
            fid = f"{fake_q['id']}#fake{step}"
            ms = tuple(sorted([b] + nbrs[b]))
            fake = MemoryShare(fid, b, fake_q["text"], POISON, _digest(POISON), "pbft", ms, now)
            colluders = [b] + [x for x in nbrs[b] if x in byz]
            for sender in colluders:
                for peer in nbrs[sender]:
                    pending.append((sender, peer, fake))
            if len(colluders) >= 2:  # and a round made of colluders only
                ms2 = tuple(sorted(colluders))
                own = MemoryShare(fid + "c", b, fake_q["text"], POISON, _digest(POISON), "pbft",
                                  ms2, now)
                for sender in colluders:
                    for peer in nbrs[sender]:
                        pending.append((sender, peer, own))
            flood(now)
    poisoned = sum(1 for x in honest for e in agents[x].memory.shared.entries()
                   if POISON in e.answer)
    shared_sizes = [len(agents[x].memory.shared) for x in honest]
    q = max(1, st["queries"])
    return {"part": task["part"], "seed": task["seed"], "n": task["n"], "capacity": task["capacity"],
            "tau": task["tau"], "repeat": task["repeat"], "byzantine": task["byzantine"],
            "alpha": task["alpha"], "beta": task["beta"], "queries": st["queries"],
            "repeat_effective": st["repeats"] / q,
            "hit_rate": st["hits"] / q, "false_hit_rate": st["wrong_hits"] / q,
            "answer_agreement": (st["hits"] - st["wrong_hits"]) / st["hits"] if st["hits"] else 1.0,
            "tokens_saved_ratio": st["tokens_on"] / max(1, st["tokens_off"]),
            "poisoned_entries_accepted": poisoned, "poisoned_answers_served": st["poison_hits"],
            "shared_mean": float(np.mean(shared_sizes)), "space": space}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--n", type=int, default=100, help="nodes (default 100)")
    p.add_argument("--degree", type=int, default=8, help="graph degree (default 8)")
    p.add_argument("--queries", type=int, default=160,
                   help="queries per run (default 160: the workload has 169 questions that are not "
                        "paraphrases, so up to there the repeat share is what --repeats says)")
    p.add_argument("--members", type=int, default=9, help="round members incl. the originator (default 9: the node's proposers_max 8 + 1)")
    p.add_argument("--capacities", default="8,32,128,1024", help="C values")
    p.add_argument("--taus", default="-1,0,0.05,0.1,0.2", help="tau_share values")
    p.add_argument("--repeats", default="0.1,0.33,0.5,0.7", help="share of repeated/paraphrased queries")
    p.add_argument("--byzantine", default="0,0.1,0.2,0.3", help="fractions of Byzantine writers")
    p.add_argument("--trials", type=int, default=3, help="seeds per point (default 3)")


EVICTION = ((1.0, 0.0), (0.0, 600.0), (1.0, 60.0), (1.0, 600.0), (1.0, 6000.0))
"""(alpha, beta) pairs compared at a small capacity (C = 16)."""


def build_tasks(args: argparse.Namespace) -> list[dict]:
    if args.n < 10 or not (2 <= args.degree < args.n) or (args.n * args.degree) % 2:
        raise ExperimentError("--n >= 10, 2 <= --degree < n, n*degree even")
    if args.queries < 1 or args.trials < 1 or not 2 <= args.members <= 16:
        raise ExperimentError("--queries, --trials >= 1 and 2 <= --members <= 16")
    d = MemoryConfig()
    base = {"n": args.n, "degree": args.degree, "queries": args.queries, "members": args.members,
            "interval_s": 10.0, "capacity": d.capacity, "tau": d.tau_share, "repeat": 0.33,
            "byzantine": 0.0, "alpha": d.alpha, "beta": d.beta}
    tasks = []
    for t in range(args.trials):
        for c in parse_list(args.capacities, "capacities", 1, 1e6):
            tasks.append({**base, "part": "capacity", "capacity": int(c), "seed": task_seed(args.seed, "c", c, t)})
        for tau in parse_list(args.taus, "taus", -1, 1):
            tasks.append({**base, "part": "tau", "tau": tau, "seed": task_seed(args.seed, "tau", tau, t)})
        for r in parse_list(args.repeats, "repeats", 0, 1):
            tasks.append({**base, "part": "repeat", "repeat": r, "seed": task_seed(args.seed, "r", r, t)})
        for b in parse_list(args.byzantine, "byzantine", 0, 0.49):
            tasks.append({**base, "part": "byzantine", "byzantine": b, "seed": task_seed(args.seed, "b", b, t)})
        for a, be in EVICTION:
            tasks.append({**base, "part": "eviction", "capacity": 16, "alpha": a, "beta": be,
                          "seed": task_seed(args.seed, "ev", a, be, t)})
    return tasks


def _mean_by(rows, part, key, metric):
    xs = sorted({r[key] for r in rows if r["part"] == part})
    return xs, [float(np.mean([r[metric] for r in rows if r["part"] == part and r[key] == x])) for x in xs]


def run(args: argparse.Namespace, out: Path) -> dict:
    rows = run_sweep(trial, build_tasks(args), workers=args.workers, desc="memory", progress=args.progress)
    write_csv(out / "memory.csv", rows)
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(2, 2, figsize=(10, 7.5))
    panels = [("capacity", "capacity", "C (shared entries)", True), ("tau", "tau", "tau_share", False),
              ("repeat", "repeat", "share of repeated/paraphrased queries", False),
              ("byzantine", "byzantine", "fraction of Byzantine writers", False)]
    for ax, (part, key, label, logx) in zip(axes.flat, panels):
        for metric, style in (("hit_rate", "o-"), ("tokens_saved_ratio", "s--"),
                              ("answer_agreement", "^:")):
            xs, ys = _mean_by(rows, part, key, metric)
            ax.plot(xs, ys, style, label=metric)
        if part == "byzantine":
            xs, ys = _mean_by(rows, part, key, "poisoned_entries_accepted")
            ax.plot(xs, ys, "x-", color="red", label="poisoned entries accepted (count)")
        ax.set_xlabel(label)
        if logx:
            ax.set_xscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("Collaborative memory (means over seeds)")
    save_figure(fig, out / "memory.png")
    files = ["memory.csv", "memory.png"]
    byz = [r for r in rows if r["part"] == "byzantine"]
    ev = {f"alpha={a},beta={b}": float(np.mean([r["hit_rate"] for r in rows if r["part"] == "eviction"
                                                and r["alpha"] == a and r["beta"] == b]))
          for a, b in EVICTION}
    cx, ch = _mean_by(rows, "capacity", "capacity", "hit_rate")
    tx, th = _mean_by(rows, "tau", "tau", "hit_rate")
    rx, rh = _mean_by(rows, "repeat", "repeat", "hit_rate")
    _, rt = _mean_by(rows, "repeat", "repeat", "tokens_saved_ratio")
    _, re_ = _mean_by(rows, "repeat", "repeat", "repeat_effective")
    dflt = [r for r in rows if r["part"] == "tau" and r["tau"] == MemoryConfig().tau_share]
    shared_default = float(np.mean([r["shared_mean"] for r in dflt])) if dflt else 0.0
    decided_default = float(np.mean([r["queries"] * (1 - r["hit_rate"]) for r in dflt])) if dflt else 0.0
    reach = shared_default / decided_default if decided_default else 0.0
    headline = {
        "hit_rate_default": float(np.mean([r["hit_rate"] for r in rows if r["part"] == "tau"
                                           and r["tau"] == MemoryConfig().tau_share])),
        "answer_agreement_min": min(r["answer_agreement"] for r in rows),
        "false_hit_rate_max": max(r["false_hit_rate"] for r in rows),
        "poisoned_entries_accepted": sum(r["poisoned_entries_accepted"] for r in byz),
        "poisoned_answers_served": sum(r["poisoned_answers_served"] for r in byz),
        "hit_rate_by_capacity": dict(zip(map(str, cx), ch)),
        "hit_rate_by_tau": dict(zip(map(str, tx), th)),
        "hit_rate_by_repeat": dict(zip(map(str, rx), rh)),
        "tokens_saved_ratio_by_repeat": dict(zip(map(str, rx), rt)),
        "hit_rate_by_eviction_at_c16": ev,
        "embedding_space": rows[0]["space"] if rows else "",
    }
    findings = [
        f"Hit rate by C: {', '.join(f'C={x}: {y:.3f}' for x, y in zip(cx, ch))}; by share of "
        f"repeated/paraphrased queries: {', '.join(f'{x}: {y:.3f}' for x, y in zip(rx, rh))} "
        f"(tokens memory on/off: {', '.join(f'{x}: {y:.3f}' for x, y in zip(rx, rt))}; "
        f"effective repeat shares {', '.join(f'{y:.2f}' for y in re_)}: once the workload's new "
        "questions run out every query is a repeat).",
        f"Shared entries held per honest node (default point): {shared_default:.1f} of "
        f"{decided_default:.0f} decided rounds, i.e. each entry reaches ~{reach:.0%} of the nodes.",
        f"Hit rate by tau_share: {', '.join(f'{x}: {y:.3f}' for x, y in zip(tx, th))}.",
        f"Eviction at C=16: {', '.join(f'{k}: {v:.3f}' for k, v in ev.items())} (hit rate).",
        f"With up to {max(r['byzantine'] for r in byz):.0%} Byzantine writers sending validly signed "
        f"poisoned and invented entries, {headline['poisoned_entries_accepted']} poisoned entries were "
        f"accepted by honest nodes and {headline['poisoned_answers_served']} poisoned answers served.",
        f"Worst answer agreement of memory hits: {headline['answer_agreement_min']:.3f}; worst false-hit "
        f"rate (wrong answers from memory / queries): {headline['false_hit_rate_max']:.3f}.",
        f"Query vectors: {headline['embedding_space']}.",
    ]
    params = {k: getattr(args, k) for k in ("n", "degree", "queries", "members", "capacities", "taus",
                                            "repeats", "byzantine", "trials", "seed")}
    write_summary(out, NAME, description=__doc__.split("\n\n")[1], params=params, headline=headline,
                  findings=findings, files=files)
    return headline
