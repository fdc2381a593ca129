"""`python -m p2pmoa.models --check`: does the installed llama.cpp decode on this CPU?

A llama.cpp built for CPU features the machine cannot use does not raise: it kills the process
(a -march=native build segfaulted on the first decode on a Sapphire Rapids VM, in ggml's AMX
kernels). `make setup` relies on this check to rebuild with portable flags, so it must tell a
crash from a refusal from success.
"""
from __future__ import annotations

import pytest

from p2pmoa import models
from p2pmoa.models import check_runs, resolve


@pytest.mark.real_model
def test_the_packaged_model_decodes_here():
    path, _ = resolve("smollm2-135m")
    assert check_runs("smollm2-135m", path) is None


def test_a_crashing_llama_cpp_is_reported_as_a_crash(monkeypatch, tmp_path):
    monkeypatch.setattr(models, "_CHECK_CHILD", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)")
    why = check_runs("tiny", tmp_path / "x.gguf")
    assert why is not None and "crashed with signal 11" in why and "LLAMA_CMAKE_ARGS" in why


def test_a_file_llama_cpp_refuses_is_a_failure_not_a_crash(tmp_path):
    bad = tmp_path / "not-a-model.gguf"
    bad.write_bytes(b"this is not a GGUF file")
    why = check_runs("bad", bad)
    assert why is not None and why.startswith("bad: llama.cpp failed to decode:") and "signal" not in why


def test_cli_check_exits_3_when_a_model_cannot_decode(monkeypatch, capsys):
    monkeypatch.setattr(models, "check_runs", lambda name, path: f"{name}: llama.cpp crashed with signal 11")
    assert models.main(["--check"]) == 3
    assert "crashed with signal 11" in capsys.readouterr().err
