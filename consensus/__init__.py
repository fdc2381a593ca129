"""consensus: pure agreement algorithms for p2pmoa (no I/O, no clock, no hidden randomness).

* :mod:`consensus.effects` -- the one effect vocabulary (Send, Broadcast, SetTimer, CancelTimer).
* :mod:`consensus.quorum` -- the one weighted quorum test (Pending / Won / Lost).
* :mod:`consensus.pbft` -- PBFT with trust-weighted quorums (a package, see its docstring).
* :mod:`consensus.trust` -- answer quality + protocol reputation -> integer weights.
* :mod:`consensus.averaging` -- embedding-averaging consensus, robust aggregators.
* :mod:`consensus.voting` -- majority, weighted and score voting with normalisers.
* :mod:`consensus.testing` -- a seeded in-memory PBFT cluster with Byzantine members.
"""
from .averaging import (
    AGGREGATORS, AveragingError, AveragingNode, AveragingResult, Finished,
    InvalidVector, NeighbourVector, RoundTimeout, VectorMsg, aggregate,
    average_graph, check_vectors, consensus_limit, coordinate_median, filtered_mean,
    geometric_median, medoid, mixing_matrix, nearest_candidate, normalise, trimmed_mean,
    weighted_mean,
)
from .pbft import (
    NULL_DIGEST, NULL_VALUE, Broadcast, Checkpoint, Commit, CommitProof, Decided,
    EquivocationDetected, MalformedMessage, MemberId, NewView, PbftConfigError, PbftError,
    PreparedCert, PrePrepare, Prepare, Receive, Replica, ReplicaStatistics, Request, Send,
    SetTimer, StateTransferNeeded, CancelTimer, TimerExpired, ViewChange, decode, digest_of,
    encode, signing_bytes, with_signature,
)
from .trust import WEIGHT_SCALE, TrustBook, TrustError
from .voting import (
    ScoreResult, VoteResult, VotingError, cluster_embeddings, embedding_normaliser, exact,
    majority_vote, normalise_choice, normalise_number, normalise_text, score_vote,
    weighted_vote,
)

__all__ = [n for n in dir() if not n.startswith("_")]
