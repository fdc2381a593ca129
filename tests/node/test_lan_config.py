"""The LAN pieces that need no network: network key files, addresses, the sample config."""
from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import pytest

from node.config import NodeConfig, load_config
from node.host import (NetworkKeyError, bootstrap_line, expand_addr, key_fingerprint,
                       read_network_key, write_network_key)

SAMPLE = Path(__file__).resolve().parents[2] / "docs" / "node.example.toml"


def test_network_key_round_trip_is_0600_swarm_key_and_refuses_overwrite(tmp_path):
    p = tmp_path / "k"
    fp = write_network_key(p)
    assert os.stat(p).st_mode & 0o777 == 0o600
    text = p.read_text()
    assert text.startswith("/key/swarm/psk/1.0.0/\n/base16/\n")
    key = read_network_key(p)
    assert re.fullmatch(r"[0-9a-f]{64}", key) and key_fingerprint(key) == fp
    with pytest.raises(FileExistsError):
        write_network_key(p)
    assert write_network_key(p, force=True) != fp  # a new random key


@pytest.mark.parametrize("text", ["", "/key/swarm/psk/1.0.0/\n/base16/\nabc\n", "zz" * 32])
def test_bad_network_key_is_a_clear_error(tmp_path, text):
    p = tmp_path / "k"
    p.write_text(text)
    with pytest.raises(NetworkKeyError, match="network key"):
        read_network_key(p)
    with pytest.raises(NetworkKeyError, match="cannot read"):
        read_network_key(tmp_path / "missing")


def test_wildcard_addresses_expand_and_the_bootstrap_line_prefers_the_lan():
    ips = ["192.168.1.5", "127.0.0.1"]
    assert expand_addr("/ip4/0.0.0.0/tcp/7700", ips) == ["/ip4/192.168.1.5/tcp/7700", "/ip4/127.0.0.1/tcp/7700"]
    assert expand_addr("/ip4/10.0.0.2/tcp/1", ips) == ["/ip4/10.0.0.2/tcp/1"]
    addrs = ["/ip4/127.0.0.1/tcp/7700/p2p/X", "/ip4/192.168.1.5/tcp/7700/p2p/X"]
    assert bootstrap_line(addrs) == "p2pmoa node run --bootstrap /ip4/192.168.1.5/tcp/7700/p2p/X"
    assert bootstrap_line(addrs[:1]) == "p2pmoa node run --bootstrap /ip4/127.0.0.1/tcp/7700/p2p/X"


def test_sample_node_toml_loads_and_documents_every_key():
    cfg = load_config(SAMPLE)
    assert cfg.listen == ("/ip4/0.0.0.0/tcp/7700",)
    text = SAMPLE.read_text()
    for f in dataclasses.fields(NodeConfig):
        assert re.search(rf"^#? ?{f.name} = ", text, re.M), f"{f.name} missing from {SAMPLE.name}"


def test_mdns_default_follows_the_network_key():
    assert NodeConfig().mdns_on is False
    assert NodeConfig(network_key="/k").mdns_on is True
    assert NodeConfig(network_key="/k", mdns=False).mdns_on is False
    assert load_config(None, {"mdns": True}).mdns_on is True
