"""Devices with wrong clocks: peers measure the skew in the greeting and report it back, both
sides log a diagnostic, and a device inside the tolerance still takes part."""
from __future__ import annotations

import pytest

from node.host import SKEW_WARN_S, SKEW_WINDOW_S
from node.procs import wait_mesh
from tests.node.conftest import poll_until

pytestmark = pytest.mark.real_net

# Tolerance = the replay window (±30 s) AND, for a clock that runs ahead, the query deadline:
# a node d seconds ahead sees every announce d seconds older, so it needs deadline_s > d (the
# default deadline is 60 s). Three proposals start the round, so the long deadline costs nothing.
FAST = ["--proposers-max", "3", "--deadline-s", "40", "--round-timeout-s", "20"]


def _card(node, peer_id) -> dict:
    return {p["peer_id"]: p for p in node.get("/peers")["peers"]}.get(peer_id, {})


def test_skewed_clocks_are_diagnosed_and_a_small_skew_still_takes_part(lab_factory, nodes_factory):
    lab = lab_factory(lan=4)
    h = lab.hosts
    inside, outside = 20.0, 120.0  # seconds ahead: inside / outside the ±30 s replay window
    assert SKEW_WARN_S < inside < SKEW_WINDOW_S < outside
    a = nodes_factory(lab, [dict(host=h[0], model="stand-in:a", extra=FAST)])[0]
    b, slow_clock, bad_clock = nodes_factory(lab, [
        dict(host=h[1], model="stand-in:b", bootstrap=[a.addr], extra=FAST),
        dict(host=h[2], model="stand-in:skew20", bootstrap=[a.addr],
             extra=FAST + ["--clock-offset-s", str(inside)]),
        dict(host=h[3], model="stand-in:skew120", bootstrap=[a.addr],
             extra=FAST + ["--clock-offset-s", str(outside)])])
    nodes = [a, b, slow_clock, bad_clock]
    wait_mesh(nodes, 60)

    # peers measure the skew (greeting, RTT/2-corrected) and show it in /peers
    for skewed, off in ((slow_clock, inside), (bad_clock, outside)):
        for honest in (a, b):
            s = poll_until(lambda: _card(honest, skewed.peer_id).get("clock_skew_s"),
                           what="a skew measurement")
            assert abs(s - off) < 2.0, (honest.name, skewed.name, s)
    # both sides log it: the honest node about the peer, the skewed node about itself
    poll_until(lambda: all(f"clock of peer {bad_clock.peer_id} is" in n.log_text() for n in (a, b)),
               what="honest nodes' diagnostic")
    line = next(ln for ln in a.log_text().splitlines() if f"clock of peer {bad_clock.peer_id}" in ln)
    assert "ahead of ours" in line and "will be refused" in line
    poll_until(lambda: "see this node's clock" in bad_clock.log_text(), what="self diagnostic")
    own = next(ln for ln in bad_clock.log_text().splitlines() if "see this node's clock" in ln)
    assert "ahead of theirs" in own and "being refused" in own and "NTP" in own

    # a question: the 20 s node still takes part, the 120 s node's frames are refused
    status, body = b.post("/v1/chat/completions", {
        "model": "p2pmoa/pbft", "messages": [{"role": "user", "content": "What time is it?"}]},
        timeout_s=120)
    assert status == 200, body
    proposers = {p["peer"] for p in body["p2pmoa_trace"]["proposals"]}
    assert slow_clock.peer_id in proposers
    assert bad_clock.peer_id not in proposers
    assert {a.peer_id, b.peer_id} <= proposers
