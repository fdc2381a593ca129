"""Issue 12, finding 6, on a real daemon: a libp2p peer cannot make a node work by gossiping
announces signed by other (fresh) keys; its own signed announce is still answered."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import pytest
import trio

from node.procs import NodeProcess
from tests.reliability.hostile import _announce, raw_envelope
from tests.reliability.test_daemon_hostile import _wait, metric_values

pytestmark = pytest.mark.real_net


def test_announces_signed_by_keys_other_than_the_publisher_get_no_work(tmp_path):
    from node.transport import TransportLimits, load_or_create_identity, open_libp2p_transport
    from p2pmoa.identity import Ed25519Identity
    from p2pmoa.messages import QUERY_TOPIC, encode_body

    node = NodeProcess("publisher-check", Path(tempfile.mkdtemp(prefix="p2pmoa-rel-")),
                       model="stand-in", extra=["--proposers-max", "1", "--deadline-s", "1"])
    node.start()
    try:
        node.wait_ready(60)
        key = tmp_path / "relay.key"
        relay = Ed25519Identity.load_or_create(key)

        def gens() -> float:
            return metric_values(node.get("/metrics"), "p2pmoa_generations_total").get("", 0.0)

        def mismatches() -> float:
            return metric_values(node.get("/metrics"), "p2pmoa_frames_rejected_total").get(
                '{reason="announce_publisher_mismatch"}', 0.0)

        g0 = gens()

        async def gossip():
            kp = load_or_create_identity(str(key))
            async with open_libp2p_transport(kp, bootstrap=[node.addr],
                                             limits=TransportLimits()) as t:
                await t.subscribe(QUERY_TOPIC)
                await _wait(lambda: node.peer_id in t.topic_peers(QUERY_TOPIC), 30,
                            "the node's subscription to be known")
                for i in range(3):  # validly signed, by fresh keys that are not the publisher
                    fresh = Ed25519Identity.generate()
                    now = time.time()
                    body = encode_body(_announce(fresh.peer_id, now, qid=f"fresh{i}"))
                    await t.publish(QUERY_TOPIC, raw_envelope(fresh, "announce", f"fresh{i}",
                                                              now, bytes([i + 1]) * 16, body))
                await _wait(lambda: mismatches() >= 3, 30, "the relayed announces to be refused")
                g1 = gens()
                now = time.time()
                own = raw_envelope(relay, "announce", "own", now, b"\x09" * 16,
                                   encode_body(_announce(relay.peer_id, now, "own")))
                await t.publish(QUERY_TOPIC, own)
                await _wait(lambda: gens() > g1, 30, "the publisher's own announce to be answered")
                return g1

        g1 = trio.run(gossip)
        assert g1 == g0, "an announce signed by another key than its publisher made the node work"
        assert mismatches() == 3
    finally:
        node.stop()
