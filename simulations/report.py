"""Writing experiment results: CSV, PNG plots, a markdown summary, and the parallel sweep.

Every experiment writes into its ``--out`` directory:

* ``<name>.csv`` -- one row per trial or sweep point, columns in a fixed order, floats written
  with ``repr`` so the same seed gives a byte-identical file;
* ``<name>*.png`` -- plots (matplotlib, Agg backend, fixed metadata so the bytes are stable);
* ``summary.md`` -- what was run (parameters, seed, topology metrics) and the headline figures;
* ``summary.json`` -- the same headline figures, machine-readable.

:func:`run_sweep` runs independent trials on all local cores (``concurrent.futures``
process pool). Each task carries its own seed derived from the master seed and its index, so
the results do not depend on the number of workers or the order they finish in.
"""
from __future__ import annotations

import contextlib
import contextvars
import csv
import io
import json
import os
import random
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from tqdm import tqdm

SWEEP_WORKERS_MAX = 64


def task_seed(master: int, *key: Any) -> int:
    """A 63-bit seed for one task, derived deterministically from the master seed and a key."""
    return random.Random(f"{master}|" + "|".join(map(str, key))).getrandbits(63)


def workers_default() -> int:
    """All local cores (the machine's share for this process), at most :data:`SWEEP_WORKERS_MAX`."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        n = os.cpu_count() or 1
    return max(1, min(SWEEP_WORKERS_MAX, n))


_BACKEND: contextvars.ContextVar = contextvars.ContextVar("sweep_backend", default=None)


@contextlib.contextmanager
def sweep_backend(backend):
    """Run the sweeps inside this block on ``backend`` (e.g. :class:`simulations.raysweep.RaySweep`,
    which has ``map(fn, tasks, chunksize, on_done) -> results in task order``)."""
    token = _BACKEND.set(backend)
    try:
        yield backend
    finally:
        _BACKEND.reset(token)


def run_sweep(fn: Callable[[dict], Any], tasks: Sequence[dict], *, workers: int | None = None,
              desc: str = "sweep", progress: bool = True, chunksize: int = 1) -> list:
    """Run ``fn(task)`` for every task, in parallel when ``workers > 1``; results in task order.

    Args:
        fn: a module-level function (it is pickled to the worker processes).
        tasks: independent task dicts (each with its own seed).
        workers: processes; ``None`` = :func:`workers_default`; 1 = in this process.
        desc: progress bar label.
        progress: show a tqdm progress bar on stderr.
        chunksize: tasks per inter-process message (raise for many tiny tasks).
    """
    workers = workers_default() if workers is None else max(1, workers)
    bar = tqdm(total=len(tasks), desc=desc, disable=not progress, leave=False)
    out: list = []
    backend = _BACKEND.get()
    try:
        if backend is not None and len(tasks) > 1:  # --ray: trials as Ray tasks
            out = backend.map(fn, tasks, max(1, chunksize), bar.update)
        elif workers == 1 or len(tasks) <= 1:
            for t in tasks:
                out.append(fn(t))
                bar.update(1)
        else:
            with ProcessPoolExecutor(max_workers=min(workers, len(tasks))) as ex:
                for r in ex.map(fn, tasks, chunksize=max(1, chunksize)):
                    out.append(r)
                    bar.update(1)
    finally:
        bar.close()
    return out


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return repr(round(v, 10))
    if isinstance(v, bool):
        return "1" if v else "0"
    return str(v)


def write_csv(path: Path, rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> Path:
    """Write ``rows`` with a fixed column order (the first row's keys unless given)."""
    cols = list(columns or (rows[0].keys() if rows else []))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for r in rows:
        w.writerow([_fmt(r.get(c, "")) for c in cols])
    path.write_text(buf.getvalue())
    return path


def new_figure(title: str, xlabel: str, ylabel: str, *, figsize=(6.4, 4.2)):
    """A matplotlib figure on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=figsize)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    return fig, ax


def save_figure(fig, path: Path) -> Path:
    """Save as PNG with fixed metadata (no timestamps), then close."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)
    return path


def write_summary(out: Path, name: str, *, description: str, params: Mapping[str, Any],
                  headline: Mapping[str, Any], findings: Iterable[str],
                  topology: Mapping[str, Any] | None = None, files: Iterable[str] = ()) -> None:
    """Write ``summary.md`` and ``summary.json`` (sorted keys; no wall-clock content)."""
    lines = [f"# Experiment `{name}`", "", description.strip(), "", "## Parameters", ""]
    lines += [f"- `{k}` = {_fmt(v)}" for k, v in params.items()]
    if topology:
        lines += ["", "## Topology", ""]
        lines += [f"- {k}: {_fmt(v)}" for k, v in topology.items()]
    lines += ["", "## Headline figures", ""]
    lines += [f"- **{k}**: {_fmt(v)}" for k, v in headline.items()]
    lines += ["", "## Findings", ""]
    lines += [f"- {f}" for f in findings]
    files = list(files)
    if files:
        lines += ["", "## Files", ""] + [f"- `{f}`" for f in files]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    (out / "summary.json").write_text(json.dumps(
        {"experiment": name, "params": {k: _jsonable(v) for k, v in params.items()},
         "headline": {k: _jsonable(v) for k, v in headline.items()},
         "topology": {k: _jsonable(v) for k, v in (topology or {}).items()}},
        indent=2, sort_keys=True) + "\n")


def _jsonable(v: Any) -> Any:
    if isinstance(v, float):
        return round(v, 10)
    if isinstance(v, (str, int, bool)) or v is None:
        return v
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return str(v)
