"""Reliability benchmark (issue 6): Byzantine sweep, frame fuzzing, hostile client, churn, load.

Sections (each can be sized or skipped by flags; ``--quick`` shrinks them all):

1. **PBFT sweep**: ``--seeds`` seeded scenarios of :mod:`consensus.scenarios` on the production
   replica (N = 4, 7, 10, 13; f Byzantine of ten behaviours; 0/5/20 % loss; healing partition;
   every fourth seed with trust-like integer weights and Byzantine weight <= 0.30 W). Then the
   same checker beyond the bound (f+1 Twins attackers, Byzantine weight 0.40 W) must find a
   violation. Failing seeds are printed with a replay command.
2. **Embedding sweep**: robust aggregators under 0..45 % adversarial vectors, bound checks.
3. **Codec fuzzing**: ``--fuzz-frames`` hostile frames through ``p2pmoa.identity.FrameReader``;
   none may be accepted and nothing but ``FrameError`` may be raised.
4. **Live hostile client**: a real daemon, a raw libp2p client sending ``--live-frames``
   hostile frames (flood); every one must show up in /metrics, honest queries keep working.
5. **Churn**: 5 daemons, kill -9 + restart a random one every ``--churn-interval-s`` for
   ``--churn-s``; a trickle of queries; no accepted query lost; fds/RSS compared.
6. **Load**: measure the service rate, then offer twice that for ``--load-s``: busy (429 with
   Retry-After) is fine, an accepted query that is not answered is not.
7. **Sybil** (issue 12): 8 fresh identities answering instantly against 5 honest nodes on the
   in-memory mesh running the real ``PeerProtocol`` (pbft, vote, averaging; open mesh):
   share of delivered answers from an honest proposer and the most seats sybils got in a
   round; the farming schedule on ``TrustBook`` (largest weight share of a coalition of
   fewer than N/3 members over 100 epochs, N = 4..16); how often a ground key (sorting
   first) is view-0 primary under the round-seeded order, against 1/N.

Prints a table, then ONE JSON object as the last line.
Replay a PBFT seed: ``python -c "from consensus.scenarios import run_seed; print(run_seed(S))"``.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import random
import shutil
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def rss_mb(pid: int | None = None) -> float:
    try:
        with open(f"/proc/{pid or 'self'}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def fd_count(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


PEAK = {"rss_mb": 0.0}


def note_rss(pid: int | None = None) -> float:
    v = rss_mb(pid)
    PEAK["rss_mb"] = max(PEAK["rss_mb"], v)
    return v


# ------------------------------------------------------------------------ 7. sybil


def sybil_section(queries_per_node: int, seeds: int) -> dict:
    from consensus.pbft import primary_order
    from consensus.trust_attacks import farming_coalition_weight_max
    from p2pmoa.sybil import run_sybil_mesh
    t0 = time.perf_counter()
    queries = honest = seats = 0
    for method in ("pbft", "vote", "averaging"):
        for seed in range(seeds):
            o = run_sybil_mesh(honest=5, sybils=8, method=method, seed=seed,
                               queries_per_node=queries_per_node)
            queries += o.queries
            honest += o.honest_answers
            seats = max(seats, o.sybil_seats_max)
    farming = farming_coalition_weight_max(epochs=100)
    rng = random.Random(12)
    n, rounds = 9, 20_000
    members = {f"12D3KooW{rng.getrandbits(64):016x}": 1 for _ in range(n - 1)}
    ground = "0" * 12 + "ground"  # sorts before every honest id: always first under sort
    members[ground] = 1
    hits = sum(primary_order(members, b"p2pmoa/pbft/v1\x00" + rng.randbytes(16))[0] == ground
               for _ in range(rounds))
    return {"sybil_queries": queries, "sybil_honest_answer_rate": round(honest / max(1, queries), 4),
            "sybil_seats_max": seats, "farming_coalition_weight_max": round(farming, 4),
            "primary_grind_advantage": round(hits / rounds * n, 3),
            "primary_grind_advantage_sorted_order": n if primary_order(members)[0] == ground else 0,
            "seconds": round(time.perf_counter() - t0, 1)}


# ------------------------------------------------------------------------ 1. PBFT sweep


def pbft_sweep(seeds: int, seed0: int, beyond: int) -> dict:
    from consensus.scenarios import VIEW_CHANGES_AFTER_HEAL_MAX, run_scenario, scenario_from_seed
    t0 = time.perf_counter()
    violations, liveness = [], []
    views = collections.Counter()
    by_n = collections.Counter()
    by_behaviour = collections.Counter()
    inflight_max = 0
    for i in range(seeds):
        seed = seed0 + i
        weighted = seed % 4 == 3
        sc = scenario_from_seed(seed, weighted=weighted)
        o = run_scenario(sc)
        by_n[sc.n] += 1
        for _, b in sc.byzantine:
            by_behaviour[b] += 1
        views[o.views_after_heal] += 1
        inflight_max = max(inflight_max, o.in_flight_max)
        replay = f"run_seed({seed}{', weighted=True' if weighted else ''})"
        if o.violations:
            violations.append(seed)
            print(f"SAFETY VIOLATION {sc.describe()} -> {o.violations[:2]} replay: {replay}",
                  flush=True)
        if not o.live or o.views_after_heal > VIEW_CHANGES_AFTER_HEAL_MAX:
            liveness.append(seed)
            print(f"LIVENESS FAILURE {sc.describe()} live={o.live} steps={o.steps} "
                  f"views_after_heal={o.views_after_heal} fingerprint={o.fingerprint()[:16]} "
                  f"replay: {replay}", flush=True)
        if (i + 1) % 1000 == 0:
            print(f"  pbft: {i + 1}/{seeds} seeds, {len(violations)} violations, "
                  f"{len(liveness)} liveness failures, {time.perf_counter() - t0:.0f} s",
                  flush=True)
        note_rss()
    # beyond the bound: the checker must find violations
    found_count = found_weighted = 0
    first_found = None
    for i in range(beyond):
        n = (4, 7, 10, 13)[i % 4]
        o = run_scenario(scenario_from_seed(900_000 + i, n=n, byzantine_count=(n - 1) // 3 + 1,
                                            behaviour="twins", steps_max=8000))
        if o.violations:
            found_count += 1
            first_found = first_found or (o.scenario.describe(), o.violations[0])
        o = run_scenario(scenario_from_seed(950_000 + i, weighted=True, share_over=0.40,
                                            behaviour="twins", steps_max=8000))
        found_weighted += bool(o.violations)
    # replay check: the first few seeds give byte-identical fingerprints
    replay_ok = all(run_scenario(scenario_from_seed(seed0 + k)).fingerprint()
                    == run_scenario(scenario_from_seed(seed0 + k)).fingerprint()
                    for k in range(5))
    return {
        "seeds": seeds, "safety_violations": len(violations), "violation_seeds": violations[:20],
        "liveness_failures": len(liveness), "liveness_seeds": liveness[:20],
        "views_after_heal": dict(sorted(views.items())), "by_n": dict(sorted(by_n.items())),
        "by_behaviour": dict(sorted(by_behaviour.items())), "in_flight_max": inflight_max,
        "beyond_runs": beyond, "beyond_f_plus_1_violations": found_count,
        "beyond_weight_040_violations": found_weighted,
        "violation_found_beyond_bound": found_count > 0 and found_weighted > 0,
        "first_beyond_violation": first_found, "replay_identical": replay_ok,
        "seconds": round(time.perf_counter() - t0, 1),
    }


# ------------------------------------------------------------------------ 2. embeddings


def embedding_sweep(trials: int) -> dict:
    import numpy as np

    from consensus.averaging import (InvalidVector, check_vectors, coordinate_median,
                                     geometric_median, medoid, trimmed_mean, weighted_mean)
    dim, n = 64, 40
    out = collections.defaultdict(list)
    bound_violations = 0
    mean_broken = 0
    for t in range(trials):
        rng = np.random.default_rng(t)
        for frac in (0.0, 0.10, 0.20, 0.33, 0.45):
            for attack in ("random", "flipped", "colluding"):
                centre = rng.normal(size=dim)
                centre /= np.linalg.norm(centre)
                nb = int(round(frac * n))
                h = centre + 0.25 * rng.normal(size=(n - nb, dim)) / np.sqrt(dim)
                h /= np.linalg.norm(h, axis=1, keepdims=True)
                hm = h.mean(axis=0)
                if attack == "random":
                    b = rng.normal(size=(nb, dim))
                elif attack == "flipped":
                    b = np.tile(-hm, (nb, 1))
                else:
                    o = rng.normal(size=dim)
                    o -= o @ centre * centre
                    b = np.tile(centre + 0.6 * o / np.linalg.norm(o), (nb, 1))
                if nb:
                    b /= np.linalg.norm(b, axis=1, keepdims=True)
                x = check_vectors(np.vstack([h, b]) if nb else h, dim=dim)
                r = float(np.max(np.linalg.norm(h - hm, axis=1)))
                hs = len(h) / len(x)
                lo, hi = h.min(axis=0), h.max(axis=0)
                res = {"mean": weighted_mean(x), "trimmed_mean": trimmed_mean(x, 0.2),
                       "median": coordinate_median(x), "geometric_median": geometric_median(x),
                       "medoid": medoid(x)}
                for name, v in res.items():
                    out[(name, frac)].append(float(np.linalg.norm(v - hm)) / max(r, 1e-12))
                ok = (np.all(res["median"] >= lo - 1e-9) and np.all(res["median"] <= hi + 1e-9)
                      and np.linalg.norm(res["geometric_median"] - hm) <= 2 * hs * r / (2 * hs - 1) + 1e-6
                      and np.linalg.norm(res["medoid"] - hm) <= (2 * hs + 1) * r / (2 * hs - 1) + 1e-6)
                if frac <= 0.20:
                    ok = ok and np.all(res["trimmed_mean"] >= lo - 1e-9) and np.all(
                        res["trimmed_mean"] <= hi + 1e-9)
                bound_violations += not ok
                mean_broken += bool(nb) and attack == "flipped" and out[("mean", frac)][-1] > 1
    rejected = 0
    base = np.eye(dim)[:3]
    for bad in (np.full(dim, np.nan), np.full(dim, np.inf), np.ones(dim - 1) / 8, 5 * np.eye(dim)[0],
                np.zeros(dim)):
        try:
            check_vectors([list(base[0]), list(bad)], dim=dim)
        except InvalidVector:
            rejected += 1
    table = {f"{name}@{int(frac * 100)}%": round(max(v), 3) for (name, frac), v in sorted(out.items())}
    return {"trials": trials, "bound_violations": bound_violations,
            "mean_broken_by_flipped": mean_broken, "malformed_rejected": f"{rejected}/5",
            "max_error_over_honest_radius": table}


# ------------------------------------------------------------------------ 3. codec fuzz


def codec_fuzz(frames: int, seed: int) -> dict:
    from p2pmoa.identity import Ed25519Identity, Ed25519Verifier, FrameReader
    from p2pmoa.messages import FrameError
    from tests.reliability.hostile import forged_frames, hostile_frames, valid_frames
    rng = random.Random(seed)
    attacker = Ed25519Identity.from_seed(bytes(32))
    victim = Ed25519Identity.from_seed(b"\x01" * 32)
    reasons = collections.Counter()
    accepted = crashes = 0
    crash_examples = []
    t0 = time.perf_counter()
    now = 1_700_000_000.0
    done = 0
    while done < frames:
        reader = FrameReader(Ed25519Verifier())  # a fresh node every 100k frames
        for f in valid_frames(attacker, now):
            reader.read(f, now)
        batch = min(100_000, frames - done)
        stream = list(hostile_frames(rng, attacker, now, batch - batch // 50))
        stream += [("forged", f) for f in forged_frames(rng, attacker, victim.public_key, now,
                                                         batch // 50)]
        rng.shuffle(stream)
        for kind, f in stream:
            try:
                reader.read(f, now)
                accepted += 1
                print(f"ACCEPTED hostile frame kind={kind} {f[:60]!r}", flush=True)
            except FrameError as exc:
                reasons[exc.reason] += 1
            except Exception as exc:  # noqa: BLE001 - this is what we count
                crashes += 1
                if len(crash_examples) < 5:
                    crash_examples.append(f"{kind}: {type(exc).__name__}: {exc}"[:200])
                    print(f"CRASH kind={kind} {type(exc).__name__}: {exc} frame={f[:80]!r}",
                          flush=True)
        done += len(stream)
        note_rss()
        print(f"  fuzz: {done}/{frames} frames, {time.perf_counter() - t0:.0f} s", flush=True)
    return {"frames": done, "accepted": accepted, "crashes": crashes,
            "crash_examples": crash_examples, "reasons": dict(reasons.most_common()),
            "frames_per_s": round(done / (time.perf_counter() - t0))}


# ------------------------------------------------------------------------ HTTP helpers


def post(api: str, prompt: str, timeout_s: float = 120.0) -> tuple[int, dict, dict]:
    """POST a chat completion; returns (status, body, headers); status -1 = connection lost."""
    req = urllib.request.Request(
        f"http://{api}/v1/chat/completions",
        data=json.dumps({"messages": [{"role": "user", "content": prompt}]}).encode(),
        headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as r:
            return r.status, json.loads(r.read()), dict(r.headers)
    except urllib.error.HTTPError as e:
        try:
            body = json.loads(e.read() or b"{}")
        except ValueError:
            body = {}
        return e.code, body, dict(e.headers)
    except (OSError, ValueError) as e:
        return -1, {"error": f"{type(e).__name__}: {e}"}, {}


def buffer_records(data_dir: Path) -> list:
    from p2pmoa.buffer import PromptBuffer, SQLiteStore
    buf = PromptBuffer(SQLiteStore(data_dir / "buffer.sqlite3"))
    return [buf.get(q) for q in list(buf._q)]  # noqa: SLF001


# ------------------------------------------------------------------------ 4. live hostile


def live_hostile(frames: int, base: Path) -> dict:
    import trio

    from node.procs import NodeProcess
    from node.transport import TransportLimits, load_or_create_identity, open_libp2p_transport
    from p2pmoa.identity import Ed25519Identity, Ed25519Verifier, FrameReader
    from p2pmoa.messages import BadSignature, FrameError
    from tests.reliability.hostile import forged_frames, hostile_frames, valid_frames
    from tests.reliability.test_daemon_hostile import rejects, trust_of

    node = NodeProcess("victim", base / "victim", model="stand-in",
                       extra=["--proposers-max", "1", "--deadline-s", "1"]).start()
    result: dict = {"sent": 0}
    try:
        node.wait_ready(60)
        key = base / "mallory.key"
        mallory = Ed25519Identity.load_or_create(key)
        rng = random.Random(11)
        honest: list[int] = []
        stop = threading.Event()

        def honest_client():
            i = 0
            while not stop.is_set():
                s, _, _ = post(node.api, f"honest {i}", 60)
                honest.append(s)
                i += 1

        async def attack():
            kp = load_or_create_identity(str(key))
            async with open_libp2p_transport(kp, bootstrap=[node.addr],
                                             limits=TransportLimits(frame_bytes_max=4 << 20)) as t:
                with trio.fail_after(30):
                    while node.peer_id not in t.peers():
                        await trio.sleep(0.05)
                now = time.time()
                for f in valid_frames(mallory, now):
                    await t.request(node.peer_id, f)
                local = FrameReader(Ed25519Verifier())
                for f in valid_frames(mallory, now):
                    local.read(f, now)
                b0 = sum(rejects(await trio.to_thread.run_sync(node.get, "/metrics")).values())
                sent = 0
                forged = []
                t0 = time.perf_counter()
                for _, f in hostile_frames(rng, mallory, now, frames):
                    try:
                        local.read(f, now)
                    except BadSignature:
                        forged.append(f)
                        continue
                    except FrameError:
                        pass
                    await t.send(node.peer_id, f)
                    sent += 1
                await t.send(node.peer_id, b"\x00" * ((2 << 20) + 1))
                sent += 1
                flood_s = time.perf_counter() - t0
                with trio.move_on_after(120):
                    while True:
                        n = sum(rejects(await trio.to_thread.run_sync(node.get, "/metrics")).values())
                        if n - b0 >= sent:
                            break
                        await trio.sleep(0.2)
                text = await trio.to_thread.run_sync(node.get, "/metrics")
                counted = sum(rejects(text).values()) - b0
                trust_before_forgery = trust_of(text, mallory.peer_id)
                forged += forged_frames(rng, mallory, Ed25519Identity.generate().public_key,
                                        time.time(), 10)
                for f in forged:
                    await t.send(node.peer_id, f)
                sent_f = len(forged)
                with trio.move_on_after(60):
                    while sum(rejects(await trio.to_thread.run_sync(node.get, "/metrics")).values()) - b0 < sent + sent_f:
                        await trio.sleep(0.2)
                text = await trio.to_thread.run_sync(node.get, "/metrics")
                return dict(sent=sent + sent_f, counted=sum(rejects(text).values()) - b0,
                            counted_before_forgery=counted, flood_frames_per_s=round(sent / flood_s),
                            trust_after_malformed=trust_before_forgery,
                            trust_after_forgery=trust_of(text, mallory.peer_id),
                            reasons={k.split("reason=")[1].strip('"}'): v
                                     for k, v in rejects(text).items() if v})

        th = threading.Thread(target=honest_client, daemon=True)
        th.start()
        result = trio.run(attack)
        stop.set()
        th.join(90)
        result["honest_queries"] = len(honest)
        result["honest_answered"] = sum(s == 200 for s in honest)
        result["node_alive"] = node.alive()
        result["node_rss_mb"] = round(note_rss(node.proc.pid), 1)
        s, _, _ = post(node.api, "still there?")
        result["answers_after_attack"] = s == 200
    finally:
        node.stop()
    return result


# ------------------------------------------------------------------------ 5. churn


def churn(duration_s: float, interval_s: float, base: Path, seed: int) -> dict:
    from node.procs import NodeProcess, wait_mesh
    rng = random.Random(seed)
    nodes: list[NodeProcess] = []
    flags = ["--proposers-max", "5", "--deadline-s", "3", "--round-timeout-s", "10"]
    for i in range(5):
        nodes.append(NodeProcess(f"c{i}", base / f"c{i}", model=f"stand-in:m{i % 2}",
                                 bootstrap=[n.addr for n in nodes[:1]] if i else [],
                                 extra=flags))
    # node 0 bootstraps to the others once they exist, so any restart finds someone
    nodes[0].bootstrap = [n.addr for n in nodes[1:3]]
    for n in nodes:
        n.start()
    for n in nodes:
        n.wait_ready(90)
    wait_mesh(nodes, 90)
    start = {n.name: (fd_count(n.proc.pid), rss_mb(n.proc.pid)) for n in nodes}
    outcomes: list[tuple[str, str, int, dict]] = []  # (node, prompt, status, body)
    lock = threading.Lock()
    stop = threading.Event()
    restarts = collections.Counter()
    killed_at: dict[str, float] = {}

    def ask_one(n, prompt):
        s, body, _ = post(n.api, prompt, 120)
        with lock:
            outcomes.append((n.name, prompt, s, body))

    def trickle():
        i = 0
        ts = []
        while not stop.is_set():
            live = [n for n in nodes if n.alive()]
            if live:
                n = rng.choice(live)
                t = threading.Thread(target=ask_one, args=(n, f"churn query {i}: {rng.random():.6f}"))
                t.start()
                ts.append(t)
                i += 1
            stop.wait(2.0)
        for t in ts:
            t.join(180)

    tt = threading.Thread(target=trickle)
    tt.start()
    t0 = time.monotonic()
    rejoin_s = []
    try:
        while time.monotonic() - t0 < duration_s:
            time.sleep(max(0.0, min(interval_s, duration_s - (time.monotonic() - t0))))
            if time.monotonic() - t0 >= duration_s:
                break
            victim = rng.choice(nodes)
            victim.kill9()
            killed_at[victim.name] = time.monotonic()
            restarts[victim.name] += 1
            victim.start()
            victim.wait_ready(90)
            tr = time.monotonic()
            try:
                wait_mesh(nodes, 60)
                rejoin_s.append(round(time.monotonic() - tr, 2))
            except Exception as exc:  # noqa: BLE001 - recorded
                rejoin_s.append(None)
                print(f"  churn: {victim.name} did not rejoin: {exc}", flush=True)
            for n in nodes:
                note_rss(n.proc.pid)
            print(f"  churn: t={time.monotonic() - t0:.0f}s restarted {victim.name}, "
                  f"{len(outcomes)} answers so far", flush=True)
    finally:
        stop.set()
        tt.join(300)
        end = {n.name: (fd_count(n.proc.pid), rss_mb(n.proc.pid)) for n in nodes}
        # let recovered queries finish, then read every durable buffer
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and any(
                ((n.status() or {}).get("buffer") or {}).get("unfinished", 0) for n in nodes):
            time.sleep(0.5)
        for n in nodes:
            n.stop()
    records = {}
    for n in nodes:
        for r in buffer_records(n.data_dir):
            if r.local:
                records[r.announce.prompt] = (n.name, r.state.value, r.detail)
    answered = sum(1 for _, _, s, _ in outcomes if s == 200)
    busy = sum(1 for _, _, s, _ in outcomes if s == 429)
    reported = sum(1 for _, _, s, _ in outcomes if s not in (200, 429, -1))
    cut = [(name, p) for name, p, s, _ in outcomes if s == -1]
    # a query whose connection was cut by a kill: accepted iff the node buffered it
    cut_accepted = [(name, p) for name, p in cut if p in records]
    cut_lost = [(name, p, records[p][1]) for name, p in cut_accepted
                if records[p][1] not in ("done", "failed")]
    accepted = answered + reported + len(cut_accepted)
    lost = len(cut_lost)
    # answered exactly once: each answered prompt has exactly one DONE record
    not_done = [p for name, p, s, _ in outcomes if s == 200 and records.get(p, ("", ""))[1] != "done"]
    return {"duration_s": duration_s, "interval_s": interval_s, "restarts": dict(restarts),
            "queries_sent": len(outcomes), "answered": answered, "busy": busy,
            "reported_failed": reported, "cut_by_kill": len(cut),
            "cut_by_kill_recovered": len(cut_accepted) - len(cut_lost),
            "cut_by_kill_never_buffered": len(cut) - len(cut_accepted),
            "accepted": accepted, "lost": lost, "lost_examples": cut_lost[:5],
            "answered_without_done_record": len(not_done), "rejoin_s": rejoin_s,
            "fds_start_end": {k: (start[k][0], end[k][0]) for k in start},
            "rss_mb_start_end": {k: (round(start[k][1], 1), round(end[k][1], 1)) for k in start},
            "status_counts": dict(collections.Counter(s for _, _, s, _ in outcomes))}


# ------------------------------------------------------------------------ 6. load


def load(duration_s: float, base: Path, delay_s: float) -> dict:
    from node.procs import NodeProcess
    node = NodeProcess("load", base / "load", model="stand-in",
                       extra=["--proposers-max", "1", "--deadline-s", "30", "--buffer-max", "16",
                              "--stand-in-delay-s", str(delay_s)]).start()
    try:
        node.wait_ready(60)
        # service rate: sequential queries
        t0 = time.monotonic()
        k = 0
        while time.monotonic() - t0 < max(5.0, 6 * delay_s) or k < 3:
            s, _, _ = post(node.api, f"warm {k}")
            assert s == 200, s
            k += 1
        rate = k / (time.monotonic() - t0)
        offered = 2 * rate
        res: list[tuple[int, dict, dict, float]] = []
        lock = threading.Lock()

        def one(i):
            t = time.monotonic()
            s, b, h = post(node.api, f"load {i}", 300)
            with lock:
                res.append((s, b, h, time.monotonic() - t))

        threads = []
        rss = []
        t0 = time.monotonic()
        i = 0
        while time.monotonic() - t0 < duration_s:
            th = threading.Thread(target=one, args=(i,))
            th.start()
            threads.append(th)
            i += 1
            rss.append(note_rss(node.proc.pid))
            time.sleep(1.0 / offered)
        for th in threads:
            th.join(600)
        status = collections.Counter(s for s, *_ in res)
        busy = [(s, h) for s, _, h, _ in res if s == 429]
        with_retry = sum(1 for _, h in busy if any(k.lower() == "retry-after" for k in h))
        # accepted = not refused at admission; every accepted one must be answered
        accepted = [r for r in res if r[0] != 429]
        lost = [r for r in accepted if r[0] != 200]
        lat = sorted(r[3] for r in res if r[0] == 200)
        return {"service_rate_per_s": round(rate, 2), "offered_per_s": round(offered, 2),
                "duration_s": duration_s, "queries": len(res), "answered": status.get(200, 0),
                "busy": len(busy), "busy_with_retry_after": with_retry,
                "accepted": len(accepted), "accepted_lost": len(lost),
                "lost_examples": [(s, str(b)[:120]) for s, b, _, _ in lost[:3]],
                "p50_s": round(lat[len(lat) // 2], 2) if lat else None,
                "p95_s": round(lat[int(len(lat) * 0.95)], 2) if lat else None,
                "node_rss_mb_first_last_max": (round(rss[0], 1), round(rss[-1], 1),
                                               round(max(rss), 1)) if rss else None,
                "status_counts": dict(status), "node_alive": node.alive()}
    finally:
        node.stop()


# ------------------------------------------------------------------------ main


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="reduced sizes for every section")
    p.add_argument("--seeds", type=int, help="PBFT scenarios (default 10000; quick 300)")
    p.add_argument("--seed0", type=int, default=0, help="first PBFT seed (default 0)")
    p.add_argument("--beyond", type=int, help="beyond-the-bound runs (default 200; quick 40)")
    p.add_argument("--embedding-trials", type=int, help="default 50; quick 5")
    p.add_argument("--fuzz-frames", type=int, help="codec fuzz frames (default 1000000; quick 50000)")
    p.add_argument("--live-frames", type=int, help="hostile frames at a daemon (default 20000; quick 2000)")
    p.add_argument("--churn-s", type=float, help="churn duration s (default 300; quick 60; 0 skips)")
    p.add_argument("--churn-interval-s", type=float, help="kill period s (default 30; quick 15)")
    p.add_argument("--load-s", type=float, help="load duration s (default 120; quick 20; 0 skips)")
    p.add_argument("--load-delay-s", type=float, default=0.5,
                   help="stand-in generation time per query in the load test (default 0.5)")
    p.add_argument("--sybil-queries", type=int, help="queries per honest node per sybil run "
                   "(default 4; quick 1)")
    p.add_argument("--skip", default="", help="comma list of sections to skip: "
                   "pbft,embedding,fuzz,live,churn,load,sybil")
    a = p.parse_args(argv)
    q = a.quick
    seeds = a.seeds if a.seeds is not None else (300 if q else 10_000)
    beyond = a.beyond if a.beyond is not None else (40 if q else 200)
    etr = a.embedding_trials if a.embedding_trials is not None else (5 if q else 50)
    fuzz = a.fuzz_frames if a.fuzz_frames is not None else (50_000 if q else 1_000_000)
    live = a.live_frames if a.live_frames is not None else (2_000 if q else 20_000)
    churn_s = a.churn_s if a.churn_s is not None else (60 if q else 300)
    churn_iv = a.churn_interval_s if a.churn_interval_s is not None else (15 if q else 30)
    load_s = a.load_s if a.load_s is not None else (20 if q else 120)
    skip = set(filter(None, a.skip.split(",")))
    base = Path(tempfile.mkdtemp(prefix="p2pmoa-reliability-"))
    r: dict = {}
    t_all = time.perf_counter()
    try:
        if "pbft" not in skip:
            print(f"== PBFT sweep: {seeds} seeds", flush=True)
            r["pbft"] = pbft_sweep(seeds, a.seed0, beyond)
        if "embedding" not in skip:
            print(f"== embedding sweep: {etr} trials", flush=True)
            r["embedding"] = embedding_sweep(etr)
        if "fuzz" not in skip:
            print(f"== codec fuzzing: {fuzz} frames", flush=True)
            r["fuzz"] = codec_fuzz(fuzz, 7)
        if "live" not in skip:
            print(f"== live hostile client: {live} frames", flush=True)
            r["live"] = live_hostile(live, base)
        if "churn" not in skip and churn_s > 0:
            print(f"== churn: {churn_s} s, kill every {churn_iv} s", flush=True)
            r["churn"] = churn(churn_s, churn_iv, base, 5)
        if "load" not in skip and load_s > 0:
            print(f"== load: {load_s} s at 2x service rate", flush=True)
            r["load"] = load(load_s, base, a.load_delay_s)
        if "sybil" not in skip:
            sq = a.sybil_queries if a.sybil_queries is not None else (1 if q else 4)
            print(f"== sybil: 8 instant sybils vs 5 honest, {sq} queries per node", flush=True)
            r["sybil"] = sybil_section(sq, 1 if q else 3)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    pb, fz, lv = r.get("pbft", {}), r.get("fuzz", {}), r.get("live", {})
    ch, ld, em = r.get("churn", {}), r.get("load", {}), r.get("embedding", {})
    sy = r.get("sybil", {})
    print()
    print(f"{'section':<12} {'figure':<40} value")
    print("-" * 90)
    for sec, d in r.items():
        for k, v in d.items():
            print(f"{sec:<12} {k:<40} {json.dumps(v)}")
    print("-" * 90)
    print(f"total {time.perf_counter() - t_all:.0f} s")
    out = {
        "seeds": pb.get("seeds", 0),
        "safety_violations": pb.get("safety_violations", 0),
        "liveness_failures": pb.get("liveness_failures", 0),
        "violation_found_beyond_bound": pb.get("violation_found_beyond_bound", False),
        "embedding_bound_violations": em.get("bound_violations", 0),
        "malformed_frames": fz.get("frames", 0) + lv.get("sent", 0),
        "crashes": fz.get("crashes", 0) + (0 if lv.get("node_alive", True) else 1)
        + (0 if ld.get("node_alive", True) else 1),
        "forged_or_replayed_accepted": fz.get("accepted", 0),
        "live_frames_uncounted": max(0, lv.get("sent", 0) - lv.get("counted", 0)),
        "churn_queries_accepted": ch.get("accepted", 0),
        "churn_queries_lost": ch.get("lost", 0),
        "load_accepted_lost": ld.get("accepted_lost", 0),
        "load_busy_with_retry_after": f"{ld.get('busy_with_retry_after', 0)}/{ld.get('busy', 0)}",
        "peak_rss_mb": round(PEAK["rss_mb"], 1),
        "sybil_honest_answer_rate": sy.get("sybil_honest_answer_rate"),
        "sybil_seats_max": sy.get("sybil_seats_max"),
        "farming_coalition_weight_max": sy.get("farming_coalition_weight_max"),
        "primary_grind_advantage": sy.get("primary_grind_advantage"),
        "quick": q,
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
