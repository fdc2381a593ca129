"""`p2pmoa sim EXPERIMENT --ray`: trials as Ray tasks give byte-identical files to the local run.

Ray is the optional extra ``p2pmoa[ray]``; ``make setup`` installs it when it installs cleanly
(it does on Python 3.11 here), and these tests run whenever it is installed.
"""
from __future__ import annotations

import sys

import pytest

from p2pmoa.cli import main

BFT = ["sim", "bft", "--n-values", "4,7", "--trials", "3", "--weighted-n", "5", "--horizon-s", "20",
       "--seed", "11", "--no-progress"]


def test_ray_with_two_workers_writes_the_same_bytes_as_one_local_worker(tmp_path, capsys):
    pytest.importorskip("ray", reason="Ray is the optional extra p2pmoa[ray]")
    import ray
    local, remote = tmp_path / "local", tmp_path / "ray"
    assert main(BFT + ["--out", str(local), "--workers", "1"]) == 0
    assert main(BFT + ["--out", str(remote), "--workers", "2", "--ray"]) == 0
    assert not ray.is_initialized()  # the local Ray started on demand was shut down
    files = sorted(p.name for p in local.iterdir())
    assert "bft.csv" in files and sorted(p.name for p in remote.iterdir()) == files
    for name in files:
        assert (local / name).read_bytes() == (remote / name).read_bytes(), f"{name} differs under --ray"
    heads = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("{")]
    assert len(heads) == 2 and heads[0].replace(str(local), "X") == heads[1].replace(str(remote), "X")


def test_ray_missing_is_a_one_line_error_with_exit_2(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the extra were not installed
    assert main(BFT + ["--out", str(tmp_path / "x"), "--ray"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "p2pmoa sim: --ray needs Ray: pip install 'p2pmoa[ray]'"

