"""The aggregate round: the originator's model synthesises one answer from the bundle.

Only the originator runs it (a ``RoundStart`` for ``aggregate`` from anyone is refused as
``bad_round``; members learn the result as a signed Decision). Owns: the synthesis job's
request. The originator still embeds and judges the candidates like any member (base class):
that ranking is the fallback when the synthesis fails or is late, and feeds the trace.

Handles: the ``Generate`` result of its synthesis job (``JobKind.SYNTH``), through the machine.
Emits: nothing by itself; :meth:`request` gives the ``Generate`` messages and parameters,
:meth:`decision_from` turns the generation into the round's :class:`~p2pmoa.messages.Decision`.
"""
from __future__ import annotations

from typing import Any, ClassVar

from p2pmoa.effects import ChatMessage, GenParams, PeerId
from p2pmoa.messages import Decision, QueryAnnounce
from p2pmoa.moa import aggregate_messages

from ..common import clip_utf8, digest
from .base import MemberRound


class AggregateRound(MemberRound):
    method: ClassVar[str] = "aggregate"

    def request(self, ann: QueryAnnounce, role: str, base: GenParams
                ) -> tuple[tuple[ChatMessage, ...], GenParams]:
        """The synthesis call: every candidate answer, the query's length, temperature, seed."""
        msgs = aggregate_messages(ann.prompt, self.texts, role)
        return tuple(msgs), GenParams(ann.max_tokens, ann.temperature, base.top_p, ann.seed)

    def decision_from(self, g: Any, answer_bytes_max: int, expected: int) -> tuple[Decision, str]:
        text = clip_utf8(str(getattr(g, "text", "")), answer_bytes_max)
        d = Decision(self.rs.query_id, "aggregate", text, digest(text), PeerId(""),
                     len(self.rs.bundle), expected, 0)
        return d, (f"aggregate: synthesised by {getattr(g, 'model_id', '?')} from "
                   f"{len(self.rs.bundle)} proposals")


__all__ = ["AggregateRound"]
