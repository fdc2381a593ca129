"""Experiments of ``p2pmoa sim``: one module per experiment.

Each module defines ``NAME``, ``DESCRIPTION`` (one paragraph, shown by ``p2pmoa sim --list``),
``add_arguments(parser)`` for its own options, and ``run(args, out: Path) -> dict`` which writes
CSV + PNG + ``summary.md`` into ``out`` and returns the headline figures. Modules are imported
lazily so that ``--list`` and unrelated experiments work while a dependency is missing.
"""
from __future__ import annotations

import importlib
from types import ModuleType

from simulations.errors import ExperimentError

EXPERIMENTS = ("majority", "bft", "averaging", "queue", "cost", "mesh", "sybil", "memory")
"""Experiment names, in the order ``--list`` shows them."""


def load(name: str) -> ModuleType:
    """Import the experiment module ``name``.

    Raises:
        ExperimentError: unknown name, or the module cannot be imported (the message says which
            dependency is missing).
    """
    if name not in EXPERIMENTS:
        raise ExperimentError(f"unknown experiment {name!r}; `p2pmoa sim --list` shows them")
    try:
        return importlib.import_module(f"simulations.experiments.{name}")
    except ImportError as exc:
        raise ExperimentError(f"experiment {name!r} is unavailable: {exc}") from exc
