"""Identity, signed envelopes and the replay window."""
from __future__ import annotations

import os
import random
import stat

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pmoa.identity import (
    Ed25519Identity,
    Ed25519Verifier,
    FrameReader,
    IdentityError,
    InsecureSimRegistry,
    InsecureSimSigner,
    InsecureSimVerifier,
    ReplayWindow,
    peer_id_from_public_key,
    public_key_from_peer_id,
    seal,
)
from p2pmoa.messages import Ack, BadSignature, Duplicate, Replayed, StaleFrame, pack

ALICE = Ed25519Identity.from_seed(b"\xaa" * 32)
MALLORY = Ed25519Identity.from_seed(b"\x66" * 32)


def ack(q="q1"):
    return Ack(q, b"\x00" * 16)


def test_key_file_is_0600_and_survives_restart(tmp_path):
    path = tmp_path / "data" / "identity.key"
    first = Ed25519Identity.load_or_create(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    again = Ed25519Identity.load_or_create(path)
    assert again.peer_id == first.peer_id


def test_key_file_with_open_permissions_is_refused(tmp_path):
    path = tmp_path / "id.key"
    ALICE.save(path)
    os.chmod(path, 0o644)
    with pytest.raises(IdentityError):
        Ed25519Identity.load(path)


def test_peer_id_is_the_libp2p_form_and_invertible():
    pid = ALICE.peer_id
    assert pid.startswith("12D3KooW")  # libp2p Ed25519 identity-multihash peer ids
    assert public_key_from_peer_id(pid) == ALICE.public_key
    assert peer_id_from_public_key(MALLORY.public_key) != pid


def test_forged_signature_is_rejected():
    frame = msgpack.unpackb(seal(MALLORY, ack(), now=5.0, nonce=b"\x01" * 16))
    frame[2] = ALICE.public_key  # Mallory claims to be Alice
    reader = FrameReader(Ed25519Verifier())
    with pytest.raises(BadSignature) as e:
        reader.read(pack(frame), now=5.0)
    assert e.value.reason == "bad_signature"


def test_tampered_body_is_rejected():
    frame = msgpack.unpackb(seal(ALICE, ack(), now=5.0, nonce=b"\x01" * 16))
    frame[6] = pack({"query_id": "q1", "ref": b"\xff" * 16})
    with pytest.raises(BadSignature):
        FrameReader(Ed25519Verifier()).read(pack(frame), now=5.0)


def test_replay_with_new_bytes_is_rejected_but_fresh_nonce_accepted():
    reader = FrameReader(Ed25519Verifier())
    raw = seal(ALICE, ack(), now=5.0, nonce=b"\x01" * 16)
    reader.read(raw, now=5.0)
    with pytest.raises(Duplicate):
        reader.read(raw, now=6.0)
    # a validly signed frame reusing an accepted (sender, nonce) pair is a replay
    again = seal(ALICE, ack(), now=5.5, nonce=b"\x01" * 16)
    with pytest.raises(Replayed) as e:
        reader.read(again, now=6.0)
    assert e.value.reason == "replayed"
    reader.read(seal(ALICE, ack(), now=6.0, nonce=b"\x02" * 16), now=6.0)


def test_timestamps_outside_skew_are_stale():
    reader = FrameReader(Ed25519Verifier(), skew_s=10.0)
    for ts in (100.0 - 10.5, 100.0 + 10.5):
        with pytest.raises(StaleFrame):
            reader.read(seal(ALICE, ack(), now=ts, nonce=os.urandom(16)), now=100.0)


def test_replay_window_memory_is_bounded_and_floor_keeps_it_safe():
    w = ReplayWindow(skew_s=1000.0, entries_max=100)
    for i in range(1000):
        w.check(b"k", i.to_bytes(16, "big"), float(i), now=500.0 if i < 500 else float(i))
        w.record(b"k", i.to_bytes(16, "big"), float(i), now=500.0 if i < 500 else float(i))
    assert len(w) <= 100
    # an evicted nonce must not become acceptable again
    with pytest.raises((StaleFrame, Replayed)):
        w.check(b"k", (5).to_bytes(16, "big"), 950.0 - 900, now=1000.0)
    with pytest.raises(StaleFrame):
        w.check(b"k", (950).to_bytes(16, "big"), w.floor(b"k"), now=1000.0)


def test_a_flood_from_one_key_does_not_make_other_senders_stale():
    w = ReplayWindow(skew_s=30.0, entries_max=50)
    w.check(b"honest", b"h" * 16, 99.0, now=100.0)
    w.record(b"honest", b"h" * 16, 99.0, now=100.0)
    refused = 0
    for i in range(500):  # the attacker's frames are all stamped "now"
        try:
            w.check(b"evil", i.to_bytes(16, "big"), 100.0, now=100.0)
        except StaleFrame:
            refused += 1  # once its own pairs are evicted, the flooder's floor rises
            continue
        w.record(b"evil", i.to_bytes(16, "big"), 100.0, now=100.0)
    assert len(w) <= 50 and refused > 400
    w.check(b"honest", b"i" * 16, 99.5, now=100.0)  # a slightly older honest frame still passes
    with pytest.raises((StaleFrame, Replayed)):
        w.check(b"honest", b"h" * 16, 99.0, now=100.0)  # but the evicted pair stays refused


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 20), st.floats(0, 100)), max_size=200))
def test_replay_window_never_accepts_a_pair_twice(events):
    w = ReplayWindow(skew_s=50.0, entries_max=16)
    accepted = set()
    now = 0.0
    for nonce, dt in events:
        now += dt / 10
        ts = now
        try:
            w.check(b"k", bytes([nonce]) * 16, ts, now)
        except (StaleFrame, Replayed):
            continue
        key = (nonce, ts)
        assert nonce not in {n for n, t in accepted if now - t <= 50.0}, "replay accepted"
        accepted.add(key)
        w.record(b"k", bytes([nonce]) * 16, ts, now)


def test_each_unique_frame_is_verified_once():
    reader = FrameReader(Ed25519Verifier())
    raw = seal(ALICE, ack(), now=1.0, nonce=b"\x03" * 16)
    reader.read(raw, now=1.0)
    for _ in range(5):
        with pytest.raises(Duplicate):
            reader.read(raw, now=1.0)
    assert reader.verifications == 1
    reader.read_embedded(raw)
    reader.read_embedded(raw)
    assert reader.verifications == 2


def test_insecure_sim_signer_verifies_own_and_rejects_forgery():
    reg = InsecureSimRegistry()
    rng = random.Random(7)
    a, m = InsecureSimSigner.create(rng, reg), InsecureSimSigner.create(rng, reg)
    reader = FrameReader(InsecureSimVerifier(reg))
    env, _ = reader.read(seal(a, ack(), now=1.0, nonce=b"\x01" * 16), now=1.0)
    assert env.sender == a.peer_id
    forged = msgpack.unpackb(seal(m, ack(), now=1.0, nonce=b"\x02" * 16))
    forged[2] = a.public_key
    with pytest.raises(BadSignature):
        reader.read(pack(forged), now=1.0)
