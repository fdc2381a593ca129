"""The `p2pmoa` command line.

The core package owns the parser and the `ask` command. Subcommands that live in the shell
packages (`node`, `keygen`, `peers`, `status`, `demo` from node/, `sim` from simulations/)
register themselves through the ``p2pmoa.commands`` entry-point group, so that p2pmoa/ never
imports node/ or simulations/ (the import direction of docs/architecture.md).

A registration function has the signature ``register(subparsers) -> None``: it adds its
sub-parser and sets ``func`` (``func(args) -> int``) as the parser default.
"""
from __future__ import annotations

import argparse
import logging
import sys
from importlib.metadata import entry_points

from p2pmoa import __version__
from p2pmoa.logconf import LOG_FORMATS, configure_logging


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="p2pmoa",
        description="Peer-to-peer Mixture-of-Agents: ask a local model, run a node, simulate a mesh.",
    )
    parser.add_argument("--version", action="version", version=f"p2pmoa {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more logging (-v: INFO, -vv: DEBUG)")
    parser.add_argument("--log-format", choices=LOG_FORMATS, default="text",
                        help="log lines as text (default) or one JSON object per line")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    from p2pmoa import ask_cli
    ask_cli.register(sub)
    for ep in sorted(entry_points(group="p2pmoa.commands"), key=lambda e: e.name):
        try:
            register = ep.load()
        except ImportError as exc:  # a shell package failed to import: keep the rest working
            _register_unavailable(sub, ep.name, exc)
            continue
        register(sub)
    return parser


def _register_unavailable(sub, name: str, exc: Exception) -> None:
    """A command whose module failed to import: it says why when used, and only then."""
    def fail(args) -> int:
        print(f"p2pmoa {name}: unavailable in this installation ({exc}); "
              "reinstall with `make setup` or `pip install -e .`", file=sys.stderr)
        return 1
    p = sub.add_parser(name, help=f"(unavailable: {exc})", add_help=True)
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=fail)


def _autocomplete(parser: argparse.ArgumentParser) -> None:
    """Answer the shell's completion request and exit, if this run is one (``_ARGCOMPLETE``
    set by the code ``p2pmoa completion SHELL`` prints); otherwise do nothing."""
    import os
    if "_ARGCOMPLETE" not in os.environ:
        return
    import argcomplete
    argcomplete.autocomplete(parser)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    _autocomplete(parser)
    args = parser.parse_args(argv)
    level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    configure_logging(level, args.log_format)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
