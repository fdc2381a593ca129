"""The daemon's persisted trust: one :class:`consensus.trust.TrustBook` (via
:class:`p2pmoa.protocol.TrustBookPort`), the same model the tests and the simulator use.

Before issue 12 the daemon kept a ``LocalTrust`` (weight ``1 + round(9 * score)``, no share
cap, no growth limit): a member reached weight 10 after 10 good events against 5 for a new
member, enough to construct a PBFT safety violation. Its state file
(``{"scores": ..., "quarantined": ...}``) is migrated here: quarantines (evidence of
equivocation or forgery) carry over, scores do not (they were not comparable with a beta
reputation), and the log says so. Anything else that cannot be read is a
:class:`TrustStateError`: the daemon refuses to start rather than silently forget evidence.
"""
from __future__ import annotations

import json
import logging
from typing import Callable

from consensus.trust import TrustError

log = logging.getLogger(__name__)

TRUST_FORMAT = "p2pmoa-trustbook/1"


class TrustStateError(ValueError):
    """The persisted trust state is neither the current format nor the old LocalTrust one."""


def load_trust(raw: bytes | None, port_cls: Callable):
    """A trust port restored from ``raw`` (the store's ``trust`` entry), or a fresh one.

    Raises:
        TrustStateError: ``raw`` is present but unreadable (with what to do about it).
    """
    if not raw:
        return port_cls()
    try:
        d = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise TrustStateError(f"trust state in the buffer database is not JSON ({exc}); "
                              f"move the data directory aside or delete its 'trust' meta entry") from exc
    if not isinstance(d, dict):
        raise TrustStateError("trust state is not a JSON object")
    if d.get("format") == TRUST_FORMAT:
        try:
            port = port_cls.from_dict(d)
        except (TrustError, KeyError, TypeError, ValueError, AttributeError) as exc:
            raise TrustStateError(f"trust state ({TRUST_FORMAT}) is malformed: {exc}") from exc
        log.info("restored trust for %d peers", len(port.members()))
        return port
    if set(d) <= {"scores", "quarantined"} and isinstance(d.get("scores", {}), dict) \
            and isinstance(d.get("quarantined", {}), dict):
        port = port_cls()
        for peer, why in sorted(d.get("quarantined", {}).items()):
            port.quarantine(str(peer), f"migrated: {why}"[:200], 0.0)
        port.end_round(0.0)
        log.warning("migrated old LocalTrust state: %d quarantined peers kept, %d scores "
                    "dropped (the trust model is now consensus.trust.TrustBook)",
                    len(d.get("quarantined", {})), len(d.get("scores", {})))
        return port
    raise TrustStateError(f"unknown trust state format {d.get('format')!r:.60}; expected "
                          f"{TRUST_FORMAT!r} or the old LocalTrust file")


def check_trust_state(buffer_path) -> None:
    """Raise :class:`TrustStateError` if the trust state stored at ``buffer_path`` (the
    prompt-buffer database) cannot be loaded; a missing database is fine."""
    import os  # noqa: PLC0415

    from p2pmoa.buffer import SQLiteStore  # noqa: PLC0415
    from p2pmoa.protocol import TrustBookPort  # noqa: PLC0415

    if not os.path.exists(buffer_path):
        return
    store = SQLiteStore(buffer_path)
    try:
        load_trust(store.get_meta("trust"), TrustBookPort)
    finally:
        close = getattr(store, "close", None)
        if close is not None:
            close()


def check_roster(roster_path, buffer_path) -> None:
    """Raise :class:`p2pmoa.roster.RosterError` if the roster at ``roster_path`` does not
    verify or is signed by another key than the one pinned in the buffer database."""
    import os  # noqa: PLC0415

    from p2pmoa.buffer import SQLiteStore  # noqa: PLC0415
    from p2pmoa.identity import Ed25519Verifier  # noqa: PLC0415
    from p2pmoa.roster import load_roster  # noqa: PLC0415

    pin = None
    if os.path.exists(buffer_path):
        store = SQLiteStore(buffer_path)
        try:
            raw = store.get_meta("roster_signer")
        finally:
            store.close()
        pin = raw.decode() if raw else None
    load_roster(roster_path, Ed25519Verifier(), pinned=pin)
