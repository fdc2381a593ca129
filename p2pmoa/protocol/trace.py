"""Pure builders of what a query tells its asker: the consensus trace, the live progress of an
undecided query, the token usage. No state is changed here; the machine passes what it holds.
"""
from __future__ import annotations

from p2pmoa.effects import PeerId, Usage
from p2pmoa.messages import Decision
from p2pmoa.moa import centrality

from .rounds import MemberRound
from .state import Origin


def build_trace(o: Origin, m: MemberRound | None, d: Decision, me: PeerId, now: float) -> dict:
    """The trace of a decided query (``p2pmoa_trace`` in the API's answer)."""
    rs = o.round
    cent = centrality(m.vectors) if m is not None and m.vectors is not None else None
    proposals = []
    for sender, (_frame, p, at) in sorted(o.proposals.items()):
        idx = next((j for j, (_, q) in enumerate(m.cands) if q.proposer == sender), None) \
            if m is not None else None
        proposals.append({
            "peer": sender, "model_id": p.model_id, "role": p.role, "answer": p.answer,
            "llm_s": p.llm_s, "completion_tokens": p.completion_tokens,
            "arrived_s": round(at - o.started, 6),
            "centrality": None if cent is None or idx is None else round(float(cent[idx]), 6),
            "canonical": m.canon[idx] if m is not None and idx is not None and m.canon else p.canonical,
            "in_round": idx is not None,
        })
    return {
        "query_id": o.ann.query_id, "method": d.method, "originator": me,
        "n_proposals": len(rs.bundle) if rs else 0, "n_expected": o.ann.proposers_max,
        "proposals": proposals,
        "members": list(rs.members) if rs else [],
        "weights": dict(zip(rs.members, rs.weights)) if rs else {},
        "votes": {k: list(v) for k, v in o.votes.items()},
        "decision": {"proposer": d.chosen, "digest": d.digest.hex(), "view": d.view},
        "clusters": [[m.cands[i][1].proposer for i in c.members] for c in m.clusters] if m else [],
        "nacks": dict(o.nacks),
        "timings": {"collect_s": round((o.round_at or now) - o.started, 6),
                    "round_s": round(now - (o.round_at or now), 6),
                    "total_s": round(now - o.started, 6)},
        "notes": list(o.notes),
        "attendance": o.att.report() if o.att is not None else None,
    }


def progress(o: Origin, m: MemberRound | None, now: float | None) -> dict:
    """The live, partial trace of an undecided query asked here (no answer texts). Without
    ``now``, elapsed time runs to the query's latest proposal or round start."""
    rs = o.round
    if now is None:
        now = max([o.started, o.round_at] + [at for _, _, at in o.proposals.values()])
    rep = getattr(m, "replica", None)
    return {
        "query_id": o.ann.query_id, "phase": o.phase.value, "method": o.ann.method,
        "pbft": None if rep is None else {"view": rep.view, "view_change": not rep.active},
        "n_expected": o.ann.proposers_max, "elapsed_s": round(now - o.started, 6),
        "proposals": [{"peer": s, "model_id": p.model_id, "role": p.role,
                       "llm_s": p.llm_s, "arrived_s": round(at - o.started, 6)}
                      for s, (_, p, at) in sorted(o.proposals.items(), key=lambda x: x[1][2])],
        "members": list(rs.members) if rs else [],
        "weights": dict(zip(rs.members, rs.weights)) if rs else {},
        "votes": {k: list(v) for k, v in o.votes.items()},
        "notes": list(o.notes),
    }


def usage_of(o: Origin, d: Decision) -> Usage:
    """Tokens of the chosen proposal (the answer the user receives)."""
    got = o.proposals.get(d.chosen)
    if got is None:
        return Usage()
    p = got[1]
    return Usage(int(p.prompt_tokens), int(p.completion_tokens))


__all__ = ["build_trace", "progress", "usage_of"]
