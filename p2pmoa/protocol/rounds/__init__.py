"""One class per aggregation method; each owns its round's state (see each module's docstring).

================  ==============================  =========================================
method            member side                     originator side
================  ==============================  =========================================
``pbft``          :class:`.pbft.PbftRound`        :class:`.pbft.DecisionTally`
``vote``/``score``:class:`.vote.VoteRound`        :class:`.vote.VoteTally`
``averaging``     :class:`.averaging.AveragingRound`  (the originator's own node decides)
``aggregate``     (originator only)               :class:`.aggregate.AggregateRound`
================  ==============================  =========================================
"""
from .aggregate import AggregateRound
from .averaging import AveragingRound
from .base import Chosen, MemberRound
from .pbft import DecisionTally, PbftRound
from .vote import VoteRound, VoteTally

ROUND_CLASSES: dict[str, type[MemberRound]] = {
    "pbft": PbftRound, "vote": VoteRound, "score": VoteRound, "averaging": AveragingRound,
    "aggregate": AggregateRound,
}

__all__ = ["AggregateRound", "AveragingRound", "Chosen", "DecisionTally", "MemberRound",
           "PbftRound", "ROUND_CLASSES", "VoteRound", "VoteTally"]
