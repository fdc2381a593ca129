"""Codec of p2pmoa.messages: round trips, bounds, and hostile bytes never escape as crashes."""
from __future__ import annotations

import hashlib

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pmoa.identity import Ed25519Identity, Ed25519Verifier, FrameReader, decode_envelope, seal
from p2pmoa.messages import (
    Ack,
    AvgVector,
    Decision,
    FrameError,
    Limits,
    MalformedFrame,
    Nack,
    OversizedFrame,
    Proposal,
    QueryAnnounce,
    RoundStart,
    ScoreVote,
    UnknownKind,
    UnsupportedVersion,
    decode_body,
    encode_body,
    pack,
    unpack_bounded,
    vector_to_f32,
)

ME = Ed25519Identity.from_seed(b"\x01" * 32)
PID = ME.peer_id


def samples():
    prop = Proposal("q1", PID, "Paris is the capital.", "smollm2-135m", "geographer", "hash64",
                    vector_to_f32([0.6, 0.8]), 12, 7, 0.25)
    frame = seal(ME, prop, now=10.0, nonce=b"\x02" * 16)
    return [
        QueryAnnounce("q1", PID, "What is the capital of France?", "pbft", 10.0, 30.0, 4),
        prop,
        Ack("q1", b"\x00" * 16),
        Nack("q1", b"\x00" * 16, "busy", 2.5),
        RoundStart("q1", "vote", (PID,), (3,), (frame,), 10.0, 2.0),
        AvgVector("q1", 3, vector_to_f32([1.0, 0.0, 0.0])),
        ScoreVote("q1", (1000, 0, 500)),
        Decision("q1", "pbft", "Paris.", hashlib.sha256(b"Paris.").digest(), PID, 3, 4, 1),
    ]


@pytest.mark.parametrize("msg", samples(), ids=lambda m: m.kind)
def test_every_message_round_trips(msg):
    assert decode_body(msg.kind, encode_body(msg)) == msg


@pytest.mark.parametrize("msg", samples(), ids=lambda m: m.kind)
def test_every_message_round_trips_through_signed_envelope(msg):
    reader = FrameReader(Ed25519Verifier())
    env, got = reader.read(seal(ME, msg, now=100.0, nonce=b"\x07" * 16), now=100.0)
    assert got == msg and env.sender == PID and env.kind == msg.kind


def test_oversized_frame_rejected_before_parsing():
    limits = Limits(frame_bytes_max=1000)
    with pytest.raises(OversizedFrame) as e:
        unpack_bounded(b"\x00" * 1001, limits)
    assert e.value.reason == "oversized"
    # a default-limit node refuses a 2 MiB frame too
    with pytest.raises(OversizedFrame):
        FrameReader(Ed25519Verifier()).read(b"\x90" * (2 << 20), now=0.0)


def test_string_longer_than_limit_is_malformed_not_allocated():
    limits = Limits(prompt_bytes_max=10, answer_bytes_max=10, text_bytes_max=10)
    with pytest.raises(MalformedFrame):
        unpack_bounded(pack("x" * 100), limits)


def test_array_longer_than_limit_is_malformed():
    with pytest.raises(MalformedFrame):
        unpack_bounded(pack(list(range(10_000))))


def test_wrong_field_type_or_extra_field_is_malformed():
    body = msgpack.unpackb(encode_body(samples()[0]))
    bad_type = dict(body, proposers_max="four")
    extra = dict(body, evil=1)
    missing = {k: v for k, v in body.items() if k != "prompt"}
    for d in (bad_type, extra, missing):
        with pytest.raises(MalformedFrame):
            decode_body("announce", pack(d))


def test_nan_in_embedding_is_malformed():
    prop = samples()[1]
    d = msgpack.unpackb(encode_body(prop))
    d["embedding_f32"] = vector_to_f32([float("nan"), 1.0])
    with pytest.raises(MalformedFrame):
        decode_body("proposal", pack(d))


def test_unknown_kind_and_version_have_their_own_reasons():
    frame = msgpack.unpackb(seal(ME, samples()[2], now=1.0, nonce=b"\x01" * 16))
    with pytest.raises(UnsupportedVersion) as e:
        decode_envelope(pack([2] + frame[1:]))
    assert e.value.reason == "bad_version"
    with pytest.raises(UnknownKind) as e:
        decode_envelope(pack([1, "launch_missiles"] + frame[2:]))
    assert e.value.reason == "unknown_kind"


def test_unsorted_round_members_rejected():
    rs = RoundStart("q1", "vote", ("b", "a"), (1, 1), (), 1.0, 1.0)
    with pytest.raises(MalformedFrame):
        decode_body("round", encode_body(rs))


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=2048))
def test_fuzz_any_bytes_give_typed_error_or_message(data):
    reader = FrameReader(Ed25519Verifier())
    try:
        reader.read(data, now=100.0)
    except FrameError as exc:
        assert exc.reason
    for kind in ("announce", "proposal", "round", "decision", "vote"):
        try:
            decode_body(kind, data)
        except FrameError:
            pass


msgpack_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats()
    | st.text(max_size=40) | st.binary(max_size=40),
    lambda kids: st.lists(kids, max_size=6) | st.dictionaries(st.text(max_size=10), kids, max_size=6),
    max_leaves=30,
)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(["announce", "proposal", "ack", "nack", "round", "avg", "vote",
                        "decision"]),
       st.dictionaries(st.sampled_from(["query_id", "origin", "prompt", "method", "answer",
                                        "members", "weights", "bundle", "scores", "ref",
                                        "embedding_f32", "digest", "proposers_max", "step"]),
                       msgpack_values, max_size=14))
def test_fuzz_structured_bodies_give_typed_error_or_valid_message(kind, d):
    """Well-formed msgpack with the right-ish keys but any values: typed error or a message."""
    try:
        msg = decode_body(kind, pack(d))
    except FrameError:
        return
    assert decode_body(kind, encode_body(msg)) == msg


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 400), st.integers(0, 255))
def test_fuzz_bit_flips_of_a_valid_frame_never_crash_and_never_pass_unsigned(pos, byte):
    frame = bytearray(seal(ME, samples()[1], now=100.0, nonce=b"\x05" * 16))
    pos %= len(frame)
    if frame[pos] == byte:
        return
    frame[pos] = byte
    try:
        env, msg = FrameReader(Ed25519Verifier()).read(bytes(frame), now=100.0)
    except FrameError:
        return
    # msgpack allows a few encodings of the same value; anything accepted must be the
    # sender's original, signed content.
    assert msg == samples()[1]
