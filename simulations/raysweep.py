"""Run an experiment's independent trials as Ray tasks: ``p2pmoa sim EXPERIMENT --ray [ADDRESS]``.

Ray is an optional extra (``pip install 'p2pmoa[ray]'``) and is imported only here. Without an
address a local Ray is started on demand with ``--workers`` CPUs (default: all local cores) and
stopped afterwards; with an address (``ray://head:10001`` or ``auto``/``host:6379`` on a
cluster node) the trials run on that cluster, whose nodes must have the same p2pmoa version
installed (the trial functions are pickled by reference to their module).

Results are byte-identical to the local run for the same seed: every trial carries its own
seed derived from the master seed and its index (:func:`simulations.report.task_seed`), the
trial functions use nothing else, and results are put back in task order whatever order the
Ray tasks finish in.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Sequence

from simulations.errors import SimulationError

log = logging.getLogger(__name__)

CHUNKS_PER_CPU = 4
"""Ray tasks per CPU: enough to balance uneven trials, few enough to keep per-task overhead
(a few ms each) small against trials of milliseconds."""


def _run_chunk(fn: Callable[[dict], Any], chunk: list[dict]) -> list:
    return [fn(t) for t in chunk]


class RaySweep:
    """A sweep backend for :func:`simulations.report.run_sweep` (see ``sweep_backend``).

    Args:
        address: a Ray cluster address, or None to start a local Ray.
        workers: CPUs of the local Ray (ignored for a cluster: it has its own resources).
    """

    def __init__(self, address: str | None = None, workers: int | None = None) -> None:
        try:
            import ray
        except ImportError as exc:
            raise SimulationError("--ray needs Ray: pip install 'p2pmoa[ray]'") from exc
        self.ray = ray
        self.address = address
        self._started_here = False
        if not ray.is_initialized():
            kw: dict = {"log_to_driver": False, "include_dashboard": False,
                        "configure_logging": False}
            if address is None:
                kw["num_cpus"] = workers
            try:
                ray.init(address=address, **kw)
            except (ConnectionError, ValueError, RuntimeError) as exc:
                raise SimulationError(f"cannot connect to Ray at {address or 'local'}: {exc}") from exc
            self._started_here = True
        self.cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        self._remote = ray.remote(_run_chunk)

    def map(self, fn: Callable[[dict], Any], tasks: Sequence[dict], chunksize: int,
            on_done: Callable[[int], Any]) -> list:
        """``[fn(t) for t in tasks]`` on Ray; ``on_done(n)`` as chunks of n tasks finish."""
        ray = self.ray
        size = max(chunksize, -(-len(tasks) // (self.cpus * CHUNKS_PER_CPU)))
        chunks = [list(tasks[i:i + size]) for i in range(0, len(tasks), size)]
        fn_ref = ray.put(fn)
        refs = [self._remote.remote(fn_ref, c) for c in chunks]
        index = {r: i for i, r in enumerate(refs)}
        results: list = [None] * len(refs)
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for r in done:
                results[index[r]] = ray.get(r)
                on_done(len(results[index[r]]))
        return [x for chunk in results for x in chunk]

    def close(self) -> None:
        if self._started_here:
            self.ray.shutdown()
