"""Run one benchmark on this tree and on an earlier commit, alternately, in one run; print
both figures and their ratio.

    python bench/compare.py --baseline-rev 759d05d -- python bench/consensus.py --quick
    python bench/compare.py --baseline-rev HEAD~1 --rounds 5 --key pbft.4.decisions_per_s \\
        -- python bench/consensus.py

The baseline is checked out with ``git worktree add --detach`` into a temporary directory
(removed afterwards). The command runs with that tree (and then this one) as working
directory and first on ``PYTHONPATH``, so ``import consensus`` finds each tree's own code; a
leading ``python`` is replaced by this interpreter (both trees share its installed
dependencies). Runs alternate baseline, current, baseline, current... so a change of machine
load hits both sides alike. With ``--harness-from-current`` this tree's ``bench/`` directory
is copied over the baseline's first, so both sides run the same harness (and options it
gained since) against their own library code. Works for any benchmark that prints one JSON object as the last
line of stdout (``bench/consensus.py``, ``bench/sim.py``, ``bench/node.py``...).

Every numeric leaf of that object is flattened to a dotted key (``pbft.4.decisions_per_s``);
per key the figure is the median over ``--rounds`` runs, and
``ratio = current / baseline`` (so for a rate, above 1 is faster; for a duration, below 1 is
faster). The last line of stdout is one JSON object:
``{"baseline_rev", "baseline_commit", "baseline_tree", "current_commit", "current_dirty",
"command", "rounds", "harness", "baseline", "current", "ratio", "runs"}`` with ``baseline``/``current``/``ratio`` mapping keys to numbers
(only the ``--key`` ones if given). Exit code 2 on a usage error or a benchmark that fails.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class CompareError(Exception):
    """The baseline could not be checked out or a benchmark run failed."""


def flatten(obj, prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a JSON object as ``{"a.b.c": number}`` (booleans are skipped)."""
    out: dict[str, float] = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.update(flatten(v, f"{prefix}{k}."))
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        out[prefix[:-1]] = float(obj)
    return out


def last_json(stdout: str) -> dict:
    lines = [ln for ln in stdout.strip().splitlines() if ln.strip()]
    if not lines:
        raise CompareError("the benchmark printed nothing")
    try:
        obj = json.loads(lines[-1])
    except json.JSONDecodeError as exc:
        raise CompareError(f"last line of the benchmark is not JSON: {lines[-1][:120]!r}") from exc
    if not isinstance(obj, dict):
        raise CompareError("last line of the benchmark is not a JSON object")
    return obj


def run_in(tree: Path, command: list[str], timeout_s: float) -> dict:
    cmd = list(command)
    if cmd and Path(cmd[0]).name in ("python", "python3"):
        cmd[0] = sys.executable
    env = dict(os.environ)
    env["PYTHONPATH"] = str(tree) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    proc = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True,
                          timeout=timeout_s)
    if proc.returncode != 0:
        raise CompareError(f"{shlex.join(command)} failed in {tree} (exit {proc.returncode}): "
                           f"{proc.stderr.strip()[-400:]}")
    return last_json(proc.stdout)


def git(*args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise CompareError(f"git {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout.strip()


def compare(rev: str, command: list[str], rounds: int, keys: list[str],
            timeout_s: float, harness_from_current: bool = False) -> dict:
    base_commit = git("rev-parse", "--verify", f"{rev}^{{commit}}")
    head_commit = git("rev-parse", "HEAD")
    dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    with tempfile.TemporaryDirectory(prefix="bench-baseline-") as tmp:
        tree = Path(tmp) / "tree"
        git("worktree", "add", "--detach", str(tree), base_commit)
        try:
            if harness_from_current:
                shutil.copytree(ROOT / "bench", tree / "bench", dirs_exist_ok=True,
                                ignore=shutil.ignore_patterns("__pycache__"))
            runs: dict[str, list[dict[str, float]]] = {"baseline": [], "current": []}
            for i in range(rounds):
                for side, where in (("baseline", tree), ("current", ROOT)):
                    figures = flatten(run_in(where, command, timeout_s))
                    runs[side].append(figures)
                    print(f"round {i + 1}/{rounds} {side}: "
                          + ", ".join(f"{k}={figures[k]:g}" for k in (keys or sorted(figures)[:4])
                                      if k in figures), file=sys.stderr, flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT,
                           capture_output=True)
    common = set(runs["baseline"][0]).intersection(*runs["baseline"], *runs["current"])
    if keys:
        absent = [k for k in keys if k not in common]
        if absent:
            raise CompareError(f"keys not in both outputs: {absent}; have: {sorted(common)[:20]}")
        common = set(keys)
    med = {side: {k: statistics.median(r[k] for r in runs[side]) for k in sorted(common)}
           for side in runs}
    ratio = {k: (round(med["current"][k] / med["baseline"][k], 4)
                 if med["baseline"][k] else None) for k in sorted(common)}
    return {"baseline_rev": rev, "baseline_commit": base_commit, "baseline_tree": str(tree),
            "current_commit": head_commit,
            "current_dirty": dirty, "command": shlex.join(command), "rounds": rounds,
            "harness": "current" if harness_from_current else "each tree's own",
            "baseline": med["baseline"], "current": med["current"], "ratio": ratio,
            "runs": {side: [{k: r[k] for k in sorted(common)} for r in rs]
                     for side, rs in runs.items()}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        usage="%(prog)s --baseline-rev REV [--rounds N] [--key K ...] -- COMMAND ...")
    ap.add_argument("--baseline-rev", required=True, metavar="REV",
                    help="commit to compare against (anything git rev-parse accepts)")
    ap.add_argument("--rounds", type=int, default=3, help="runs per side, alternating (3)")
    ap.add_argument("--key", action="append", default=[],
                    help="dotted key of a figure to report (repeatable; default: all numeric)")
    ap.add_argument("--timeout-s", type=float, default=3600.0, help="per run (3600)")
    ap.add_argument("--harness-from-current", action="store_true",
                    help="copy this tree's bench/ over the baseline's before running")
    ap.add_argument("command", nargs=argparse.REMAINDER,
                    help="the benchmark command, after --")
    args = ap.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        print("compare: error: give the benchmark command after --", file=sys.stderr)
        return 2
    if args.rounds < 1:
        print("compare: error: --rounds must be >= 1", file=sys.stderr)
        return 2
    try:
        out = compare(args.baseline_rev, command, args.rounds, args.key, args.timeout_s,
                      args.harness_from_current)
    except (CompareError, subprocess.TimeoutExpired) as exc:
        print(f"compare: error: {exc}", file=sys.stderr)
        return 2
    for k, r in out["ratio"].items():
        print(f"{k}: baseline {out['baseline'][k]:g}, current {out['current'][k]:g}, "
              f"ratio {r}")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
