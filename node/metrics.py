"""Prometheus text exposition (format 0.0.4) for the node; only node/ exports metrics.

A tiny registry instead of a dependency: counters and gauges with optional labels, plus
histograms with fixed buckets for latencies. Values are read at scrape time, so gauges can
also be callables (peer count, buffer depth) that ask the live objects.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterable

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    esc = lambda v: str(v).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')  # noqa: E731
    return "{" + ",".join(f'{k}="{esc(v)}"' for k, v in sorted(labels.items())) + "}"


@dataclass
class _Family:
    name: str
    kind: str  # counter | gauge | histogram
    help: str
    values: dict[tuple, float] = field(default_factory=dict)
    fn: Callable[[], Iterable[tuple[dict[str, str], float]]] | None = None
    buckets: tuple[float, ...] = ()
    hist: dict[tuple, list] = field(default_factory=dict)  # key -> [counts..., sum, count]


class Metrics:
    """Registry of metric families; ``render()`` produces the /metrics body."""

    def __init__(self, prefix: str = "p2pmoa_") -> None:
        self.prefix = prefix
        self._fam: dict[str, _Family] = {}

    def _get(self, name: str, kind: str, help: str, bare: bool = False, **kw) -> _Family:
        full = name if bare else self.prefix + name
        fam = self._fam.get(full)
        if fam is None:
            fam = self._fam[full] = _Family(full, kind, help, **kw)
        assert fam.kind == kind, f"metric {full} registered as {fam.kind}, used as {kind}"
        return fam

    def inc(self, name: str, help: str = "", n: float = 1.0, **labels: str) -> None:
        """Add ``n`` to counter ``name`` (names of counters end in ``_total``)."""
        fam = self._get(name, "counter", help)
        key = tuple(sorted(labels.items()))
        fam.values[key] = fam.values.get(key, 0.0) + n

    def set(self, name: str, value: float, help: str = "", **labels: str) -> None:
        fam = self._get(name, "gauge", help)
        fam.values[tuple(sorted(labels.items()))] = float(value)

    def gauge_fn(self, name: str, help: str,
                 fn: Callable[[], Iterable[tuple[dict[str, str], float]]], bare: bool = False) -> None:
        """Register a gauge family computed at scrape time by ``fn() -> [(labels, value)]``.
        ``bare``: no ``p2pmoa_`` prefix (the standard ``process_*`` names)."""
        self._get(name, "gauge", help, bare).fn = fn

    def counter_fn(self, name: str, help: str,
                   fn: Callable[[], Iterable[tuple[dict[str, str], float]]], bare: bool = False) -> None:
        """Register a counter family whose values live elsewhere (e.g. transport statistics)."""
        self._get(name, "counter", help, bare).fn = fn

    def observe(self, name: str, value: float, help: str = "",
                buckets: tuple[float, ...] = LATENCY_BUCKETS_S, **labels: str) -> None:
        fam = self._get(name, "histogram", help, buckets=buckets)
        key = tuple(sorted(labels.items()))
        h = fam.hist.setdefault(key, [0] * len(fam.buckets) + [0.0, 0])
        for i, b in enumerate(fam.buckets):
            if value <= b:
                h[i] += 1
        h[-2] += value
        h[-1] += 1

    def value(self, name: str, **labels: str) -> float:
        """Current value of a counter or gauge (0 if never set); for tests and /status."""
        fam = self._fam.get(self.prefix + name) or self._fam.get(name)
        if fam is None:
            return 0.0
        if fam.fn is not None:
            for lab, v in fam.fn():
                if lab == labels:
                    return float(v)
            return 0.0
        return fam.values.get(tuple(sorted(labels.items())), 0.0)

    def render(self) -> str:
        out: list[str] = []
        for fam in self._fam.values():
            out.append(f"# HELP {fam.name} {fam.help or fam.name}")
            out.append(f"# TYPE {fam.name} {fam.kind}")
            if fam.kind == "histogram":
                for key, h in fam.hist.items():
                    lab = dict(key)
                    for i, b in enumerate(fam.buckets):
                        out.append(f"{fam.name}_bucket{_labels({**lab, 'le': _num(b)})} {h[i]}")
                    out.append(f"{fam.name}_bucket{_labels({**lab, 'le': '+Inf'})} {h[-1]}")
                    out.append(f"{fam.name}_sum{_labels(lab)} {_num(h[-2])}")
                    out.append(f"{fam.name}_count{_labels(lab)} {h[-1]}")
                continue
            items = list(fam.fn()) if fam.fn is not None else [(dict(k), v) for k, v in fam.values.items()]
            for lab, v in items:
                out.append(f"{fam.name}{_labels(lab)} {_num(v)}")
        return "\n".join(out) + "\n"


def _num(v: float) -> str:
    if isinstance(v, float) and math.isnan(v):
        return "NaN"
    if isinstance(v, float) and math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if float(v).is_integer():
        return str(int(v))
    return repr(float(v))


# --------------------------------------------------------------------------- node families
# Families every node exports besides its own counters (registered by the daemon).


def register_build_info(m: Metrics) -> None:
    """``p2pmoa_build_info{version, python, libp2p, llama_cpp_python} 1`` (the node-exporter
    convention: a constant 1 whose labels say what is running)."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    def v(dist: str) -> str:
        try:
            return version(dist)
        except PackageNotFoundError:
            return "none"
    labels = {"version": v("p2pmoa"), "python": platform.python_version(),
              "libp2p": v("libp2p"), "llama_cpp_python": v("llama-cpp-python")}
    m.gauge_fn("build_info", "what this node runs: p2pmoa, Python, libp2p and llama-cpp-python versions",
               lambda: [(labels, 1.0)])


def register_process_metrics(m: Metrics) -> None:
    """The standard ``process_*`` families (Prometheus client conventions), read by psutil at
    scrape time: resident memory, open file descriptors, CPU seconds, start time."""
    import psutil
    proc = psutil.Process()

    def fds() -> float:
        try:
            return float(proc.num_fds())
        except (AttributeError, psutil.Error):  # num_fds is POSIX-only
            return float("nan")
    m.gauge_fn("process_resident_memory_bytes", "resident set size, bytes",
               lambda: [({}, float(proc.memory_info().rss))], bare=True)
    m.gauge_fn("process_open_fds", "open file descriptors", lambda: [({}, fds())], bare=True)
    m.counter_fn("process_cpu_seconds_total", "user + system CPU time, seconds",
                 lambda: [({}, sum(proc.cpu_times()[:2]))], bare=True)
    m.gauge_fn("process_start_time_seconds", "process start, Unix seconds",
               lambda: [({}, proc.create_time())], bare=True)


def record_generation(m: Metrics, gen) -> None:
    """Count one local generation's tokens by model (``gen``: a :class:`p2pmoa.llm.Generation`)."""
    model = str(getattr(gen, "model_id", "?"))
    m.inc("tokens_generated_total", "tokens generated by the local model", n=float(gen.completion_tokens),
          model=model)
    m.inc("prompt_tokens_total", "prompt tokens processed by the local model", n=float(gen.prompt_tokens),
          model=model)


def register_admission(m: Metrics, buffer, now) -> None:
    """``p2pmoa_admission_refusals_total{reason}``: the prompt buffer's refusals, local and
    gossiped queries alike (full, unstable: arrival rate over the stability bound, deadline:
    could not start in time, duplicate)."""
    def rows():
        st = buffer.statistics(now())
        return [({"reason": r}, float(getattr(st, "refused_" + r)))
                for r in ("full", "unstable", "deadline", "duplicate")]
    m.counter_fn("admission_refusals_total", "queries the prompt buffer refused, by reason", rows)
