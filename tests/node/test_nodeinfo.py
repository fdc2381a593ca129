"""Node info gossip (node/nodeinfo.py): what peers advertise is validated, bounded and shown."""
from __future__ import annotations

import msgpack
import pytest

from node.nodeinfo import (INFO_BYTES_MAX, InfoRejected, NodeInfoBook, decode_info, describe_model,
                           encode_info, model_metadata)


def test_round_trip_keeps_known_fields_and_drops_unknown_ones():
    info = {"model_id": "smollm2-135m@b179", "model_name": "smollm2-135m", "quantization": "Q4_1",
            "chat": True, "context_length": 8192, "size_bytes": 98362432, "sent_at": 1.5,
            "embedding_space": "gemma3@x", "role": "r"}
    frame = msgpack.packb({**info, "evil": "x" * 10}, use_bin_type=True)
    assert decode_info(frame) == info
    assert decode_info(encode_info(info)) == info


@pytest.mark.parametrize("frame, reason", [
    (b"\xc1garbage", "malformed"),
    (msgpack.packb([1, 2]), "malformed"),
    (msgpack.packb({"context_length": "8192"}), "malformed"),
    (msgpack.packb({"context_length": True}), "malformed"),
    (msgpack.packb({"role": "x" * INFO_BYTES_MAX}), "oversized"),
])
def test_bad_frames_are_refused_and_counted_by_reason(frame, reason):
    with pytest.raises(InfoRejected) as exc:
        decode_info(frame)
    assert exc.value.reason == reason
    book = NodeInfoBook()
    assert not book.receive("p1", frame, now=10.0)
    assert book.rejected == {reason: 1} and book.view("p1", 11.0) == {}


def test_book_shows_latest_info_with_age_and_delay_and_is_bounded():
    book = NodeInfoBook(peers_max=2)
    book.receive("p1", encode_info({"model_name": "a", "role": "r", "sent_at": 99.5}), now=100.0)
    book.receive("p1", encode_info({"model_name": "b", "role": "r", "sent_at": 100.0}), now=100.25)
    v = book.view("p1", now=101.25)
    assert v["model_name"] == "b" and v["info_age_s"] == 1.0 and v["delay_s"] == 0.25
    book.receive("p2", encode_info({"model_name": "c"}), now=102.0)
    book.receive("p3", encode_info({"model_name": "d"}), now=103.0)
    assert book.view("p1", 104.0) == {} and book.view("p3", 104.0)["model_name"] == "d"


def test_describe_model_for_the_peers_command():
    assert describe_model({"peer_id": "x"}) == "model=?"
    assert describe_model({"model_name": "stand-in:a", "stand_in": True}) == "model=stand-in:a (stand-in)"
    line = describe_model({"model_name": "smollm2-135m", "quantization": "Q4_1", "chat": True,
                           "context_length": 8192, "size_bytes": 98_362_432, "embedding_space": "s1"})
    assert line == "model=smollm2-135m Q4_1 chat ctx=8192 98MB space=s1"


def test_a_real_gguf_advertises_its_header_metadata():
    m = model_metadata("smollm2-135m")
    assert m["quantization"] == "Q4_1" and m["chat"] is True and m["context_length"] == 8192
    assert decode_info(encode_info(m)) == m
