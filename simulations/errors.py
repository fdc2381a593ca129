"""Errors raised by the simulator.

Every error a user can provoke with bad input (an unknown topology, a graph file that does not
parse, a fraction outside [0, 1], an experiment name that does not exist) is a subclass of
:class:`SimulationError`, so the CLI can print one clear line instead of a traceback.
"""
from __future__ import annotations


class SimulationError(Exception):
    """Base class of every error the simulator raises on purpose."""


class TopologyError(SimulationError):
    """A topology cannot be built: unknown kind, bad parameters, unreadable or empty graph file."""


class LinkModelError(SimulationError):
    """A link model parameter is out of range (negative latency, probability outside [0, 1])."""


class FaultSpecError(SimulationError):
    """A Byzantine behaviour, fraction or placement is invalid."""


class AgentError(SimulationError):
    """An LLM stand-in is misconfigured or a replay file is malformed."""


class ExperimentError(SimulationError):
    """An experiment is unknown, misconfigured, or needs a component that is not available."""


def parse_list(text: str, name: str, lo: float, hi: float, kind: type = float) -> list:
    """A comma-separated experiment argument (``--n-values 1,3,5``) as a list of ``kind``.

    Args:
        text: the flag's value.
        name: the flag's name without dashes, for the error message.
        lo, hi: inclusive bounds every value must lie in.
        kind: ``int`` or ``float``.

    Raises:
        ExperimentError: an empty list, a value that is not a number, or one out of bounds.
    """
    try:
        values = [kind(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        noun = "integers" if kind is int else "numbers"
        raise ExperimentError(f"--{name} must be a comma list of {noun}") from exc
    if not values or any(not (lo <= v <= hi) for v in values):
        raise ExperimentError(f"--{name} values must be in [{lo}, {hi}]")
    return values
