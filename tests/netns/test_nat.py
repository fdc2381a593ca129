"""A node behind a masquerading NAT, reachable from the LAN only through a circuit-relay v2
peer started with ``--relay``; it answers a query asked on the LAN."""
from __future__ import annotations

import socket

import pytest

from node.netlab import in_netns
from tests.node.conftest import poll_until

pytestmark = pytest.mark.real_net

FAST = ["--proposers-max", "3", "--deadline-s", "5", "--round-timeout-s", "20"]
ONE = ["--connections-target", "1"]  # no peer exchange: only the addresses we give


def test_node_behind_nat_answers_a_lan_query_through_a_relay(lab_factory, nodes_factory):
    lab = lab_factory(lan=2, nat=1)
    relay_h, lan_h, nat_h = lab.hosts
    assert nat_h.behind_nat
    relay = nodes_factory(lab, [dict(host=relay_h, model="stand-in:relay", extra=FAST + ["--relay"])])[0]
    natted = nodes_factory(lab, [dict(host=nat_h, model="stand-in:natted", bootstrap=[relay.addr],
                                      extra=FAST + ONE)])[0]
    # the NAT'd node learns it is behind a NAT from the relay's greeting and reserves a slot
    circuit = poll_until(lambda: natted.get("/status")["network"]["relay"]["circuit_addrs"],
                         what="a relay reservation")
    st = natted.get("/status")["network"]
    assert st["relay"]["behind_nat"] is True
    assert st["bootstrap_line"] == f"p2pmoa node run --bootstrap {circuit[0]}"
    assert circuit[0] == f"{relay.addr}/p2p-circuit/p2p/{natted.peer_id}"

    # the NAT is real: from the LAN, the NAT'd node's own address cannot be reached
    with in_netns(lan_h.ns), pytest.raises(OSError):
        socket.create_connection((nat_h.ip, natted.p2p_port), timeout=2).close()

    # a LAN device that knows only the circuit address joins and asks
    lan = nodes_factory(lab, [dict(host=lan_h, model="stand-in:lan", bootstrap=circuit,
                                   extra=FAST + ONE)])[0]
    card = poll_until(lambda: {p["peer_id"]: p for p in lan.get("/peers")["peers"]}
                      .get(natted.peer_id, {}).get("first_addr"), what="the relayed connection")
    assert "/p2p-circuit/" in card
    poll_until(lambda: lan.get("/status")["mesh_peers"] >= 1, what="the query topic mesh")
    status, body = lan.post("/v1/chat/completions", {
        "model": "p2pmoa/pbft", "messages": [{"role": "user", "content": "Who answers from behind the NAT?"}]},
        timeout_s=120)
    assert status == 200, body
    proposers = {p["peer"] for p in body["p2pmoa_trace"]["proposals"]}
    assert natted.peer_id in proposers

    # DCUtR: the relayed connection is upgraded to a direct one (the NAT'd node can dial out)
    direct = poll_until(lambda: (lambda a: a if a and "/p2p-circuit" not in a else None)(
        {p["peer_id"]: p for p in lan.get("/peers")["peers"]}.get(natted.peer_id, {}).get("addr")),
        timeout_s=60, what="a direct connection after hole punching")
    assert direct.startswith(f"/ip4/{lab.hosts[0].ip.rsplit('.', 1)[0]}."), direct  # seen from the LAN: the NAT's address
    print("direct connection after DCUtR:", direct)
