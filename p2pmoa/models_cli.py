"""`p2pmoa models list | add NAME PATH | rm NAME | show NAME`: the local model catalogue.

Registered through the ``p2pmoa.commands`` entry points. Built-in models (the two packaged on
PyPI) and the models the user added (``models add``, kept in the config dir, see
:mod:`p2pmoa.modelinfo`) are listed together; every figure shown comes from the GGUF file's
own metadata. Downloading from a model hub is not offered: register a file you already have.

Errors are one line on stderr with exit code 2 (bad name, missing or non-GGUF file).
"""
from __future__ import annotations

import argparse
import json
import sys

from p2pmoa.modelinfo import (ModelInfoError, ModelMetadata, add_model, load_registry,
                              read_metadata, remove_model)
from p2pmoa.models import REGISTRY, ModelError, resolve


def _human(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


def catalogue() -> list[dict]:
    """Every model known by name: built-in first, then added. Unavailable ones say why."""
    rows: list[dict] = []
    names = [(n, "built-in") for n in REGISTRY] + [(n, "added") for n in sorted(load_registry())]
    for name, source in names:
        row: dict = {"name": name, "source": source}
        try:
            path, _ = resolve(name, assemble=False)
            row.update(read_metadata(path).to_dict())
        except (ModelError, ModelInfoError) as exc:
            row["error"] = str(exc)
        rows.append(row)
    return rows


def _kind(meta: dict) -> str:
    return "chat" if meta.get("chat") else "base"


def _list(args: argparse.Namespace) -> int:
    try:
        rows = catalogue()
    except ModelInfoError as exc:  # the registry file itself is unreadable
        return _fail("list", exc)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'NAME':16} {'SIZE':>9} {'QUANT':8} {'TYPE':5} {'CONTEXT':>7}  FILE")
    for r in rows:
        if "error" in r:
            print(f"{r['name']:16} {'-':>9} {'-':8} {'-':5} {'-':>7}  unavailable: {r['error']}")
            continue
        print(f"{r['name']:16} {_human(r['size_bytes']):>9} {r['quantization']:8} {_kind(r):5} "
              f"{r['context_length']:>7}  {r['file']}")
    return 0


def _fail(cmd: str, exc: Exception) -> int:
    print(f"p2pmoa models {cmd}: {exc}", file=sys.stderr)
    return 2


def _add(args: argparse.Namespace) -> int:
    try:
        meta = add_model(args.name, args.path, builtin_names=tuple(REGISTRY))
    except ModelInfoError as exc:
        return _fail("add", exc)
    print(f"added {args.name}: {meta.display_name or meta.architecture} {meta.size_label} "
          f"{meta.quantization} ({_kind(meta.to_dict())}, context {meta.context_length}, "
          f"{_human(meta.size_bytes)}) {meta.file}")
    return 0


def _rm(args: argparse.Namespace) -> int:
    if args.name in REGISTRY:
        return _fail("rm", ModelInfoError(f"{args.name!r} is built in (installed by pip); it cannot be removed"))
    try:
        path = remove_model(args.name)
    except ModelInfoError as exc:
        return _fail("rm", exc)
    print(f"removed {args.name} (the file {path} is left in place)")
    return 0


def show_metadata(name: str) -> dict:
    """The catalogue entry of ``name`` (a built-in or added name, or a GGUF path)."""
    from p2pmoa.models import file_sha256
    path, spec = resolve(name, assemble=False)
    meta: ModelMetadata = read_metadata(path)
    source = ("built-in" if name in REGISTRY else "added" if name in load_registry() else "path")
    return {"name": spec.name, "source": source, **meta.to_dict(),
            "sha256": file_sha256(path), "model_id": f"{spec.name}@{file_sha256(path)[:16]}"}


def _show(args: argparse.Namespace) -> int:
    try:
        info = show_metadata(args.name)
    except (ModelError, ModelInfoError) as exc:
        return _fail("show", exc)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    for k, v in info.items():
        if k == "size_bytes":
            v = f"{v} ({_human(v)})"
        elif k == "chat":
            k, v = "type", ("chat (has a chat template)" if v else "base (no chat template: plain completion)")
        print(f"{k}: {v}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("models", help="list, add, remove and inspect local GGUF models")
    msub = p.add_subparsers(dest="models_command", metavar="ACTION")
    ls = msub.add_parser("list", help="every known model: name, size, quantisation, chat/base, context, file")
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(func=_list)
    add = msub.add_parser("add", help="register a local GGUF file under a name (checked: must be GGUF)")
    add.add_argument("name", help="name to use with --model (a-z 0-9 . _ -)")
    add.add_argument("path", help="path of the .gguf file")
    add.set_defaults(func=_add)
    rm = msub.add_parser("rm", help="forget an added model (the file stays)")
    rm.add_argument("name")
    rm.set_defaults(func=_rm)
    show = msub.add_parser("show", help="all metadata of one model (name or path), with its sha256")
    show.add_argument("name", help="model name or .gguf path")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(func=_show)
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])
