"""One configuration path (issue 10): the daemon's NodeConfig and the simulator's MeshSpec
become a ProtocolConfig through p2pmoa.settings.protocol_config, with the same defaults and
the same proposer sampling (select_ppm)."""
from __future__ import annotations

import dataclasses

import pytest

from node.config import ConfigError, NodeConfig, load_config, protocol_settings
from p2pmoa.settings import PPM, ProtocolSettings, protocol_config, select_ppm_for


def test_the_node_defaults_are_the_protocol_settings_defaults():
    assert protocol_settings(NodeConfig()) == ProtocolSettings()


def test_node_settings_reach_the_protocol_config():
    cfg = load_config(None, {"role": "a poet", "consensus": "vote", "deadline_s": 7,
                             "round_timeout_s": 3, "proposers_max": 4, "max_tokens": 16,
                             "proposers_oversample": 1.5, "fault": "silent"})
    pc = protocol_config(protocol_settings(cfg, frozenset({"a", "b"})), model_id="m", space_id="s",
                         mesh_size=21)
    assert (pc.role, pc.method, pc.collect_timeout_s, pc.round_timeout_s, pc.proposers_max,
            pc.fault, pc.roster, pc.model_id, pc.space_id) == \
        ("a poet", "vote", 7.0, 3.0, 4, "silent", frozenset({"a", "b"}), "m", "s")
    assert pc.gen_params.max_tokens == 16
    assert pc.select_ppm == int(PPM * 4 * 1.5 / 20)


@pytest.mark.parametrize("mesh_size, expected", [
    (None, PPM), (1, PPM), (2, PPM), (17, PPM), (18, int(PPM * 16 / 17)), (101, 160_000),
    (10**9, 1)])
def test_select_ppm_aims_at_proposers_times_oversample(mesh_size, expected):
    assert select_ppm_for(8, 2.0, mesh_size) == expected


def test_oversample_below_one_is_a_config_error():
    with pytest.raises(ConfigError, match="proposers_oversample"):
        load_config(None, {"proposers_oversample": 0.5})
    with pytest.raises(ValueError):
        ProtocolSettings(proposers_oversample=0.9)


def test_the_daemon_builds_its_config_through_the_one_path_and_follows_the_mesh_size(tmp_path):
    from node.daemon import Daemon, load_embedder, load_generator
    from node.transport import MemoryNetwork, TransportLimits
    from p2pmoa.effects import PeerId
    from p2pmoa.identity import Ed25519Identity

    cfg = load_config(None, {"data_dir": str(tmp_path), "model": "stand-in:m0"})
    ident = Ed25519Identity.load_or_create(cfg.identity_path)
    from node.transport import MemoryTransport  # noqa: PLC0415
    t = MemoryTransport(MemoryNetwork(), PeerId(ident.peer_id), TransportLimits())
    d = Daemon(cfg, t, load_generator(cfg), load_embedder(cfg), ident)
    try:
        expect = protocol_config(protocol_settings(cfg), model_id=d.local_model,
                                 space_id=d.embedder.space_id, strict=False)
        assert d.machine.cfg == expect and d.machine.cfg.select_ppm == PPM
        d._resize_mesh(5)  # a small mesh: everyone answers, nothing changes
        assert d.machine.cfg == expect
        d._resize_mesh(40)  # 41 nodes: about 16 of the other 40 are asked
        assert d.machine.cfg == dataclasses.replace(expect, select_ppm=select_ppm_for(8, 2.0, 41))
        assert d.machine.cfg.select_ppm == 400_000
    finally:
        d.store.close()
        d.memory_store.close()
