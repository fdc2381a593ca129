"""`p2pmoa memory list | show | forget | clear`: the user's control over the node's memory.

Works on the node's data dir (``<data_dir>/memory.sqlite3``) directly, whether the node runs or
not: a running daemon notices the change (SQLite ``data_version``) and reloads before it next
uses memory, so ``forget``/``clear`` take effect on the running node too. ``clear`` leaves no
copy of the deleted text in the database file or its WAL (secure_delete, checkpoint, vacuum).

Registered through the ``p2pmoa.commands`` entry point ``memory`` (pyproject.toml).
Exit codes: 0 done, 1 nothing found (``show``/``forget`` of an unknown id), 2 usage/config error.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

from node.config import ConfigError, NodeConfig, load_config

TIER_CHOICES = ("private", "shared", "all")


def _store(args):
    from p2pmoa.memory_store import MemorySQLite
    overrides = {"data_dir": args.data_dir} if args.data_dir else {}
    cfg = load_config(args.config, overrides)
    return MemorySQLite(cfg.memory_path)


def _tier(args) -> str | None:
    return None if args.tier == "all" else args.tier


def _short(text: str, n: int = 70) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _list(args, store) -> int:
    entries = store.load(_tier(args))
    if args.json:
        print(json.dumps([e.summary() for e in entries], indent=2))
        return 0
    counts = store.counts()
    print(f"{counts['private']} private, {counts['shared']} shared entries in {store.path}")
    for e in sorted(entries, key=lambda e: -e.t_added):
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(e.t_added))
        print(f"  [{e.tier:7}] {e.entry_id}  {when}  uses={e.access_count}  {_short(e.query)}")
    return 0


def _show(args, store) -> int:
    found = [e for e in store.get(args.id) if args.tier == "all" or e.tier == args.tier]
    if not found:
        print(f"p2pmoa memory show: no entry {args.id!r}", file=sys.stderr)
        return 1
    print(json.dumps([e.summary() for e in found], indent=2))
    return 0


def _forget(args, store) -> int:
    n = store.forget(args.id, _tier(args))
    if not n:
        print(f"p2pmoa memory forget: no entry {args.id!r}", file=sys.stderr)
        return 1
    print(f"forgot {n} entr{'y' if n == 1 else 'ies'}")
    return 0


def _clear(args, store) -> int:
    if not args.yes:
        print("p2pmoa memory clear: deletes entries for good; add --yes to confirm",
              file=sys.stderr)
        return 2
    n = store.clear(_tier(args))
    print(f"deleted {n} {args.tier if args.tier != 'all' else ''} entries".replace("  ", " "))
    return 0


def _run(args: argparse.Namespace) -> int:
    action = getattr(args, "memory_action", None)
    if action is None:
        args.parser.print_help()
        return 2
    try:
        store = _store(args)
    except ConfigError as exc:
        print(f"p2pmoa memory: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"p2pmoa memory: cannot open the memory store: {exc}", file=sys.stderr)
        return 2
    try:
        return {"list": _list, "show": _show, "forget": _forget, "clear": _clear}[action](args, store)
    finally:
        store.close()


def register_memory(sub) -> None:
    d = NodeConfig()
    p = sub.add_parser("memory", help="list, show, forget or clear this node's memory (private and shared)")
    msub = p.add_subparsers(dest="memory_action", metavar="ACTION")

    def common(q, tier_default="all"):
        q.add_argument("--data-dir", metavar="DIR", help=f"the node's data dir (default {d.data_dir})")
        q.add_argument("--config", metavar="FILE", help="node TOML config (its data_dir is used)")
        q.add_argument("--tier", choices=TIER_CHOICES, default=tier_default,
                       help=f"private, shared or all (default {tier_default})")

    q = msub.add_parser("list", help="list the entries (newest first)")
    common(q)
    q.add_argument("--json", action="store_true", help="print JSON")
    q = msub.add_parser("show", help="show one entry in full")
    common(q)
    q.add_argument("id", help="entry id (a query id for private entries, ORIGIN/QUERY_ID for shared ones)")
    q = msub.add_parser("forget", help="delete one entry")
    common(q)
    q.add_argument("id")
    q = msub.add_parser("clear", help="delete every entry of a tier (private memory: completely, no copy left on disk)")
    common(q)
    q.add_argument("--yes", action="store_true", help="confirm")
    p.set_defaults(func=_run, parser=p)
    for action_parser in msub.choices.values():
        action_parser.set_defaults(func=_run, parser=p)


__all__ = ["register_memory"]
