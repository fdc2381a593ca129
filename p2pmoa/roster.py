"""A signed roster: the fixed membership of a private mesh (``--roster FILE``, issue 12).

A roster is a list of peer ids signed by a *mesh key* (an Ed25519 key held by whoever runs
the mesh, not necessarily a node). With a roster, a node seats only rostered peers in its
rounds (:mod:`p2pmoa.seats`) and works only for rostered originators (:mod:`p2pmoa.quota`),
whatever their speed or number: sybils outside the roster get nothing. The node pins the
roster's signer on first use (``pinned``): a roster signed by another key is refused, so
replacing the file cannot quietly replace the mesh key.

File format (JSON)::

    {"format": "p2pmoa-roster/1", "signer": "<peer id of the mesh key>",
     "peers": ["12D3KooW...", ...], "signature": "<hex Ed25519 signature>"}

The signature covers ``b"p2pmoa-roster/1\\x00" + "\\n".join(sorted(peers))``. Create one with
``p2pmoa roster sign --key MESH_KEY --out FILE PEER_ID...``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

from p2pmoa.identity import Signer, Verifier, public_key_from_peer_id

ROSTER_FORMAT = "p2pmoa-roster/1"
PEERS_MAX = 100_000
FILE_BYTES_MAX = 16 << 20


class RosterError(ValueError):
    """The roster file is unreadable, malformed, wrongly signed or signed by another key."""


@dataclass(frozen=True)
class Roster:
    peers: frozenset
    signer: str


def _signed_bytes(peers: Iterable[str]) -> bytes:
    return ROSTER_FORMAT.encode() + b"\x00" + "\n".join(sorted(peers)).encode()


def _check_peer(p: object) -> str:
    if not isinstance(p, str):
        raise RosterError(f"roster peer ids are strings, got {p!r:.40}")
    try:
        public_key_from_peer_id(p)
    except ValueError as exc:
        raise RosterError(f"{p!r:.60} is not an Ed25519 libp2p peer id") from exc
    return p


def sign_roster(mesh_key: Signer, peers: Iterable[str]) -> dict:
    """The JSON object of a roster of ``peers`` signed by ``mesh_key``."""
    ps = sorted({_check_peer(p) for p in peers})
    if not ps:
        raise RosterError("a roster needs at least one peer")
    return {"format": ROSTER_FORMAT, "signer": mesh_key.peer_id, "peers": ps,
            "signature": mesh_key.sign(_signed_bytes(ps)).hex()}


def parse_roster(raw: bytes, verifier: Verifier, *, pinned: Optional[str] = None) -> Roster:
    """Check and decode a roster file's bytes.

    Args:
        pinned: the signer this node accepted before (None: first use).

    Raises:
        RosterError: with a one-line reason.
    """
    if len(raw) > FILE_BYTES_MAX:
        raise RosterError(f"roster larger than {FILE_BYTES_MAX} bytes")
    try:
        d = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RosterError(f"roster is not JSON ({exc})") from exc
    if not isinstance(d, dict) or d.get("format") != ROSTER_FORMAT:
        raise RosterError(f"roster format must be {ROSTER_FORMAT!r}")
    if set(d) != {"format", "signer", "peers", "signature"}:
        raise RosterError("roster needs exactly the keys format, signer, peers, signature")
    signer = _check_peer(d["signer"])
    peers = d["peers"]
    if not isinstance(peers, list) or not peers or len(peers) > PEERS_MAX:
        raise RosterError(f"roster peers must be a list of 1..{PEERS_MAX} peer ids")
    ps = [_check_peer(p) for p in peers]
    try:
        sig = bytes.fromhex(d["signature"])
    except (TypeError, ValueError) as exc:
        raise RosterError("roster signature must be hex") from exc
    if not verifier.verify(public_key_from_peer_id(signer), sig, _signed_bytes(ps)):
        raise RosterError("roster signature does not verify")
    if pinned is not None and signer != pinned:
        raise RosterError(f"roster signed by {signer}, but this node pinned mesh key {pinned}; "
                          f"remove the pin (meta 'roster_signer') only if the mesh key changed")
    return Roster(frozenset(ps), signer)


def load_roster(path, verifier: Verifier, *, pinned: Optional[str] = None) -> Roster:
    """:func:`parse_roster` of the file at ``path`` (RosterError if it cannot be read)."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise RosterError(f"cannot read roster {path}: {exc.strerror or exc}") from exc
    return parse_roster(raw, verifier, pinned=pinned)
