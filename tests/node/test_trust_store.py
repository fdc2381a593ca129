"""The daemon's trust state: one TrustBook, the old LocalTrust file migrated or refused
(issue 12, finding 2)."""
from __future__ import annotations

import json

import pytest

from node.config import NodeConfig
from node.trust_store import TRUST_FORMAT, TrustStateError, check_trust_state, load_trust
from p2pmoa.buffer import SQLiteStore
from p2pmoa.protocol import TrustBookPort


def test_no_state_gives_a_fresh_trust_book():
    port = load_trust(None, TrustBookPort)
    assert isinstance(port, TrustBookPort) and port.members() == []


def test_the_daemon_format_round_trips():
    port = TrustBookPort()
    for _ in range(3):
        port.quality("a", 0.9, 0.0)
        port.good("a", 0.0)
        port.end_round(0.0)
    port.quarantine("b", "equivocation", 0.0)
    raw = json.dumps({"format": TRUST_FORMAT, **port.to_dict()}).encode()
    again = load_trust(raw, TrustBookPort)
    assert again.members() == ["a", "b"] and again.is_quarantined("b")
    assert again.weights(["a", "b", "c"]) == port.weights(["a", "b", "c"])


def test_an_old_local_trust_file_keeps_its_quarantines_and_drops_its_scores():
    raw = json.dumps({"scores": {"a": 0.97, "b": 0.1}, "quarantined": {"b": "two proposals"}})
    port = load_trust(raw.encode(), TrustBookPort)
    assert port.is_quarantined("b") and port.weights(["a", "b", "c"])["b"] == 0
    assert port.score("a") == port.score("never-seen")  # the old 0.97 is not carried over


@pytest.mark.parametrize("raw", [b"not json", b"[1, 2]", b'{"format": "other/9"}',
                                 json.dumps({"format": TRUST_FORMAT, "book": 5}).encode()])
def test_unreadable_trust_state_is_refused_with_a_typed_error(raw):
    with pytest.raises(TrustStateError):
        load_trust(raw, TrustBookPort)


def test_node_run_refuses_unreadable_trust_state_with_exit_code_2(tmp_path, capsys):
    from node.daemon import run_daemon

    cfg = NodeConfig(data_dir=tmp_path)
    store = SQLiteStore(cfg.buffer_path)
    store.put_meta("trust", b'{"format": "from-the-future/2"}')
    store.close()
    with pytest.raises(TrustStateError):
        check_trust_state(cfg.buffer_path)
    assert run_daemon(cfg) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "trust state" in err[0]


def test_a_daemon_over_an_old_local_trust_state_runs_one_trust_book_and_rewrites_it(tmp_path):
    from pathlib import Path

    from node.daemon import Daemon, load_embedder, load_generator
    from node.transport import MemoryNetwork, MemoryTransport, TransportLimits
    from p2pmoa.effects import PeerId
    from p2pmoa.identity import Ed25519Identity

    cfg = NodeConfig(data_dir=tmp_path, model="stand-in:m0")
    store = SQLiteStore(cfg.buffer_path)
    store.put_meta("trust", json.dumps({"scores": {"a": 0.9}, "quarantined": {"b": "forgery"}}).encode())
    store.close()
    ident = Ed25519Identity.load_or_create(cfg.identity_path)
    t = MemoryTransport(MemoryNetwork(), PeerId(ident.peer_id), TransportLimits())
    d = Daemon(cfg, t, load_generator(cfg), load_embedder(cfg), ident)
    try:
        assert type(d.trust) is TrustBookPort and d.machine.trust is d.trust
        assert d.trust.is_quarantined("b")
        stored = json.loads(d.store.get_meta("trust"))
        assert stored["format"] == TRUST_FORMAT  # migrated once, not re-read as LocalTrust
        assert load_trust(json.dumps(stored).encode(), TrustBookPort).is_quarantined("b")
    finally:
        d.store.close()
        d.memory_store.close()
    root = Path(__file__).resolve().parents[2]
    for pkg in ("node", "p2pmoa", "simulations", "consensus"):
        for path in (root / pkg).rglob("*.py"):
            assert "class LocalTrust" not in path.read_text(), f"{path} defines LocalTrust again"
