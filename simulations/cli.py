"""``p2pmoa sim``: run a simulator experiment, list them, or record real answers for replay.

Usage::

    p2pmoa sim --list
    p2pmoa sim EXPERIMENT [experiment options] --seed S --out DIR [--workers W] [--no-progress]
    p2pmoa sim record --questions FILE --models smollm2-135m,gemma3-270m --samples 3 --out FILE.jsonl

Registered through the ``p2pmoa.commands`` entry point ``sim = simulations.cli:register_sim``.
Every error a user can cause is a :class:`~simulations.errors.SimulationError` and is printed
as one line (exit status 2), never as a traceback.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from simulations.errors import SimulationError
from simulations.experiments import EXPERIMENTS, load

log = logging.getLogger(__name__)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=1, help="master seed; same seed -> identical files (default 1)")
    p.add_argument("--out", required=True, help="directory for CSV, PNG and summary.md")
    p.add_argument("--workers", type=int, default=None,
                   help="processes for parameter sweeps (default: all local cores)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bar")
    p.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                   help="run the trials as Ray tasks: on the cluster at ADDRESS, or on a local Ray "
                        "started on demand with --workers CPUs (needs pip install 'p2pmoa[ray]'); "
                        "same seed, same files")


def register_sim(subparsers) -> None:
    """Add the ``sim`` sub-parser to the ``p2pmoa`` command line (entry-point hook)."""
    sim = subparsers.add_parser("sim", help="simulate a mesh: Byzantine and topology experiments",
                                description="Run a simulator experiment (see --list).")
    sim.add_argument("--list", action="store_true", help="describe the experiments and exit")
    sub = sim.add_subparsers(dest="experiment", metavar="EXPERIMENT")
    for name in EXPERIMENTS:
        try:
            mod = load(name)
        except SimulationError as exc:
            log.info("experiment %s unavailable: %s", name, exc)
            p = sub.add_parser(name, help=f"(unavailable: {exc})")
            p.set_defaults(unavailable=str(exc))
            continue
        p = sub.add_parser(name, help=mod.DESCRIPTION.split(".")[0], description=mod.DESCRIPTION)
        mod.add_arguments(p)
        _common(p)
    rec = sub.add_parser("record", help="record real GGUF answers + embeddings for the replay agent",
                         description="Answer each question with the real models (p2pmoa.llm) and embed "
                                     "each answer with the mesh embedder (p2pmoa.embed); writes JSONL "
                                     "for simulations.agents.ReplayAgent.")
    rec.add_argument("--questions", required=True, help="text file, one question per line")
    rec.add_argument("--models", default="smollm2-135m", help="comma list of model names or GGUF paths")
    rec.add_argument("--samples", type=int, default=2, help="answers per (question, model) (default 2)")
    rec.add_argument("--max-tokens", type=int, default=48)
    rec.add_argument("--seed", type=int, default=0)
    rec.add_argument("--out", required=True, help="JSONL file to write")
    rec.add_argument("--no-progress", dest="progress", action="store_false")
    sim.set_defaults(func=main)


def describe() -> str:
    lines = ["Experiments (p2pmoa sim EXPERIMENT --seed S --out DIR):", ""]
    for name in EXPERIMENTS:
        try:
            desc = load(name).DESCRIPTION
        except SimulationError as exc:
            desc = f"(unavailable: {exc})"
        lines.append(f"  {name:10s} {desc}")
    lines += ["", "  record     record real GGUF answers and embeddings for the replay agent"]
    return "\n".join(lines)


def _run(mod, args: argparse.Namespace, out: Path) -> dict:
    """``mod.run(args, out)``, with its sweeps on Ray when ``--ray`` was given."""
    if getattr(args, "ray", None) is None:
        return mod.run(args, out)
    from simulations.raysweep import RaySweep
    from simulations.report import sweep_backend
    backend = RaySweep(args.ray or None, args.workers)
    try:
        with sweep_backend(backend):
            return mod.run(args, out)
    finally:
        backend.close()


def main(args: argparse.Namespace) -> int:
    """Entry of ``p2pmoa sim``: returns the process exit status."""
    if getattr(args, "list", False) or not getattr(args, "experiment", None):
        print(describe())
        return 0
    try:
        if args.experiment == "record":
            from simulations.agents import record

            qs = Path(args.questions).read_text().splitlines() if Path(args.questions).is_file() else None
            if qs is None:
                raise SimulationError(f"questions file not found: {args.questions}")
            n = record(qs, [m.strip() for m in args.models.split(",") if m.strip()],
                       samples=args.samples, out=args.out, max_tokens=args.max_tokens, seed=args.seed,
                       progress=args.progress)
            print(f"recorded {n} answers to {args.out}")
            return 0
        if getattr(args, "unavailable", None):
            raise SimulationError(args.unavailable)
        mod = load(args.experiment)
        out = Path(args.out)
        try:
            out.mkdir(parents=True, exist_ok=True)
            (out / ".write-test").touch()
            (out / ".write-test").unlink()
        except OSError as exc:
            raise SimulationError(f"cannot write to --out {out} ({exc.strerror or exc}); "
                                  "use a writable directory") from None
        headline = _run(mod, args, out)
    except SimulationError as exc:
        print(f"p2pmoa sim: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"experiment": args.experiment, "out": str(out), **headline}, sort_keys=True, default=str))
    return 0
