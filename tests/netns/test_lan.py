"""Daemons on separate hosts (one network namespace each) on a bridged LAN.

Stand-in generator + hashing embedder (fast, deterministic); the daemons, libp2p, the
network and the OpenAI client are all real. Every address dialled is in the lab.
"""
from __future__ import annotations

import os
import sys

import openai
import pytest

from node.netlab import in_netns
from node.procs import wait_mesh
from tests.node.conftest import poll_until
from tests.netns.conftest import in_ns

pytestmark = pytest.mark.real_net

FAST = ["--proposers-max", "3", "--deadline-s", "5", "--round-timeout-s", "20"]


def _ask_openai(lab, node, question: str):
    """One chat completion through the OpenAI client, from the lab's client device."""
    with in_netns(lab.client.ns):
        client = openai.OpenAI(base_url=f"http://{node.api}/v1", api_key="unused", max_retries=0,
                               timeout=120)
        return client.chat.completions.create(
            model="p2pmoa/pbft", messages=[{"role": "user", "content": question}])


def _peers_of(node) -> dict:
    return {p["peer_id"]: p for p in node.get("/peers")["peers"]}


def test_three_hosts_on_a_lan_answer_through_the_openai_api(lab_factory, nodes_factory):
    lab = lab_factory(lan=3)
    h = lab.hosts
    first = nodes_factory(lab, [dict(host=h[0], model="stand-in:m0", extra=FAST)])
    nodes = first + nodes_factory(lab, [
        dict(host=h[i], model=f"stand-in:m{i}", bootstrap=[first[0].addr], extra=FAST)
        for i in (1, 2)])
    wait_mesh(nodes, 60)

    # dialable addresses: the LAN address, never 0.0.0.0, and a copy-paste bootstrap line
    for n in nodes:
        st = n.get("/status")
        assert any(f"/ip4/{n.host.ip}/tcp/7700/p2p/{n.peer_id}" == a for a in st["listen_addrs"])
        assert not any("0.0.0.0" in a for a in st["listen_addrs"])
        assert st["network"]["bootstrap_line"] == f"p2pmoa node run --bootstrap {n.addr}"
        assert f"other devices join with: p2pmoa node run --bootstrap {n.addr}" in n.log_text()

    r = _ask_openai(lab, nodes[2], "Which planet is known as the red planet?")
    trace = r.model_extra["p2pmoa_trace"]
    assert {p["peer"] for p in trace["proposals"]} == {n.peer_id for n in nodes}
    assert r.choices[0].message.content in {p["answer"] for p in trace["proposals"]}

    # `p2pmoa peers` on the client device shows each peer's address, model and space
    poll_until(lambda: all(p.get("model") for p in _peers_of(nodes[0]).values())
               and len(_peers_of(nodes[0])) == 2, what="greetings with both peers")
    out = in_ns(lab.client, sys.executable, "-m", "p2pmoa.cli", "peers", "--api", nodes[0].api)
    assert out.returncode == 0, out.stderr
    for n in nodes[1:]:
        line = next(ln for ln in out.stdout.splitlines() if n.peer_id in ln)
        assert f"/ip4/{n.host.ip}/tcp/" in line
        assert n.model in line and "stand-in:hashing/64" in line


def test_network_key_keeps_out_a_host_without_it(lab_factory, nodes_factory, tmp_path):
    lab = lab_factory(lan=3)
    h = lab.hosts
    key = tmp_path / "mesh.key"
    r = in_ns(lab.client, sys.executable, "-m", "p2pmoa.cli", "keygen", "--network-key", str(key))
    assert r.returncode == 0, r.stderr
    assert oct(os.stat(key).st_mode & 0o777) == "0o600"
    private = ["--network-key", str(key), "--no-mdns"]
    a = nodes_factory(lab, [dict(host=h[0], extra=FAST + private)])[0]
    b, outsider = nodes_factory(lab, [
        dict(host=h[1], bootstrap=[a.addr], extra=FAST + private),
        dict(host=h[2], bootstrap=[a.addr], extra=FAST)])
    wait_mesh([a, b], 60)
    # the outsider keeps trying (backoff; a dial that gets no handshake answer fails only at
    # the 10 s request timeout) and never gets a connection
    poll_until(lambda: (outsider.get("/status")["transport"]["dials_failed"] >= 2),
               timeout_s=90, what="the outsider's second failed dial")
    assert outsider.get("/status")["peers"] == 0
    assert outsider.peer_id not in _peers_of(a)
    assert set(_peers_of(a)) == {b.peer_id}
    assert a.get("/status")["network"]["private"] is True
    # and the key holders still answer
    r = _ask_openai(lab, b, "Is the mesh private?")
    assert {p["peer"] for p in r.model_extra["p2pmoa_trace"]["proposals"]} == {a.peer_id, b.peer_id}


def test_mdns_finds_three_hosts_without_any_bootstrap(lab_factory, nodes_factory, tmp_path):
    lab = lab_factory(lan=3)
    key = tmp_path / "mesh.key"
    assert in_ns(lab.client, sys.executable, "-m", "p2pmoa.cli", "keygen",
                 "--network-key", str(key)).returncode == 0
    # private mesh: mDNS is on by default; no --bootstrap anywhere
    nodes = nodes_factory(lab, [dict(host=hh, model=f"stand-in:m{i}",
                                     extra=FAST + ["--network-key", str(key)])
                                for i, hh in enumerate(lab.hosts)])
    assert all(not n.bootstrap for n in nodes)
    wait_mesh(nodes, 90)
    assert all(n.get("/status")["network"]["mdns"] for n in nodes)
    assert any("by mDNS" in n.log_text() for n in nodes)
    r = _ask_openai(lab, nodes[1], "How many legs does a spider have?")
    assert {p["peer"] for p in r.model_extra["p2pmoa_trace"]["proposals"]} == {n.peer_id for n in nodes}


def test_peer_of_another_embedding_space_is_refused_on_both_sides(lab_factory, nodes_factory):
    lab = lab_factory(lan=2)
    h = lab.hosts
    a = nodes_factory(lab, [dict(host=h[0], extra=FAST)])[0]
    # same stand-in generator, but a real embedder: another embedding space
    other = nodes_factory(lab, [dict(host=h[1], bootstrap=[a.addr], embedder="smollm2-135m",
                                     extra=FAST)])[0]
    poll_until(lambda: "refusing peer" in a.log_text() and "refusing peer" in other.log_text(),
               timeout_s=60, what="both sides to log the refusal")
    for me, them in ((a, other), (other, a)):
        line = next(ln for ln in me.log_text().splitlines() if "refusing peer" in ln)
        assert them.peer_id in line and "embedding space" in line and "--embedder" in line
        st = me.get("/status")
        assert st["network"]["refused_peers"] == {them.peer_id: "space_mismatch"}
    poll_until(lambda: a.get("/status")["peers"] == 0 and other.get("/status")["peers"] == 0,
               what="the refused connection to be closed")


@pytest.mark.real_model
def test_real_gguf_models_on_two_hosts_answer_through_the_openai_api(lab_factory, nodes_factory):
    """The one namespace test with a real model (smollm2-135m on both hosts, 16 tokens)."""
    lab = lab_factory(lan=2)
    h = lab.hosts
    real = ["--max-tokens", "16", "--proposers-max", "2", "--deadline-s", "120",
            "--round-timeout-s", "60"]
    a = nodes_factory(lab, [dict(host=h[0], model="smollm2-135m", extra=real)])[0]
    b = nodes_factory(lab, [dict(host=h[1], model="smollm2-135m", bootstrap=[a.addr], extra=real)])[0]
    wait_mesh([a, b], 60)
    r = _ask_openai(lab, b, "What is the capital of France? Answer in one word.")
    trace = r.model_extra["p2pmoa_trace"]
    assert {p["peer"] for p in trace["proposals"]} == {a.peer_id, b.peer_id}
    answer = r.choices[0].message.content
    assert answer.strip() and "stand-in" not in answer.lower()
    assert answer in {p["answer"] for p in trace["proposals"]}
