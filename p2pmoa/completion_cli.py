"""`p2pmoa completion bash|zsh|fish`: print the shell code that completes `p2pmoa` commands.

Completion is argcomplete's (a well-kept library; shtab has no fish support): the printed
script asks `p2pmoa` itself for completions, so every subcommand and flag, including those
registered by other packages through ``p2pmoa.commands``, completes without a generated file
going stale. ``p2pmoa.cli.main`` calls ``argcomplete.autocomplete(parser)``, which answers and
exits only when the shell set ``_ARGCOMPLETE``.

Install::

    bash:  echo 'eval "$(p2pmoa completion bash)"' >> ~/.bashrc
    zsh:   echo 'eval "$(p2pmoa completion zsh)"' >> ~/.zshrc
    fish:  p2pmoa completion fish > ~/.config/fish/completions/p2pmoa.fish
"""
from __future__ import annotations

import argparse

SHELLS = ("bash", "zsh", "fish")


def _print(args: argparse.Namespace) -> int:
    import argcomplete
    print(argcomplete.shellcode(["p2pmoa"], shell=args.shell))
    return 0


def register(sub) -> None:
    p = sub.add_parser("completion", help="print shell completion code (bash, zsh, fish)",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("shell", choices=SHELLS)
    p.set_defaults(func=_print)
