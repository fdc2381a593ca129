"""``p2pmoa roster sign|show``: write and inspect the signed roster of a private mesh
(p2pmoa/roster.py). The mesh key is an Ed25519 key file (0600), created on first use."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _sign(args: argparse.Namespace) -> int:
    from p2pmoa.identity import Ed25519Identity, IdentityError
    from p2pmoa.roster import RosterError, sign_roster

    try:
        key = Ed25519Identity.load_or_create(args.key)
        doc = sign_roster(key, args.peers)
    except (IdentityError, RosterError, OSError) as exc:
        print(f"p2pmoa roster sign: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"{out}: {len(doc['peers'])} peers signed by mesh key {doc['signer']}")
    return 0


def _show(args: argparse.Namespace) -> int:
    from p2pmoa.identity import Ed25519Verifier
    from p2pmoa.roster import RosterError, load_roster

    try:
        r = load_roster(args.file, Ed25519Verifier())
    except RosterError as exc:
        print(f"p2pmoa roster show: {exc}", file=sys.stderr)
        return 2
    print(f"signed by {r.signer}; {len(r.peers)} peers")
    for p in sorted(r.peers):
        print(f"  {p}")
    return 0


def register_roster(sub) -> None:
    p = sub.add_parser("roster", help="sign or check the roster of a private mesh (--roster FILE)")
    rsub = p.add_subparsers(dest="roster_command", metavar="ACTION")
    s = rsub.add_parser("sign", help="write a roster of PEER_IDs signed by the mesh key")
    s.add_argument("--key", required=True, metavar="FILE", help="mesh key file (created if missing)")
    s.add_argument("--out", required=True, metavar="FILE", help="roster file to write")
    s.add_argument("peers", nargs="+", metavar="PEER_ID")
    s.set_defaults(func=_sign)
    v = rsub.add_parser("show", help="verify a roster file and list its peers")
    v.add_argument("file", metavar="FILE")
    v.set_defaults(func=_show)
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])
