"""Codec / frame fuzzing of p2pmoa's intake (issue 6): every hostile byte string is refused
with a typed :class:`p2pmoa.messages.FrameError`, none is accepted, nothing else is raised.

The high-volume mutation loop (>= 1,000,000 frames) lives in ``bench/reliability.py``.
"""
from __future__ import annotations

import random
import struct

import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p2pmoa.identity import Ed25519Identity, Ed25519Verifier, FrameReader, seal
from p2pmoa.messages import (BadSignature, Duplicate, FrameError, MalformedFrame, OversizedFrame,
                             Proposal, QueryAnnounce, Replayed, StaleFrame, UnknownKind,
                             UnsupportedVersion, encode_body, pack, vector_to_f32)

NOW = 1_700_000_000.0
ALICE = Ed25519Identity.from_seed(b"a" * 32)
MALLORY = Ed25519Identity.from_seed(b"m" * 32)
_nonce_rng = random.Random(1)


def nonce() -> bytes:
    return _nonce_rng.randbytes(16)


def announce(**kw) -> QueryAnnounce:
    d = dict(query_id="q1", origin=ALICE.peer_id, prompt="What is 2+2?", method="pbft",
             created_at=NOW, deadline_s=30.0, proposers_max=4)
    d.update(kw)
    return QueryAnnounce(**d)


def proposal(**kw) -> Proposal:
    d = dict(query_id="q1", proposer=ALICE.peer_id, answer="4", model_id="stand-in",
             role="solver", space_id="hash64", embedding_f32=vector_to_f32([0.5] * 4),
             prompt_tokens=3, completion_tokens=1, llm_s=0.1)
    d.update(kw)
    return Proposal(**d)


def reader() -> FrameReader:
    return FrameReader(Ed25519Verifier())


VALID = seal(ALICE, announce(), now=NOW, nonce=b"\x01" * 16)


def _refused(r: FrameReader, data, now: float = NOW) -> FrameError:
    try:
        r.read(data, now)
    except FrameError as exc:
        return exc
    raise AssertionError(f"hostile frame accepted: {bytes(data)[:80]!r}")


def test_valid_frame_is_accepted_once():
    r = reader()
    env, msg = r.read(VALID, NOW)
    assert msg == announce() and env.sender == ALICE.peer_id
    assert isinstance(_refused(r, VALID), Duplicate)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048))
def test_random_bytes_are_refused_with_typed_errors(data):
    _refused(reader(), data)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_valid_frames_are_refused(data):
    """Bit flips, truncation, insertion and splicing of a valid frame: after the original was
    accepted, no mutant is accepted (a re-encoding with the same content is a replay)."""
    r = reader()
    r.read(VALID, NOW)
    b = bytearray(VALID)
    op = data.draw(st.sampled_from(["flip", "truncate", "insert", "splice", "overwrite"]))
    i = data.draw(st.integers(0, len(b) - 1))
    if op == "flip":
        b[i] ^= 1 << data.draw(st.integers(0, 7))
    elif op == "truncate":
        b = b[:i]
    elif op == "insert":
        b[i:i] = data.draw(st.binary(min_size=1, max_size=16))
    elif op == "splice":
        j = data.draw(st.integers(i, len(b)))
        b = b[:i] + b[j:] + b[i:j]
    else:
        chunk = data.draw(st.binary(min_size=1, max_size=8))
        b[i:i + len(chunk)] = chunk
    if bytes(b) == VALID:
        return
    _refused(r, bytes(b))


_scalar = st.one_of(st.none(), st.booleans(), st.integers(-(1 << 63), (1 << 64) - 1),
                    st.floats(allow_nan=True), st.text(max_size=20), st.binary(max_size=40))
_value = st.recursive(_scalar, lambda c: st.one_of(st.lists(c, max_size=4),
                                                   st.dictionaries(st.text(max_size=8), c,
                                                                   max_size=4)), max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(st.lists(_value, min_size=0, max_size=10))
def test_wrongly_typed_envelopes_are_refused(items):
    """Arrays of arbitrary msgpack values, including 8-element ones, are never envelopes."""
    _refused(reader(), pack(items))


FIELDS_ANNOUNCE = ["query_id", "origin", "prompt", "method", "created_at", "deadline_s",
                   "proposers_max"]
BAD_VALUES = [None, True, -1, 1 << 62, -1e300, float("nan"), float("inf"), "", "x" * 70_000,
              b"\x00" * 33, [], {}, [1, 2], {"a": 1}]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(FIELDS_ANNOUNCE), st.sampled_from(BAD_VALUES),
       st.sampled_from(["replace", "drop", "extra"]))
def test_signed_bodies_that_break_the_schema_are_refused(field, bad, how):
    """Mallory signs bodies herself (so the signature is fine): the schema still refuses
    them with MalformedFrame after the signature check."""
    d = msgpack.unpackb(encode_body(announce(origin=MALLORY.peer_id)), raw=False)
    if how == "replace":
        d[field] = bad
    elif how == "drop":
        del d[field]
    else:
        d["zz_extra"] = bad
    try:
        body = pack(d)
    except (ValueError, OverflowError, TypeError):
        return
    frame = _raw_envelope(MALLORY, "announce", "q1", NOW, nonce(), body)
    exc = _refused(reader(), frame)
    assert isinstance(exc, (MalformedFrame, OversizedFrame)), type(exc)


def _raw_envelope(who, kind, qid, ts, nonce_b, body, *, version=1, sign_as=None) -> bytes:
    from p2pmoa.identity import Envelope
    env = Envelope(version, kind, who.public_key, qid, float(ts), nonce_b, body, b"")
    sig = (sign_as or who).sign(env.signed_bytes())
    return pack([version, kind, who.public_key, qid, float(ts), nonce_b, body, sig])


def test_each_attack_gets_its_reason():
    r = reader()
    body = encode_body(announce())
    cases = {
        "oversized": b"\x00" * ((1 << 20) + 1),
        "unsigned": pack([1, "announce", ALICE.public_key, "q1", NOW, nonce(), body, b""]),
        "zero_signature": pack([1, "announce", ALICE.public_key, "q1", NOW, nonce(), body,
                                b"\x00" * 64]),
        "forged": _raw_envelope(ALICE, "announce", "q1", NOW, nonce(), body, sign_as=MALLORY),
        "stale_past": _raw_envelope(ALICE, "announce", "q1", NOW - 3600, nonce(), body),
        "stale_future": _raw_envelope(ALICE, "announce", "q1", NOW + 3600, nonce(), body),
        "version": _raw_envelope(ALICE, "announce", "q1", NOW, nonce(), body, version=2),
        "kind": _raw_envelope(ALICE, "teleport", "q1", NOW, nonce(), body),
        "qid_mismatch": _raw_envelope(ALICE, "announce", "q2", NOW, nonce(), body),
    }
    want = {"oversized": OversizedFrame, "unsigned": MalformedFrame,
            "zero_signature": BadSignature, "forged": BadSignature, "stale_past": StaleFrame,
            "stale_future": StaleFrame, "version": UnsupportedVersion, "kind": UnknownKind,
            "qid_mismatch": MalformedFrame}
    for name, frame in cases.items():
        exc = _refused(r, frame)
        assert isinstance(exc, want[name]), (name, exc)
    # replay: same (sender, nonce) with a different encoding of the content, and re-sent later
    n = nonce()
    first = _raw_envelope(ALICE, "announce", "q1", NOW, n, body)
    r.read(first, NOW)
    again = _raw_envelope(ALICE, "announce", "q1", NOW + 0.5, n, body)
    assert isinstance(_refused(r, again, NOW + 1), Replayed)
    assert isinstance(_refused(r, first, NOW + 1), Duplicate)


def test_nan_and_inf_embeddings_in_signed_proposals_are_refused():
    for bad in (float("nan"), float("inf"), float("-inf")):
        p = proposal(proposer=MALLORY.peer_id,
                     embedding_f32=struct.pack("<4f", 0.1, bad, 0.2, 0.3))
        frame = _raw_envelope(MALLORY, "proposal", "q1", NOW, nonce(), encode_body(p))
        assert isinstance(_refused(reader(), frame), MalformedFrame)


def test_nested_containers_and_huge_declared_lengths_are_bounded():
    """msgpack headers that declare 4 GiB strings / arrays, and deep nesting, are refused
    without allocating them."""
    for data in (b"\xdb\xff\xff\xff\xff" + b"a" * 10,   # str32 of 4 GiB
                 b"\xdd\xff\xff\xff\xff",               # array32 of 4 G items
                 b"\xdf\xff\xff\xff\xff",               # map32
                 b"\xc6\xff\xff\xff\xff",               # bin32
                 b"\x91" * 100_000 + b"\xc0",           # 100k nested arrays
                 b"\xc7\x01\x05x"):                     # ext type
        assert isinstance(_refused(reader(), data), (MalformedFrame, OversizedFrame))


@settings(max_examples=300, deadline=None)
@given(_value)
def test_signed_pbft_bodies_with_garbage_raise_only_typed_errors(inner):
    """A PBFT wire body of arbitrary structure: decode_body either builds a consensus.pbft
    message or raises MalformedFrame; never anything else."""
    from p2pmoa.messages import decode_body
    try:
        body = pack({"query_id": "q1", "body": inner})
    except (ValueError, OverflowError, TypeError):
        return
    try:
        decode_body("pbft", body)
    except FrameError:
        pass


def test_one_sender_cannot_make_honest_frames_stale_by_filling_the_replay_window():
    """Regression: one key filling the replay window (shown with entries_max=1000 instead of
    65,536) with frames stamped now+29 s must not make other senders' frames stale."""
    r = FrameReader(Ed25519Verifier(), replay_entries_max=1000)
    body = encode_body(announce(origin=MALLORY.peer_id))
    for i in range(1001):
        frame = _raw_envelope(MALLORY, "announce", "q1", NOW + 29.0, i.to_bytes(16, "big"), body)
        try:
            r.read(frame, NOW)
        except FrameError:
            pass
    honest = seal(ALICE, announce(), now=NOW, nonce=b"\x07" * 16)
    env, msg = r.read(honest, NOW)
    assert msg == announce()
