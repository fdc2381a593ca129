"""A network nemesis on real processes (Jepsen style): 5 daemons, each in its own network
namespace on a bridged LAN, while a client on the LAN keeps asking questions through the
OpenAI-compatible API and a nemesis injects faults for a fixed budget.

Faults (one at a time, each held for a few seconds, then healed):

* ``partition``: nft drop rules split the 5 hosts into two sides (1|4 or 2|3), both directions;
* ``loss``: 20% random loss on every host (nft ``numgen random mod 100 < 20 drop``, in and out);
* ``kill9``: SIGKILL one daemon, restart it on the same data dir (its durable buffer resumes);
* ``clock_jump``: restart one daemon with its protocol clock shifted by +-12 s (inside the
  tolerance; see README "Clocks"). A namespace cannot have its own wall clock and the daemon
  reads its clock offset at start, so a jump is a restart with a new offset.

Delay is left out: these kernels have no ``netem`` qdisc, and a userspace delaying relay
between namespaces would replace the bridge by a process of ours, no longer a real LAN path.

After the budget every fault is healed and every accepted query is followed to the end
(``GET /v1/queries/{id}`` on the node it was sent to). Outcomes:

* accepted = the node took the query (answered 200, or failed explicitly with 500/504, or it is
  in its durable buffer); 429 busy / connection refused before acceptance are not accepted;
* answered = 200, or ``done`` in the buffer; failed_explicit = 500/504, or ``failed``;
* lost = accepted but neither, once the settle time is over (target 0);
* divergent_decisions = queries for which two nodes recorded different decision digests
  (target 0), from every node's ``/status`` decisions sampled through the run.

Prints one JSON object as the last line. Needs root (namespaces), iproute2 and nftables.

    python bench/nemesis.py [--budget-s 120] [--seed 1]
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import threading
import time
import urllib.error
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from node.netlab import Lab, NetnsNode  # noqa: E402
from node.procs import wait_mesh  # noqa: E402

NODE_FLAGS = ["--proposers-max", "5", "--deadline-s", "20", "--round-timeout-s", "20",
              "--stand-in-delay-s", "0.2"]
QUESTIONS = ["What is the boiling point of water?", "Name a prime number.", "Why is the sky blue?",
             "What is the capital of Italy?", "How many days are in a week?"]


def percentile(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(q * len(xs)))], 3)


class Nemesis:
    def __init__(self, budget_s: float, seed: int, workers: int = 2, log=print,
                 min_faults: int = 0) -> None:
        self.budget_s = budget_s
        self.min_faults = min_faults  # the short test variant: at least one fault of each kind
        self.rng = random.Random(seed)
        self.workers = workers
        self.log = log
        self.lock = threading.Lock()
        self.queries: dict[str, dict] = {}  # qid -> {node, status, latency_s, outcome}
        self.decisions: dict[str, dict[str, str]] = {}  # qid -> node name -> digest
        self.faults: list[dict] = []
        self.stop = threading.Event()
        self.restarting: set[str] = set()
        self._kinds: list[str] = []

    # -- client ------------------------------------------------------------------------------

    def client(self, nodes: list[NetnsNode], wid: int) -> None:
        n = 0
        while not self.stop.is_set():
            with self.lock:
                up = [x for x in nodes if x.name not in self.restarting]
            node = self.rng.choice(up)
            qid = f"nem{wid}q{n}"
            n += 1
            rec = {"node": node.name, "status": None, "latency_s": None}
            with self.lock:
                self.queries[qid] = rec
            body = {"model": "p2pmoa/pbft", "p2pmoa": {"query_id": qid},
                    "messages": [{"role": "user", "content": self.rng.choice(QUESTIONS)}]}
            t0 = time.monotonic()
            try:
                status, _ = node.post("/v1/chat/completions", body, timeout_s=90)
                rec["status"] = status
                rec["latency_s"] = time.monotonic() - t0
            except Exception as exc:  # noqa: BLE001 - node killed mid-answer: resolved at settle
                rec["status"] = f"error: {type(exc).__name__}"
            if rec["status"] == 429 or isinstance(rec["status"], str):
                self.stop.wait(0.5)  # busy or down: back off a little

    # -- decisions ---------------------------------------------------------------------------

    def sample_decisions(self, nodes: list[NetnsNode]) -> None:
        for node in nodes:
            try:
                st = node.status() if node.alive() else None
            except Exception:  # noqa: BLE001 - e.g. http.client.IncompleteRead during a kill
                st = None
            if not st:
                continue
            for qid, d in ((st.get("protocol") or {}).get("decisions") or {}).items():
                with self.lock:
                    self.decisions.setdefault(qid, {})[node.name] = d.get("digest")

    def sampler(self, nodes: list[NetnsNode]) -> None:
        while not self.stop.wait(1.0):
            self.sample_decisions(nodes)

    # -- faults ------------------------------------------------------------------------------

    def inject(self, lab: Lab, nodes: list[NetnsNode], hold_s: float) -> None:
        if not self._kinds:  # every kind once per cycle of four, in a seeded random order
            self._kinds = self.rng.sample(["partition", "loss", "kill9", "clock_jump"], 4)
        kind = self._kinds.pop()
        t = round(time.monotonic() - self.t0, 1)
        if kind == "partition":
            k = self.rng.choice([1, 2])
            side = self.rng.sample(range(len(nodes)), k)
            a = [nodes[i].host for i in side]
            b = [x.host for i, x in enumerate(nodes) if i not in side]
            for h in a:
                lab.set_faults(h, drop_from=[x.ip for x in b])
            for h in b:
                lab.set_faults(h, drop_from=[x.ip for x in a])
            self.faults.append({"t": t, "kind": kind, "side": [nodes[i].name for i in side]})
            self.stop.wait(hold_s)
            for x in nodes:
                lab.set_faults(x.host)
        elif kind == "loss":
            for x in nodes:
                lab.set_faults(x.host, loss_pct=20)
            self.faults.append({"t": t, "kind": kind, "pct": 20})
            self.stop.wait(hold_s)
            for x in nodes:
                lab.set_faults(x.host)
        else:
            victim = self.rng.choice(nodes)
            with self.lock:
                self.restarting.add(victim.name)
            if kind == "kill9":
                victim.kill9()
                self.faults.append({"t": t, "kind": kind, "node": victim.name})
                self.stop.wait(min(hold_s, 3.0))
            else:
                offset = self.rng.choice([-12.0, 12.0])
                victim.stop()
                victim.extra = [a for a in victim.extra if not a.startswith("--clock-offset-s=")]
                victim.extra.append(f"--clock-offset-s={offset}")
                self.faults.append({"t": t, "kind": kind, "node": victim.name, "offset_s": offset})
            victim.start()
            try:
                victim.wait_ready(60)
            finally:
                with self.lock:
                    self.restarting.discard(victim.name)

    # -- the run -----------------------------------------------------------------------------

    def run(self) -> dict:
        base = Path(tempfile.mkdtemp(prefix="p2pmoa-nemesis-"))
        nodes: list[NetnsNode] = []
        with Lab(lan_hosts=5) as lab:
            try:
                for i, h in enumerate(lab.hosts):
                    boot = [x.addr for x in nodes[:2]]
                    nodes.append(NetnsNode(f"n{i}", base / f"n{i}", host=h, model=f"stand-in:m{i % 3}",
                                           bootstrap=boot, extra=list(NODE_FLAGS)))
                for x in nodes:
                    x.start()
                for x in nodes:
                    x.wait_ready(90)
                wait_mesh(nodes, 90)
                self.log(f"mesh of {len(nodes)} namespaced daemons up; nemesis for {self.budget_s:.0f} s")
                self.t0 = time.monotonic()
                threads = [threading.Thread(target=self.client, args=(nodes, w), daemon=True)
                           for w in range(self.workers)]
                threads.append(threading.Thread(target=self.sampler, args=(nodes,), daemon=True))
                for th in threads:
                    th.start()
                while (time.monotonic() - self.t0 < self.budget_s
                       or len(self.faults) < self.min_faults):
                    self.stop.wait(self.rng.uniform(1.0, 3.0))
                    self.inject(lab, nodes, hold_s=self.rng.uniform(3.0, 6.0))
                    self.log(f"  t={time.monotonic() - self.t0:5.1f}s fault {self.faults[-1]}")
                self.stop.set()
                for x in nodes:
                    lab.set_faults(x.host)
                for th in threads:
                    th.join(timeout=120)
                return self.settle(nodes)
            finally:
                self.stop.set()
                for x in nodes:
                    x.stop()

    def settle(self, nodes: list[NetnsNode], settle_s: float = 90.0) -> dict:
        by_name = {x.name: x for x in nodes}
        deadline = time.monotonic() + settle_s
        outcome: dict[str, str] = {}
        while True:
            self.sample_decisions(nodes)
            pending = 0
            for qid, rec in self.queries.items():
                st = rec["status"]
                if st == 200:
                    outcome[qid] = "answered"
                elif st in (500, 504):
                    outcome[qid] = "failed_explicit"
                elif st in (400, 409, 413, 429):
                    outcome[qid] = "refused"
                else:  # connection error mid-request (kill -9), or still running: ask the buffer
                    try:
                        q = by_name[rec["node"]].get(f"/v1/queries/{qid}", timeout_s=5)
                    except urllib.error.HTTPError as e:
                        outcome[qid] = "refused" if e.code == 404 else "unknown"
                        continue
                    except Exception:  # noqa: BLE001 - node not answering (yet)
                        outcome[qid] = "unknown"
                        pending += 1
                        continue
                    state = q.get("state")
                    outcome[qid] = {"done": "answered", "failed": "failed_explicit"}.get(state, "lost")
                    pending += outcome[qid] == "lost"
            if pending == 0 or time.monotonic() > deadline:
                break
            time.sleep(1.0)
        lat = [r["latency_s"] for r in self.queries.values() if r["status"] == 200]
        accepted = [q for q, o in outcome.items() if o != "refused"]
        divergent = [q for q, d in self.decisions.items() if len(set(d.values())) > 1]
        kinds: dict[str, int] = {}
        for f in self.faults:
            kinds[f["kind"]] = kinds.get(f["kind"], 0) + 1
        return {
            "queries_sent": len(self.queries),
            "accepted": len(accepted),
            "answered": sum(o == "answered" for o in outcome.values()),
            "failed_explicit": sum(o == "failed_explicit" for o in outcome.values()),
            "lost": sum(o in ("lost", "unknown") for o in outcome.values()),
            "divergent_decisions": len(divergent),
            "p50_s": percentile(lat, 0.50),
            "p99_s": percentile(lat, 0.99),
            "faults_injected": len(self.faults),
            "faults_by_kind": kinds,
            "refused_busy_or_down": sum(o == "refused" for o in outcome.values()),
            "decisions_compared": sum(len(d) > 1 for d in self.decisions.values()),
            "budget_s": self.budget_s,
            "lost_ids": [q for q, o in outcome.items() if o in ("lost", "unknown")][:10],
            "divergent_ids": divergent[:10],
        }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--budget-s", type=float, default=120.0, help="seconds of fault injection")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workers", type=int, default=2, help="concurrent client connections")
    a = ap.parse_args(argv)
    result = Nemesis(a.budget_s, a.seed, a.workers, log=lambda m: print(m, file=sys.stderr)).run()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
