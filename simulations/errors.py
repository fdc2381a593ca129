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
