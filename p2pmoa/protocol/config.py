"""ProtocolConfig: everything a node decides about its own protocol behaviour."""
from __future__ import annotations

from dataclasses import dataclass, field

from p2pmoa import seats
from p2pmoa.effects import GenParams
from p2pmoa.messages import DEFAULT_LIMITS, METHODS, QUERY_TOPIC, Limits

FAULTS = (None, "silent", "garbage", "equivocate")


@dataclass(frozen=True)
class ProtocolConfig:
    """Everything a node decides about its own protocol behaviour.

    Args:
        role: system message this node's model answers in (its MoA role).
        model_id: the local model's id (goes into proposals and traces).
        space_id: the mesh embedding space; proposals in another space are refused.
        method: default aggregation method for local queries (pbft/averaging/vote/aggregate).
        topic: gossip topic of query announcements.
        collect_timeout_s: how long the originator waits for proposals (default 20 s).
        round_timeout_s: how long the aggregation round may take before the originator
            decides on its own judgement and says so in the trace (default 15 s).
        view_timeout_s: PBFT view-change timeout (default 2 s, doubles per view change).
        proposers_max: cap on the proposals collected per query, own included (default 8);
            a query asks for ``min(cap, 1 + live invited peers)`` (p2pmoa/round_start.py).
        select_ppm: share of peers asked to answer, parts per million (default all).
        retransmit_s: first retransmission delay of unacknowledged frames (default 1 s,
            doubling each time).
        retransmits_max: retransmissions before giving up (default 4).
        skew_s: accepted clock skew / replay window (default 30 s).
        gen_params: sampling parameters for this node's generations.
        top_k: PBFT validity: a candidate is acceptable if among the top-k by the replica's
            own centrality (0 = half of the candidates, rounded up).
        rate_candidates: a member asks its own model to rate each candidate's canonical answer
            (``Rate``: mean log-probability per token after the question) and breaks ties
            between equally supported answers by that rating instead of embedding centrality
            (which measures wording). Off by default (the simulator and stand-in drivers cannot
            rate); the daemon and the graded benchmark turn it on.
        avg_rounds: most averaging rounds (default 6); avg_alpha: step size α (default 0.5).
        limits: wire limits.
        fault: fault-injection mode (None = honest; "silent", "garbage", "equivocate").
        remember_max: finished queries remembered in memory for de-duplication (default 1024).
        pbft_msgs_per_member_max: PBFT messages accepted from one member in one round
            (default 256; more is a flood and is dropped).
        announce_repeats: times the originator re-broadcasts its announce while proposals
            are missing, evenly spread over the collection window (default 2).
        seat_history_min: rounds a peer's answers must have been judged before it is
            established; until then it holds one of at most ``(k-1)//3`` new seats and weight
            0 (see p2pmoa/seats.py; default 3).
        seat_seniority_s: a node connected to a peer this long is out of seat bootstrap
            even without history (default 600 s; see p2pmoa/seats.py).
        roster: peer ids allowed to hold seats (None: open mesh; see p2pmoa/roster.py).
        strict: an internal error (a bug, never bad peer input) raises out of ``handle``
            (tests, simulator: fail loudly). ``False`` (the daemon): it is logged, counted as
            ``internal_error`` and only the query it concerned fails; ``handle`` then returns
            no effect of the half-done step, only the query's clean failure.
        member_rounds_per_origin_max: aggregation rounds this node takes part in at once for
            one originator (default 4); more are refused and counted
            (``member_rounds_cap``), so one peer cannot tie up all of a node's work.
    """

    role: str = "You are a helpful assistant. Answer briefly."
    model_id: str = "unknown"
    space_id: str = "unknown"
    method: str = "pbft"
    topic: str = QUERY_TOPIC
    collect_timeout_s: float = 20.0
    round_timeout_s: float = 15.0
    view_timeout_s: float = 2.0
    proposers_max: int = 8
    select_ppm: int = 1_000_000
    retransmit_s: float = 1.0
    retransmits_max: int = 4
    skew_s: float = 30.0
    gen_params: GenParams = field(default_factory=GenParams)
    top_k: int = 0
    rate_candidates: bool = False
    avg_rounds: int = 6
    avg_alpha: float = 0.5
    limits: Limits = DEFAULT_LIMITS
    fault: str | None = None
    remember_max: int = 1024
    pbft_msgs_per_member_max: int = 256
    announce_repeats: int = 2
    seat_history_min: int = seats.HISTORY_MIN
    seat_seniority_s: float = seats.SENIORITY_S
    roster: frozenset | None = None
    strict: bool = True
    member_rounds_per_origin_max: int = 4

    def __post_init__(self):
        assert self.method in METHODS, f"method must be one of {METHODS}"
        assert self.fault in FAULTS, f"fault must be one of {FAULTS}"
        assert 1 <= self.proposers_max < self.limits.members_max, "proposers_max out of range"
        assert self.retransmits_max >= 0 and self.retransmit_s > 0
        assert self.member_rounds_per_origin_max >= 1


__all__ = ["FAULTS", "ProtocolConfig"]
