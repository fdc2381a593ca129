"""Benchmark: collaborative memory on the shipped workload, with the real embedder.

Workload: ``tests/data/memory_workload.json`` (270 queries in arrival order; 101 paraphrases of
earlier ones, 60 look-alikes that ask something else). Every query is embedded with the mesh's
real embedder (centred gemma3-270m) and replayed through the production memory core
(:class:`p2pmoa.memory.Memory`, the code the daemon runs) at one originator:

* a query that is a near-duplicate of a shared entry is answered from memory;
* any other query costs a round; the round's decided answer is the query's reference answer
  (an oracle mesh: a STAND-IN for the consensus, stated here because no LLM runs in this
  bench), which is then remembered and shared by the ``tau_share`` rule.

Figures (ONE JSON object, last line of stdout):

* ``hit_rate``: queries answered from memory / queries.
* ``false_hit_rate``: look-alike queries answered from memory with an answer that differs from
  their own reference answer / look-alike queries (target <= 0.02). Also
  ``false_hits_all_queries`` (wrong memory answers / all queries) and the same rule on the
  held-out pairs ``tests/data/memory_pairs_heldout.json`` (written after the first rule was
  frozen): ``heldout_lookalike_accept`` and ``heldout_paraphrase_accept``, and the second set
  ``tests/data/memory_pairs_heldout2.json`` (written before the canonical-form rewrite):
  ``heldout2_*``.
* ``tokens_saved_ratio``: tokens with memory on / memory off (target <= 0.75). Cost model: a
  round costs ``members * (prompt tokens + completion tokens)`` of generation plus the
  embedding input the protocol spends on it (each member embeds its answer, then every
  member embeds every candidate: ``members * (1 + members) * completion tokens``); prompt
  tokens are counted with the real tokenizer on the messages the node would build (role +
  retrieved notes + question: notes cost tokens), completion tokens are the node's default
  budget (``--completion-tokens``, 96); memory on also pays one query embedding per query.
  A hit costs only that embedding. ``generation_tokens_saved_ratio`` is the same ratio over
  generation tokens alone.
* ``answer_agreement``: hits whose memory answer equals the fresh consensus answer (the
  query's reference answer) / hits.
* ``retrieval_ms_p50``: median wall time of one ``Memory.retrieve`` (top-k of both tiers and
  the near-duplicate check) with 10,000 stored entries, half in each tier (real workload
  vectors plus random unit vectors of the same dimension; one BLAS thread, see below);
  ``retrieval_cpu_ms_p50`` the same in process CPU time (what the load of a shared machine
  does not inflate) and ``load_avg_1m`` the load it ran under.
* ``poisoned_entries_accepted``: shared entries holding a poisoned answer, or a round that
  was never decided, found in honest nodes' memory after Byzantine members tried forged,
  unsigned, validly signed but undecided, wrong-query and colluding entries on the in-memory
  mesh running the production peer protocol with Ed25519 (target 0).

Usage: python bench/memory.py [--limit N] [--embedder hashing] [--record-vectors FILE]
                              [--workload FILE] [--pairs FILE] [--pairs2 FILE] [--vectors FILE]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import time
from pathlib import Path

# bench/ holds consensus.py and friends: keep this directory off the import path so that
# `import consensus` finds the package, and run against the repository checkout.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
sys.path.insert(0, os.path.dirname(_HERE))
# One BLAS thread: a 10,000 x 640 matrix-vector product is ~1 ms of work, and OpenBLAS's
# thread pool made it 3-4x slower on this shared 2-core machine (measured 28 ms vs 7.9 ms
# under load 10). Set OPENBLAS_NUM_THREADS yourself to measure otherwise.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from p2pmoa.memory import (PRIVATE, SHARED, Memory, MemoryConfig, MemoryEntry,  # noqa: E402
                           build_messages, near_duplicate)

ROOT = Path(__file__).resolve().parent.parent
WORKLOAD = ROOT / "tests" / "data" / "memory_workload.json"
HELDOUT = ROOT / "tests" / "data" / "memory_pairs_heldout.json"
HELDOUT2 = ROOT / "tests" / "data" / "memory_pairs_heldout2.json"
ROLE = "a helpful, concise assistant"


def replay(work, V, cfg: MemoryConfig, count_tokens, members: int, completion_tokens: int) -> dict:
    """Replay the workload through one node's memory; returns the figures."""
    mem = Memory(cfg)
    hits = wrong = look = look_wrong = 0
    tok_on = tok_off = gen_on = gen_off = 0
    # embedding tokens of a round: every member embeds its own answer, then every member
    # embeds every candidate of the bundle (p2pmoa/protocol.py, _member_start)
    round_embed = members * completion_tokens + members * members * completion_tokens
    for i, q in enumerate(work):
        v = V[i]
        base_prompt = count_tokens(ROLE) + count_tokens(q["text"])
        gen_off += members * (base_prompt + completion_tokens)
        tok_off += members * (base_prompt + completion_tokens) + round_embed
        tok_on += count_tokens(q["text"])  # the originator embeds the query first
        r = mem.retrieve(q["text"], v)
        look += q["kind"] == "lookalike"
        if r.hit is not None:
            hits += 1
            bad = r.hit.answer != q["answer"]
            wrong += bad
            look_wrong += bad and q["kind"] == "lookalike"
            continue
        msgs = build_messages(ROLE, q["text"], r)
        gen = members * (sum(count_tokens(m.content) for m in msgs) + completion_tokens)
        gen_on += gen
        tok_on += gen + round_embed
        now = float(i)
        mem.remember_private(MemoryEntry(q["id"], PRIVATE, q["text"], q["answer"], v, now), now)
        share, _, dup = mem.should_share(q["text"], v)
        if share:
            mem.add_shared(MemoryEntry("o/" + q["id"], SHARED, q["text"], q["answer"], v, now), now)
    n = len(work)
    return {"hit_rate": hits / n, "hits": hits, "wrong_hits": wrong,
            "false_hit_rate": look_wrong / max(1, look), "false_hits_all_queries": wrong / n,
            "answer_agreement": (hits - wrong) / hits if hits else None,
            "tokens_saved_ratio": tok_on / tok_off, "tokens_on": tok_on, "tokens_off": tok_off,
            "generation_tokens_saved_ratio": gen_on / gen_off,
            "shared_entries": len(mem.shared)}


def retrieval_ms_p50(V, texts, n_entries: int, rng: np.random.Generator) -> tuple[float, float]:
    """(wall ms, CPU ms) median of one retrieval with ``n_entries`` stored, half per tier."""
    dim = V.shape[1]
    cfg = MemoryConfig(capacity=n_entries, private_max=n_entries)
    mem = Memory(cfg)
    R = rng.standard_normal((n_entries, dim)).astype(np.float32)
    R[: len(V)] = V
    R /= np.linalg.norm(R, axis=1, keepdims=True)
    half = n_entries // 2
    for j in range(n_entries):
        cap = PRIVATE if j >= half else SHARED
        mem.tier(cap).add(MemoryEntry(f"{cap}{j}", cap, texts[j % len(texts)], "a", R[j], 0.0), 0.0)
    wall, cpu = [], []
    for i in range(min(200, len(V))):
        t0, c0 = time.perf_counter(), time.process_time()
        mem.retrieve(texts[i], V[i])
        wall.append((time.perf_counter() - t0) * 1000)
        cpu.append((time.process_time() - c0) * 1000)
    return statistics.median(wall), statistics.median(cpu)


def heldout(embedder, cfg: MemoryConfig, path: Path = HELDOUT, prefix: str = "heldout") -> dict:
    pairs = json.loads(path.read_text())["pairs"]
    out = {"paraphrase": [0, 0], "lookalike": [0, 0]}
    V = embedder.embed([t for p in pairs for t in (p["a"], p["b"])])
    for i, p in enumerate(pairs):
        a, b = V[2 * i], V[2 * i + 1]
        ok = near_duplicate(p["b"], float(a @ b), p["a"], cfg.near_dup_cos)
        out[p["label"]][0] += ok
        out[p["label"]][1] += 1
    return {f"{prefix}_paraphrase_accept": out["paraphrase"][0] / out["paraphrase"][1],
            f"{prefix}_lookalike_accept": out["lookalike"][0] / out["lookalike"][1],
            f"{prefix}_pairs": len(pairs)}


def poisoning(n_trials: int) -> int:
    """Poisoned entries found in honest memories after the attacks of the protocol tests."""
    from p2pmoa.identity import seal
    from p2pmoa.messages import MemoryShare
    from p2pmoa.testing import make_mesh

    accepted = 0
    for t in range(n_trials):
        n = 7
        mems = {i: Memory(MemoryConfig()) for i in range(n)}
        mesh, ids = make_mesh(n, faults={6: "silent"}, memories=mems, seed=t)
        q = f"What is the capital of country number {t}?"
        mesh.ask(ids[0], "q", q)
        mesh.run()
        byz, byz2 = mesh.nodes[ids[4]].proto.signer, mesh.nodes[ids[5]].proto.signer
        members = tuple(sorted(ids[:6]))
        poison = f"POISON {t}"

        def share(origin, mem_, answer=poison, qid="q", query=q):
            return MemoryShare(qid, origin, query, answer, hashlib.sha256(answer.encode()).digest(),
                               "pbft", tuple(sorted(mem_)), mesh.now)
        right = mesh.nodes[ids[0]].proto.decision("q").answer
        attacks = [
            (byz, share(ids[4], members)),                                   # signed, undecided answer
            (byz, share(ids[4], members, qid="never", query=q + " again")),  # invented round
            (byz, share(ids[4], members, answer=right, query="Other question?")),  # wrong query
            (byz, share(ids[4], members, qid="fake", query="Colluders?")),   # colluders vouch
            (byz2, share(ids[4], members, qid="fake", query="Colluders?")),
            (byz, share(ids[4], (ids[4], ids[5]), qid="own", query="Own round?")),  # a round of
            (byz2, share(ids[4], (ids[4], ids[5]), qid="own", query="Own round?")),  # colluders only
        ]
        frames = [seal(s, m, now=mesh.now, nonce=bytes([k + 1]) * 16) for k, (s, m) in enumerate(attacks)]
        forged = bytearray(seal(byz, share(ids[1], members), now=mesh.now, nonce=b"\x77" * 16))
        forged[-3] ^= 0x55
        unsigned = bytearray(frames[0])
        unsigned[-64:] = b"\x00" * 64
        for k, f in enumerate(frames + [bytes(forged), bytes(unsigned)]):
            src = attacks[k][0].peer_id if k < len(attacks) else byz.peer_id
            for pid in ids:
                if pid != src:
                    mesh.inject(src, pid, f)
        mesh.run()
        honest = [i for i in range(n) if i not in (4, 5)]
        for i in honest:
            for e in mems[i].shared.entries():
                if e.answer != right or e.query != q:
                    accepted += 1
    return accepted


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=0, help="replay only the first N queries (0: all)")
    ap.add_argument("--workload", type=Path, default=WORKLOAD, help="workload JSON (same format as the shipped one)")
    ap.add_argument("--pairs", type=Path, default=HELDOUT, help="labelled pairs JSON for the held-out figures")
    ap.add_argument("--pairs2", type=Path, default=HELDOUT2, help="second labelled pairs JSON (heldout2_* figures)")
    ap.add_argument("--no-heldout", action="store_true", help="skip the held-out pair figures "
                    "(they embed 408 more texts; the guard alone is checked on them in tests/p2pmoa/test_memory.py)")
    ap.add_argument("--vectors", type=Path, help="reuse workload embeddings recorded with --record-vectors "
                    "(must be of the same embedding space) instead of embedding the workload again")
    ap.add_argument("--embedder", default="gemma3-270m", help="embedding model (default: the real mesh default); 'hashing' = stand-in")
    ap.add_argument("--members", type=int, default=4, help="round members in the cost model (default 4)")
    ap.add_argument("--completion-tokens", type=int, default=96, help="completion tokens per generation in the cost model (default 96, the node's max_tokens)")
    ap.add_argument("--entries", type=int, default=10_000, help="stored entries for retrieval_ms_p50, half per tier (default 10000)")
    ap.add_argument("--poison-trials", type=int, default=5, help="poisoning scenarios (default 5)")
    ap.add_argument("--record-vectors", metavar="FILE", help="also save the workload embeddings (float16 .npz) for the simulator")
    args = ap.parse_args()
    work = json.loads(args.workload.read_text())["queries"]
    if args.limit:
        work = work[: args.limit]
    t0 = time.perf_counter()
    if args.embedder == "hashing":
        from p2pmoa.embed import HashingEmbedder
        emb = HashingEmbedder(64)

        def count_tokens(text: str) -> int:
            return len(text.split())
    else:
        from p2pmoa.embed import LlamaEmbedder
        emb = LlamaEmbedder(args.embedder)

        def count_tokens(text: str) -> int:
            return len(emb._llm.tokenize(text.encode("utf-8"), add_bos=False))
    texts = [q["text"] for q in work]
    if args.vectors:
        rec = np.load(args.vectors)
        if str(rec["space_id"]) != emb.space_id or list(rec["ids"][: len(work)]) != [q["id"] for q in work]:
            raise SystemExit(f"--vectors {args.vectors}: other space or workload than {emb.space_id}")
        V = rec["vectors"][: len(work)].astype(np.float32)
    else:
        V = emb.embed(texts)
    embed_s = time.perf_counter() - t0
    print(f"embedded {len(texts)} queries in {embed_s:.1f} s ({emb.space_id})", file=sys.stderr)
    if args.record_vectors:
        np.savez_compressed(args.record_vectors, vectors=V.astype(np.float16),
                            ids=np.array([q["id"] for q in work]), space_id=np.array(emb.space_id))
    cfg = MemoryConfig()
    result = replay(work, V, cfg, count_tokens, args.members, args.completion_tokens)
    sweep = {}
    for th in (0.3, 0.45, 0.6, 0.75):
        r = replay(work, V, MemoryConfig(near_dup_cos=th), count_tokens, args.members,
                   args.completion_tokens)
        sweep[str(th)] = {k: round(r[k], 4) for k in ("hit_rate", "false_hit_rate", "tokens_saved_ratio")}
    notes = {}
    for k in (0, 1):
        r = replay(work, V, MemoryConfig(k_priv=k, k_shared=k), count_tokens, args.members,
                   args.completion_tokens)
        notes[f"k={k}"] = {n: round(r[n], 4) for n in ("tokens_saved_ratio", "generation_tokens_saved_ratio")}
    if not args.no_heldout:
        result.update(heldout(emb, cfg, args.pairs))
        result.update(heldout(emb, cfg, args.pairs2, "heldout2"))
    result["retrieval_ms_p50"], result["retrieval_cpu_ms_p50"] = retrieval_ms_p50(
        V, texts, args.entries, np.random.default_rng(0))
    result["load_avg_1m"] = os.getloadavg()[0]
    result["poisoned_entries_accepted"] = poisoning(args.poison_trials)
    out = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in result.items()}
    out.update({"near_dup_cos_sweep": sweep, "notes_k_sweep": notes,
                "workload_vectors": str(args.vectors) if args.vectors else "embedded in this run", "queries": len(work),
                "paraphrases": sum(q["kind"] == "paraphrase" for q in work),
                "lookalikes": sum(q["kind"] == "lookalike" for q in work),
                "embedder": emb.space_id, "entries": args.entries,
                "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
                "config": {"near_dup_cos": cfg.near_dup_cos, "retrieve_min_cos": cfg.retrieve_min_cos,
                           "k_priv": cfg.k_priv, "k_shared": cfg.k_shared, "tau_share": cfg.tau_share},
                "embed_s": round(embed_s, 1)})
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
