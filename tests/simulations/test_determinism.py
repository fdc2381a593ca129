"""Seeded runs are byte-identical: twice in one tree, and across commits (golden fingerprints).

Every harness runs on the one virtual-time driver (consensus/driver.py). The fingerprints below
were recorded on commit 759d05d (before the driver existed: four schedulers) and the driver
reproduced them exactly, so moving the harnesses onto it changed no seeded output. A change
that is MEANT to change seeded outputs (a protocol fix, a new draw) updates the constant in the
same commit and says why in its message; any other change of a fingerprint is a bug.
"""
from __future__ import annotations

import hashlib

from p2pmoa.cli import main


def _h(x) -> str:
    return hashlib.sha256(repr(x).encode()).hexdigest()[:16]


def fingerprints() -> dict[str, str]:
    from consensus.scenarios import run_seed
    from simulations.experiments import bft, queue
    from simulations.faults import FaultSpec
    from simulations.mesh import MeshSpec, run_mesh
    from simulations.network import LinkModel, TopologySpec, build_topology

    out = {}
    g = build_topology(TopologySpec(kind="regular", n=40, degree=4), 3)
    r = run_mesh(g, MeshSpec(queries=4, method="pbft", proposers=5, byzantine=FaultSpec("equivocate", 0.2),
                             link=LinkModel(loss_p=0.05, dup_p=0.05, reorder_p=0.05)), 7)
    out["mesh-pbft"] = _h((r.rows, r.stats, r.byzantine, r.refused, r.failed))
    r = run_mesh(g, MeshSpec(queries=4, method="vote", proposers=5, byzantine=FaultSpec("crash_recover", 0.2),
                             partition_heal_s=2.0), 7)
    out["mesh-vote"] = _h((r.rows, r.stats, r.byzantine, r.refused, r.failed))
    out["bft-equivocate"] = _h(bft.trial({"scenario": "x", "n": 7, "byz": ["m000", "m001"], "mode": "equivocate",
                                          "loss": 0.05, "heal_s": 2.0, "horizon_s": 30.0, "seed": 5}))
    out["queue-admission"] = _h(queue.trial({"n": 8, "m": 2, "k": 2, "lam": 0.05, "seed": 3, "alpha_max_s": 1.0,
                                             "variant": "admission", "capacity": 50, "rate_window_s": 60.0,
                                             "horizon_s": 200.0}))
    out["pbft-scenarios"] = _h([run_seed(s).fingerprint() for s in range(20)])
    out["pbft-twins"] = _h([run_seed(s, behaviour="twins").fingerprint() for s in range(10)])
    return out


GOLDEN = {
    "mesh-pbft": "bf0d2113d9f278f7",
    "mesh-vote": "44a6d9b1a2eca3f0",
    "bft-equivocate": "2c99ecb672801bef",
    "queue-admission": "cec7acd58b2efb52",
    "pbft-scenarios": "a52b2a0fa4bb0e04",
    "pbft-twins": "aeb1490c44a4c2c8",
}


def test_seeded_runs_match_the_recorded_fingerprints():
    got = fingerprints()
    assert got == GOLDEN, ("seeded outputs changed; if that is intended, update GOLDEN in this "
                           f"file and say why in the commit message: {got}")


def run_mesh_cli(out) -> int:
    return main(["sim", "mesh", "--n", "24", "--queries", "3", "--shares", "0,0.25",
                 "--methods", "pbft,averaging", "--behaviours", "silent", "--loss", "0.05",
                 "--seed", "11", "--out", str(out), "--workers", "1", "--no-progress"])


def test_same_seed_twice_gives_byte_identical_mesh_files(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert run_mesh_cli(a) == 0 and run_mesh_cli(b) == 0
    files = sorted(p.name for p in a.iterdir())
    assert "mesh.csv" in files and "summary.json" in files
    assert files == sorted(p.name for p in b.iterdir())
    for name in files:
        assert (a / name).read_bytes() == (b / name).read_bytes(), f"{name} differs between two runs"
