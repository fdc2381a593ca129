"""Fixtures for tests on real separate hosts: each daemon in its own Linux network namespace.

``lab_factory(lan=3, nat=0)`` builds a :class:`node.netlab.Lab` (bridged LAN 10.77.0.0/24, a
NAT router masquerading 10.78.0.0/24, a client namespace) and ``nodes_factory`` starts
daemons in it; everything (processes, namespaces, bridges, nft tables) is torn down after the
test, also on failure. These tests need root, iproute2 and nftables: the CI machines have
them (``make setup-net`` installs the packages), so they are part of the suite. Elsewhere
they are skipped with the reason.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from node.netlab import Lab, NetnsNode, lab_available


@pytest.fixture
def lab_factory():
    why = lab_available()
    if why and os.geteuid() != 0:
        # Namespaces need root. These machines and CI run as root, where the lab must work:
        # there a missing `ip`/`nft` is a failure (make test installs them), not a skip.
        pytest.skip(f"namespace lab unavailable: {why}")
    assert why is None, f"running as root but the namespace lab cannot be built: {why}"
    labs: list[Lab] = []

    def make(lan: int = 3, nat: int = 0) -> Lab:
        lab = Lab(lan_hosts=lan, nat_hosts=nat)
        labs.append(lab)
        lab.__enter__()
        return lab
    yield make
    for lab in labs:
        lab.close()


@pytest.fixture
def nodes_factory():
    base = Path(tempfile.mkdtemp(prefix="p2pmoa-netns-"))
    made: list[NetnsNode] = []

    def make(lab: Lab, specs: list[dict]) -> list[NetnsNode]:
        """``specs``: one dict per node: host (a lab Host), plus NetnsNode fields."""
        out = []
        for spec in specs:
            spec = dict(spec)
            name = spec.pop("name", f"node{len(made)}")
            n = NetnsNode(name, base / name, **spec)
            made.append(n)
            out.append(n)
        for n in out:
            n.start()
        for n in out:
            n.wait_ready(90)
        return out
    try:
        yield make
    finally:
        for n in made:
            n.stop()
        shutil.rmtree(base, ignore_errors=True)


def in_ns(lab_host, *argv: str, timeout_s: float = 60) -> subprocess.CompletedProcess:
    """Run a command inside a lab namespace (e.g. the `p2pmoa` CLI on the client device)."""
    return subprocess.run(["ip", "netns", "exec", lab_host.ns, *argv], capture_output=True,
                          text=True, timeout=timeout_s)
