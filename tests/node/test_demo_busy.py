"""The demo's mesh answers on a busy machine (issue 9: on a loaded 2-core machine every node
answered the demo question with 429 "node busy (unstable)": the warm-up generation, 26-70 s
under load, became the service time and admission then refused everything).

Runs :func:`node.demo.run_demo` (four real processes: two SmolLM2-135M, two Gemma-3-270M, real
generations and warm-ups) while two CPU-bound processes, started and stopped here, compete
for the cores. The mesh ranks with the hashing embedder to keep the test's cost bounded (the
embedder plays no part in admission; the generations and their warm-ups do).
"""
from __future__ import annotations

import subprocess
import sys

import pytest

from node.demo import run_demo

pytestmark = [pytest.mark.real_net, pytest.mark.real_model]


@pytest.fixture()
def cpu_burners():
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        yield procs
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait(timeout=30)


def test_demo_mesh_answers_while_two_cpu_hogs_compete(tmp_path, cpu_burners, capsys):
    code = run_demo("What is the capital of France? Answer in one sentence.", "pbft",
                    stand_in=False, base=tmp_path / "demo", embedder="hashing")
    out = capsys.readouterr().out
    assert all(p.poll() is None for p in cpu_burners), "the CPU hogs must run the whole time"
    assert code == 0, out[-3000:]
    assert "ANSWER" in out and "all nodes recorded the same decision" in out
    assert "HTTP 429" not in out
