"""What a GGUF model is (read from its own metadata) and the user's registry of named models.

Metadata comes from the file's GGUF header through the ``gguf`` package (llama.cpp's own
reader), never from the file name: architecture, display name, parameter size label,
quantisation (``general.file_type``), context length (``<arch>.context_length``) and whether
it carries a chat template (``tokenizer.chat_template``: an instruct model) or not (a base
model, prompted as plain completion). ``GGUFReader`` decodes the whole vocabulary (seconds
for a 256k-token tokenizer), so results are cached by (path, size, mtime) like the file hash.

The registry of models the user added (``p2pmoa models add NAME PATH``) is a JSON file in the
user's config dir: ``$P2PMOA_CONFIG_DIR`` or ``$XDG_CONFIG_HOME/p2pmoa`` (``~/.config/p2pmoa``)
``/models.json``, ``{"NAME": "/absolute/path.gguf"}``. Registered names work everywhere a
model name does (``--model NAME``), through :func:`p2pmoa.models.resolve`.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
"""Registered names: lower-case letters, digits, ``.``, ``_``, ``-`` (at most 64 characters)."""
METADATA_VERSION = 1


class ModelInfoError(Exception):
    """A model cannot be registered or read; the message names the file or name."""


class BadModelName(ModelInfoError):
    pass


class UnknownModelName(ModelInfoError):
    pass


@dataclass(frozen=True)
class ModelMetadata:
    """What the GGUF header says about a model.

    Attributes:
        file: absolute path of the GGUF file.
        size_bytes: file size, bytes.
        architecture: ``general.architecture`` (``llama``, ``gemma3``...).
        display_name: ``general.name`` (empty if absent).
        size_label: ``general.size_label`` (``135M``...; empty if absent).
        quantization: ``general.file_type`` as llama.cpp names it (``Q4_K_M``...), or
            ``unknown``.
        chat: True when the file carries a chat template (instruct model), False for a base
            model.
        context_length: training context, tokens (0 if absent).
    """

    file: str
    size_bytes: int
    architecture: str
    display_name: str
    size_label: str
    quantization: str
    chat: bool
    context_length: int

    def to_dict(self) -> dict:
        return asdict(self)


def _field(reader, key: str, default=None):
    f = reader.fields.get(key)
    if f is None:
        return default
    try:
        return f.contents()
    except Exception:  # noqa: BLE001 - a malformed field is reported as absent
        return default


def _quantization(file_type) -> str:
    import gguf
    if file_type is None:
        return "unknown"
    try:
        name = gguf.LlamaFileType(int(file_type)).name
    except ValueError:
        return f"file_type_{file_type}"
    return name.removeprefix("MOSTLY_")


def read_metadata_uncached(path: Path) -> ModelMetadata:
    """Parse ``path``'s GGUF header with ``gguf.GGUFReader``. Raises ModelInfoError."""
    import gguf
    path = Path(path).expanduser().resolve()
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise ModelInfoError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if magic != b"GGUF":
        raise ModelInfoError(f"{path} is not a GGUF file (magic {magic!r})")
    try:
        reader = gguf.GGUFReader(str(path), "r")
    except Exception as exc:  # noqa: BLE001 - the reader raises several types on bad files
        raise ModelInfoError(f"{path}: unreadable GGUF header ({type(exc).__name__}: {exc})") from exc
    arch = str(_field(reader, "general.architecture", "") or "")
    return ModelMetadata(
        file=str(path), size_bytes=path.stat().st_size, architecture=arch,
        display_name=str(_field(reader, "general.name", "") or ""),
        size_label=str(_field(reader, "general.size_label", "") or ""),
        quantization=_quantization(_field(reader, "general.file_type")),
        chat="tokenizer.chat_template" in reader.fields,
        context_length=int(_field(reader, f"{arch}.context_length", 0) or 0))


def read_metadata(path: Path) -> ModelMetadata:
    """:func:`read_metadata_uncached`, cached by (path, size, mtime) in the p2pmoa cache dir."""
    from p2pmoa.models import _cache_dir
    path = Path(path).expanduser().resolve()
    try:
        st = path.stat()
    except OSError as exc:
        raise ModelInfoError(f"no model file at {path}") from exc
    key = f"{METADATA_VERSION}|{path}|{st.st_size}|{st.st_mtime_ns}"
    cache_file = _cache_dir() / "gguf-metadata.json"
    try:
        cache = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        cache = {}
    if key in cache:
        try:
            return ModelMetadata(**cache[key])
        except TypeError:
            pass
    meta = read_metadata_uncached(path)
    cache[key] = meta.to_dict()
    tmp = cache_file.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(cache))
    os.replace(tmp, cache_file)
    return meta


# --------------------------------------------------------------------------- user registry


def config_dir() -> Path:
    base = os.environ.get("P2PMOA_CONFIG_DIR") or os.path.join(
        os.environ.get("XDG_CONFIG_HOME", str(Path.home() / ".config")), "p2pmoa")
    return Path(base)


def registry_path() -> Path:
    return config_dir() / "models.json"


def load_registry() -> dict[str, str]:
    """``{name: path}`` of the models the user added (empty if none or unreadable)."""
    try:
        data = json.loads(registry_path().read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ModelInfoError(f"{registry_path()} is unreadable ({exc}); fix or delete it") from exc
    if not isinstance(data, dict):
        raise ModelInfoError(f"{registry_path()} must hold a JSON object of name -> path")
    return {str(k): str(v) for k, v in data.items()}


def _save_registry(reg: dict[str, str]) -> None:
    path = registry_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(dict(sorted(reg.items())), indent=2) + "\n")
    os.replace(tmp, path)  # atomic: a crash never leaves half a registry


def registered_path(name: str) -> Path | None:
    """The file registered under ``name``, or None."""
    try:
        p = load_registry().get(name)
    except ModelInfoError:
        return None
    return Path(p) if p else None


def add_model(name: str, path: str | Path, builtin_names=()) -> ModelMetadata:
    """Register a local GGUF under ``name`` after checking it (GGUF magic + readable header).

    Raises:
        BadModelName: the name is malformed, taken by a built-in model, or already added.
        ModelInfoError: the file is missing or not a readable GGUF.
    """
    if not NAME_RE.fullmatch(name):
        raise BadModelName(f"bad model name {name!r}: use 1-64 of a-z 0-9 . _ - (starting with a letter or digit)")
    if name in builtin_names or name == "stand-in" or name.startswith("stand-in:"):
        raise BadModelName(f"{name!r} is a built-in model name; choose another")
    reg = load_registry()
    if name in reg:
        raise BadModelName(f"{name!r} is already registered ({reg[name]}); `p2pmoa models rm {name}` first")
    meta = read_metadata(Path(path))
    reg[name] = meta.file
    _save_registry(reg)
    return meta


def remove_model(name: str) -> str:
    """Forget ``name`` (the file itself is left alone). Returns the path it pointed to."""
    reg = load_registry()
    if name not in reg:
        raise UnknownModelName(f"no added model named {name!r} (see `p2pmoa models list`)")
    path = reg.pop(name)
    _save_registry(reg)
    return path
