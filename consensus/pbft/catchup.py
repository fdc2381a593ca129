"""Answers to members that may be behind. A view change is also a status report: it names
the sender's stable checkpoint, its prepared certificates and the seqs it knows it missed.
:class:`Catchup` turns one into the :class:`~consensus.effects.Send` effects that bring the
sender up to date -- commit proofs (value + quorum of commits) for decisions it may lack, our
stable checkpoint's proof, and our new-view or view changes when it is in an older view --
throttled by :class:`~consensus.pbft.views.AnswerThrottle`. It reads the log and the view
change votes and never changes them.
"""
from __future__ import annotations

from typing import Callable, Optional

from ..effects import Send
from .log import Log
from .messages import CommitProof, MemberId, Message, NewView, ViewChange
from .views import AnswerThrottle, ViewChangeVotes


class Catchup:
    """Builds the answers of member ``me`` to view changes (see module doc)."""

    def __init__(self, me: MemberId, log: Log, votes: ViewChangeVotes,
                 signed: Callable[[Message], Message]) -> None:
        self.me = me
        self.log = log
        self.votes = votes
        self.signed = signed
        self.throttle = AnswerThrottle(len(log.group.members))

    def answers(self, vc: ViewChange, *, view: int, active: bool,
                new_view: Optional[NewView]) -> list[Send]:
        """What to send ``vc.sender`` now that we (in ``view``, ``active`` or not, with the
        installed ``new_view``) received ``vc`` (valid)."""
        out: list[Send] = []
        answer, retransmitted, new_missing = self.throttle.note(vc)
        if answer:
            # When we take part in the same view change, a sender holding a certificate from
            # the deciding view will decide through the new view: spare those proofs.
            joint = not active and view == vc.new_view and not retransmitted
            if vc.stable_seq < self.log.low:
                # let it adopt our stable checkpoint too
                out.extend(Send(vc.sender, ck) for ck in self.log.stable_proof)
            self._proofs(vc.sender, self.log.seqs_lacked_by(vc, joint=joint), out)
        elif new_missing:
            # a laggard catching up names new missing seqs: progress, answer those at once
            self._proofs(vc.sender, vc.missing, out)
        if not answer:
            return out
        own = self.votes.own
        if vc.new_view < view or (vc.new_view == view and active):
            # the sender is behind: show it where we are (and the view change it asks for)
            if active:
                if new_view is not None and new_view.view == view:
                    out.append(Send(vc.sender, new_view))
            else:
                out.extend(Send(vc.sender, own[v]) for v in sorted({vc.new_view, view})
                           if v in own)
        elif (vc.new_view == view and not active and view in own
              and vc.sender == self.log.group.primary(view)):
            # the would-be primary is still collecting view changes (it retransmits while
            # short of a quorum): make sure it has ours
            out.append(Send(vc.sender, own[view]))
        return out

    def proof(self, seq: int) -> Optional[CommitProof]:
        """A signed commit proof for a seq this replica decided, if it still holds one."""
        parts = self.log.commit_proof_parts(seq)
        if parts is None:
            return None
        view, d, value, commits = parts
        return self.signed(CommitProof(seq, view, d, value, commits, self.me))

    def _proofs(self, to: MemberId, seqs, out: list[Send]) -> None:
        for seq in seqs:
            proof = self.proof(seq)
            if proof is not None:
                out.append(Send(to, proof))
