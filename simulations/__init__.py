"""simulations: the NetworkX simulator that runs the production protocol on a virtual clock.

Public names are re-exported here; see docs/simulations.md for the model and the experiments
(``p2pmoa sim --list``). Imports nothing from node/ (checked by tests/test_layering.py).
"""
from simulations.agents import ReplayAgent, SyntheticAgent
from simulations.engine import Engine, EngineStatistics, NodeAdapter, ServiceModel
from simulations.errors import (AgentError, ExperimentError, FaultSpecError, LinkModelError,
                                SimulationError, TopologyError)
from simulations.faults import FaultSpec, FaultyAgent
from simulations.mesh import MeshSpec, run_mesh
from simulations.network import (Crash, LinkModel, NetworkConditions, Partition, TopologySpec,
                                  build_topology, topology_report)

__all__ = ["AgentError", "Crash", "Engine", "EngineStatistics", "ExperimentError", "FaultSpec",
           "FaultSpecError", "FaultyAgent", "LinkModel", "LinkModelError", "MeshSpec",
           "NetworkConditions", "NodeAdapter", "Partition", "ReplayAgent", "ServiceModel", "SimulationError",
           "SyntheticAgent", "TopologyError", "TopologySpec", "build_topology", "run_mesh",
           "topology_report"]
