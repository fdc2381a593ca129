"""Signed rosters (issue 12): `p2pmoa roster sign`, verification, pinning, `--roster FILE`."""
from __future__ import annotations

import hashlib
import json

import pytest

from node.config import NodeConfig
from p2pmoa.buffer import SQLiteStore
from p2pmoa.identity import Ed25519Identity, Ed25519Verifier
from p2pmoa.roster import RosterError, load_roster, parse_roster, sign_roster


def _ids(n, tag="peer"):
    return [Ed25519Identity.from_seed(hashlib.sha256(f"{tag}{i}".encode()).digest()).peer_id
            for i in range(n)]


def test_sign_then_load_round_trips_and_tampering_is_refused(tmp_path):
    key = Ed25519Identity.from_seed(b"m" * 32)
    doc = sign_roster(key, _ids(3))
    r = parse_roster(json.dumps(doc).encode(), Ed25519Verifier())
    assert r.peers == frozenset(_ids(3)) and r.signer == key.peer_id
    doc["peers"].append(_ids(1, "sybil")[0])
    with pytest.raises(RosterError, match="signature"):
        parse_roster(json.dumps(doc).encode(), Ed25519Verifier())


def test_a_roster_signed_by_another_key_than_the_pinned_one_is_refused():
    a, b = Ed25519Identity.from_seed(b"a" * 32), Ed25519Identity.from_seed(b"b" * 32)
    raw = json.dumps(sign_roster(b, _ids(2))).encode()
    with pytest.raises(RosterError, match="pinned"):
        parse_roster(raw, Ed25519Verifier(), pinned=a.peer_id)


@pytest.mark.parametrize("raw", [b"{", b"[]", b'{"format": "p2pmoa-roster/1"}',
                                 json.dumps({"format": "p2pmoa-roster/1", "signer": "x",
                                             "peers": ["y"], "signature": "00"}).encode()])
def test_malformed_rosters_are_typed_errors(raw):
    with pytest.raises(RosterError):
        parse_roster(raw, Ed25519Verifier())


def test_cli_signs_a_roster_and_node_run_refuses_a_bad_one_with_exit_2(tmp_path, capsys):
    from node.daemon import run_daemon
    from p2pmoa.cli import main

    out = tmp_path / "roster.json"
    assert main(["roster", "sign", "--key", str(tmp_path / "mesh.key"), "--out", str(out),
                 *_ids(3)]) == 0
    assert load_roster(out, Ed25519Verifier()).peers == frozenset(_ids(3))
    assert main(["roster", "show", str(out)]) == 0
    # a node that pinned another mesh key refuses this roster before starting anything
    cfg = NodeConfig(data_dir=tmp_path / "node", roster=str(out))
    cfg.data_dir.mkdir()
    store = SQLiteStore(cfg.buffer_path)
    store.put_meta("roster_signer", Ed25519Identity.from_seed(b"z" * 32).peer_id.encode())
    store.close()
    capsys.readouterr()
    assert run_daemon(cfg) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pinned" in err[0]
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    assert run_daemon(NodeConfig(data_dir=tmp_path / "n2", roster=str(bad))) == 2
