"""The one configuration path: protocol-relevant settings -> :class:`ProtocolConfig`.

The daemon (``node/daemon.py``, from its :class:`node.config.NodeConfig`) and the simulator
(``p2pmoa sim mesh``, ``simulations/mesh.py``, from its ``MeshSpec``) both describe a node's
protocol behaviour as a :class:`ProtocolSettings` and turn it into the machine's
:class:`~p2pmoa.protocol.ProtocolConfig` through :func:`protocol_config` -- nowhere else
(``tests/test_layering.py`` checks this). So the simulator runs with exactly the daemon's
defaults, and a seed that breaks the simulator is a bug in the daemon.

The defaults below ARE the node's defaults: :class:`node.config.NodeConfig` takes its
protocol defaults from this class.

Proposer sampling (``select_ppm``). A mesh larger than the number of answers a query needs
samples its proposers: a peer answers iff a hash of (query id, peer id) falls below
``select_ppm`` (p2pmoa/messages.py ``QueryAnnounce``). :func:`select_ppm_for` aims at
``proposers_max * proposers_oversample`` answering peers out of ``mesh_size - 1``; the
oversampling covers peers that are slow, busy or gone. Before this module the simulator set
it (from its graph size) and the daemon never did, so every daemon of a large mesh answered
every query. Now both use this rule; the simulator knows its mesh size, the daemon estimates
it as the larger of its roster and ``1 +`` the live peers on the query topic and rebuilds the
config when that changes (a mesh of up to ``1 + proposers_max * oversample`` nodes, 17 with
the defaults, asks everyone, as before).
"""
from __future__ import annotations

from dataclasses import dataclass

from p2pmoa.effects import GenParams
from p2pmoa.protocol import ProtocolConfig

PPM = 1_000_000


@dataclass(frozen=True)
class ProtocolSettings:
    """The protocol-relevant settings of one node (units last in names).

    Args:
        role: system message this node's model answers in (its MoA role).
        method: how queries asked at this node are decided (pbft, averaging, vote, aggregate,
            score).
        collect_timeout_s: how long the originator waits for proposals (``NodeConfig.deadline_s``).
        round_timeout_s: how long the aggregation round may take.
        proposers_max: cap on the proposals one query collects, its own included.
        proposers_oversample: peers asked to answer per proposal needed (>= 1), see
            :func:`select_ppm_for`.
        max_tokens, temperature, seed: this node's generation parameters.
        fault: fault-injection mode (None = honest).
        roster: peer ids allowed to hold seats (None: open mesh).
        rate_candidates: members rate the candidates with their own model to break ties
            between equally supported answers (needs a driver that executes ``Rate``).
    """

    role: str = "a helpful, concise assistant"
    method: str = "pbft"
    collect_timeout_s: float = 60.0
    round_timeout_s: float = 30.0
    proposers_max: int = 8
    proposers_oversample: float = 2.0
    max_tokens: int = 96
    temperature: float = 0.2
    seed: int = 0
    fault: str | None = None
    roster: frozenset | None = None
    rate_candidates: bool = False

    def __post_init__(self) -> None:
        if self.proposers_oversample < 1:
            raise ValueError(f"proposers_oversample must be >= 1, not {self.proposers_oversample}")
        if self.proposers_max < 1:
            raise ValueError(f"proposers_max must be >= 1, not {self.proposers_max}")


def select_ppm_for(proposers_max: int, oversample: float, mesh_size: int | None) -> int:
    """Parts per million of the other ``mesh_size - 1`` nodes asked to answer a query, so that
    about ``proposers_max * oversample`` of them do; everyone (``1_000_000``) when the mesh is
    that small or its size is unknown (None). Never 0: at least a few ppm stay selected."""
    if mesh_size is None:
        return PPM
    want = proposers_max * oversample
    return min(PPM, max(1, int(PPM * want / max(1, mesh_size - 1))))


def protocol_config(settings: ProtocolSettings, *, model_id: str, space_id: str,
                    mesh_size: int | None = None, strict: bool = True) -> ProtocolConfig:
    """The machine's configuration for a node with ``settings``, running ``model_id`` in the
    embedding space ``space_id``, in a mesh of about ``mesh_size`` nodes (None: unknown).
    ``strict``: an internal error raises (tests, simulator); the daemon passes False, so that
    a bug fails only the queries it touched, never the node."""
    s = settings
    return ProtocolConfig(
        role=s.role, model_id=model_id, space_id=space_id, method=s.method,
        collect_timeout_s=s.collect_timeout_s, round_timeout_s=s.round_timeout_s,
        proposers_max=s.proposers_max,
        select_ppm=select_ppm_for(s.proposers_max, s.proposers_oversample, mesh_size),
        fault=s.fault,
        gen_params=GenParams(max_tokens=s.max_tokens, temperature=s.temperature, seed=s.seed),
        roster=s.roster, rate_candidates=s.rate_candidates, strict=strict)
