"""`p2pmoa models list|add|rm|show`: figures come from the GGUF header, the registry is checked.

Small GGUF files are written with llama.cpp's own ``gguf.GGUFWriter`` (a real header, a tiny
tensor), so every test runs in milliseconds; one test reads the packaged SmolLM2 file.
"""
from __future__ import annotations

import json

import gguf
import numpy as np
import pytest

from p2pmoa.cli import main
from p2pmoa.models import resolve


def write_gguf(path, *, arch="llama", name="Tiny Test", ctx=1234, file_type=15, chat=True):
    w = gguf.GGUFWriter(str(path), arch)
    w.add_name(name)
    w.add_context_length(ctx)
    w.add_file_type(file_type)
    if chat:
        w.add_chat_template("{% for m in messages %}{{ m['content'] }}{% endfor %}")
    w.add_tensor("t", np.zeros((4,), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")  # one metadata cache: the packaged file is read once


@pytest.fixture(autouse=True)
def config_dirs(tmp_path, monkeypatch, shared_cache):
    monkeypatch.setenv("P2PMOA_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("P2PMOA_CACHE", str(shared_cache))


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_add_then_list_show_and_use_by_name_then_rm(tmp_path, capsys):
    f = write_gguf(tmp_path / "tiny.gguf")
    code, out, _ = run(capsys, "models", "add", "tiny", str(f))
    assert code == 0 and "Q4_K_M" in out and "chat" in out

    code, out, _ = run(capsys, "models", "list", "--json")
    rows = {r["name"]: r for r in json.loads(out)}
    assert rows["tiny"]["source"] == "added"
    assert rows["tiny"]["quantization"] == "Q4_K_M"
    assert rows["tiny"]["context_length"] == 1234
    assert rows["tiny"]["chat"] is True
    assert rows["tiny"]["size_bytes"] == f.stat().st_size
    code, out, _ = run(capsys, "models", "list")
    line = next(ln for ln in out.splitlines() if ln.startswith("tiny "))
    assert "Q4_K_M" in line and "chat" in line and "1234" in line and str(f) in line

    code, out, _ = run(capsys, "models", "show", "tiny", "--json")
    info = json.loads(out)
    assert info["display_name"] == "Tiny Test" and info["architecture"] == "llama"
    assert len(info["sha256"]) == 64 and info["model_id"].startswith("tiny@")

    path, spec = resolve("tiny")  # a registered name works wherever a model name does
    assert path == f.resolve() and spec.name == "tiny" and spec.chat

    code, out, _ = run(capsys, "models", "rm", "tiny")
    assert code == 0 and f.exists()
    code, out, _ = run(capsys, "models", "list", "--json")
    assert "tiny" not in {r["name"] for r in json.loads(out)}


def test_base_model_without_chat_template_is_listed_as_base(tmp_path, capsys):
    f = write_gguf(tmp_path / "b.gguf", arch="gemma3", ctx=32768, file_type=3, chat=False)
    assert run(capsys, "models", "add", "b1", str(f))[0] == 0
    code, out, _ = run(capsys, "models", "show", "b1", "--json")
    info = json.loads(out)
    assert info["chat"] is False and info["quantization"] == "Q4_1" and info["context_length"] == 32768


@pytest.mark.parametrize("argv, needle", [
    (("models", "add", "Bad Name!", "{gguf}"), "bad model name"),
    (("models", "add", "smollm2-135m", "{gguf}"), "built-in"),
    (("models", "add", "x1", "{text}"), "not a GGUF file"),
    (("models", "add", "x2", "{missing}"), "no model file"),
    (("models", "rm", "nope"), "no added model"),
    (("models", "rm", "gemma3-270m"), "built in"),
    (("models", "show", "nope"), "no model file"),
])
def test_bad_input_is_one_line_on_stderr_with_exit_2(tmp_path, capsys, argv, needle):
    good = write_gguf(tmp_path / "g.gguf")
    text = tmp_path / "t.gguf"
    text.write_text("not a model")
    subs = {"{gguf}": str(good), "{text}": str(text), "{missing}": str(tmp_path / "missing.gguf")}
    code, out, err = run(capsys, *[subs.get(a, a) for a in argv])
    assert code == 2
    assert needle in err and len(err.strip().splitlines()) == 1


def test_adding_the_same_name_twice_is_refused_and_keeps_the_first(tmp_path, capsys):
    a, b = write_gguf(tmp_path / "a.gguf"), write_gguf(tmp_path / "b.gguf", ctx=99)
    assert run(capsys, "models", "add", "m", str(a))[0] == 0
    code, _, err = run(capsys, "models", "add", "m", str(b))
    assert code == 2 and "already registered" in err
    assert resolve("m")[0] == a.resolve()


def test_packaged_smollm2_metadata_is_read_from_its_header(capsys):
    code, out, _ = run(capsys, "models", "show", "smollm2-135m", "--json")
    assert code == 0
    info = json.loads(out)
    assert info["quantization"] == "Q4_1" and info["chat"] is True
    assert info["context_length"] == 8192 and info["architecture"] == "llama"


def test_metadata_cache_follows_a_replaced_file(tmp_path):
    import os
    from p2pmoa.modelinfo import read_metadata
    f = write_gguf(tmp_path / "m.gguf", ctx=100)
    assert read_metadata(f).context_length == 100
    write_gguf(tmp_path / "m.gguf", ctx=4096, name="A longer display name")  # new size and mtime
    os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 1_000_000))
    assert read_metadata(f).context_length == 4096


def test_a_corrupt_registry_is_a_one_line_error_naming_the_file(tmp_path, capsys):
    from p2pmoa.modelinfo import registry_path
    registry_path().parent.mkdir(parents=True, exist_ok=True)
    registry_path().write_text("{not json")
    for argv in (("models", "list"), ("models", "add", "x", str(write_gguf(tmp_path / "x.gguf"))),
                 ("models", "rm", "x")):
        code, _, err = run(capsys, *argv)
        assert code == 2 and str(registry_path()) in err and len(err.strip().splitlines()) == 1
