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

    def _get(self, name: str, kind: str, help: str, **kw) -> _Family:
        full = self.prefix + name
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
                 fn: Callable[[], Iterable[tuple[dict[str, str], float]]]) -> None:
        """Register a gauge family computed at scrape time by ``fn() -> [(labels, value)]``."""
        self._get(name, "gauge", help).fn = fn

    def counter_fn(self, name: str, help: str,
                   fn: Callable[[], Iterable[tuple[dict[str, str], float]]]) -> None:
        """Register a counter family whose values live elsewhere (e.g. transport statistics)."""
        self._get(name, "counter", help).fn = fn

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
        fam = self._fam.get(self.prefix + name)
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
    if isinstance(v, float) and math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if float(v).is_integer():
        return str(int(v))
    return repr(float(v))
