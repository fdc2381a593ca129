"""A LAN and a NAT built from Linux network namespaces, for tests, benches and by hand.

Topology (``scripts/netns-lab.sh`` builds the same thing step by step)::

       node ns  pmX-n0 .. pmX-nK         switch ns pmX-sw             router ns pmX-gw
       eth0 10.77.0.(10+i)/24  --veth--  br0 (a bridge, no address) --veth-- eth0 10.77.0.1
                                                                             eth1 10.78.0.1
       NAT'd ns pmX-h0 .. : eth0 10.78.0.(10+i)/24 ---------veth-------  br1 (in pmX-gw)

* Every namespace has only ``lo`` and its veth: nothing is connected to the machine's own
  network, so only addresses of this lab (and loopback) can ever be reached.
* The router masquerades 10.78.0.0/24 behind 10.77.0.1 (nftables ``masquerade``) and drops
  connections opened from the LAN towards the inside: a home NAT.
* Node namespaces have a default route via the router (nothing beyond it), so that zeroconf
  and "which source address" lookups work as on a real LAN.
* Faults (nemesis): per-namespace nftables table ``pmfault`` (partitions: drop from/to a set of
  addresses; loss: ``numgen random mod 100 < P drop``), link down/up.

Requires root, ``ip`` (iproute2) and ``nft`` (nftables). Names carry a random lab id so that
concurrent labs do not collide; :meth:`Lab.close` removes every namespace and (with them) every
veth, bridge and nft table, also after a failure.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from node.procs import NodeProcess

LAN_PREFIX = "10.77.0"
NAT_PREFIX = "10.78.0"
GW_LAN = f"{LAN_PREFIX}.1"
GW_INSIDE = f"{NAT_PREFIX}.1"
CLONE_NEWNET = 0x40000000


class LabError(RuntimeError):
    """A lab command failed (message has the command and its stderr)."""


def lab_available() -> str | None:
    """None if this machine can build a lab, else the reason (not root, tools missing)."""
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            return f"needs `{tool}` (Debian packages iproute2, nftables; `make setup-net`)"
    return None


def sh(*argv: str, input: str | None = None, check: bool = True) -> str:
    r = subprocess.run(list(argv), input=input, capture_output=True, text=True, timeout=30)
    if check and r.returncode != 0:
        raise LabError(f"{' '.join(argv)}: {r.stderr.strip() or r.stdout.strip()}")
    return r.stdout


_libc = None


@contextlib.contextmanager
def in_netns(name: str):
    """Run the block's NEW sockets in namespace ``name`` (this thread only), then come back.

    Network namespaces are per thread on Linux; a socket keeps the namespace it was created
    in, so HTTP clients made inside the block talk to the lab.
    """
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    own = os.open(f"/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/var/run/netns/{name}", os.O_RDONLY)
    try:
        if _libc.setns(target, CLONE_NEWNET) != 0:
            raise LabError(f"setns({name}): errno {ctypes.get_errno()}")
        try:
            yield
        finally:
            if _libc.setns(own, CLONE_NEWNET) != 0:  # pragma: no cover - would be fatal
                raise LabError(f"cannot return from namespace {name}")
    finally:
        os.close(own)
        os.close(target)


@dataclass
class Host:
    """One namespace with one address (a device)."""

    ns: str
    ip: str
    behind_nat: bool = False


@dataclass
class Lab:
    """Namespaces on a bridged LAN plus a NAT router. Use as a context manager."""

    lan_hosts: int = 3
    nat_hosts: int = 0
    lab_id: str = field(default_factory=lambda: secrets.token_hex(2))
    hosts: list[Host] = field(default_factory=list)
    client: Host | None = None
    _made: list[str] = field(default_factory=list)

    @property
    def sw(self) -> str:
        return f"pm{self.lab_id}-sw"

    @property
    def gw(self) -> str:
        return f"pm{self.lab_id}-gw"

    def __enter__(self) -> "Lab":
        try:
            self.build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _netns(self, name: str) -> None:
        sh("ip", "netns", "add", name)
        self._made.append(name)
        sh("ip", "-n", name, "link", "set", "lo", "up")

    def build(self) -> None:
        why = lab_available()
        if why:
            raise LabError(why)
        self._netns(self.sw)
        sh("ip", "-n", self.sw, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", self.sw, "link", "set", "br0", "up")
        # router: LAN leg on br0, inside leg is bridge br1 in the router namespace itself
        self._netns(self.gw)
        self._plug(self.gw, "eth0", self.sw, "br0", f"{GW_LAN}/24", port="gw")
        sh("ip", "-n", self.gw, "link", "add", "br1", "type", "bridge")
        sh("ip", "-n", self.gw, "addr", "add", f"{GW_INSIDE}/24", "dev", "br1")
        sh("ip", "-n", self.gw, "link", "set", "br1", "up")
        sh("ip", "netns", "exec", self.gw, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        sh("ip", "netns", "exec", self.gw, "nft", "-f", "-", input=f"""
table ip pmnat {{
  chain masq {{ type nat hook postrouting priority 100; oifname "eth0" ip saddr {NAT_PREFIX}.0/24 masquerade; }}
  chain filt {{ type filter hook forward priority 0; policy accept;
    iifname "eth0" oifname "br1" ct state established,related accept;
    iifname "eth0" oifname "br1" drop; }}
}}
""")
        for i in range(self.lan_hosts):
            self.hosts.append(self._device(f"pm{self.lab_id}-n{i}", f"{LAN_PREFIX}.{10 + i}",
                                           self.sw, "br0", GW_LAN, port=f"p{i}"))
        for i in range(self.nat_hosts):
            self.hosts.append(self._device(f"pm{self.lab_id}-h{i}", f"{NAT_PREFIX}.{10 + i}",
                                           self.gw, "br1", GW_INSIDE, port=f"q{i}", nat=True))
        self.client = self._device(f"pm{self.lab_id}-c", f"{LAN_PREFIX}.9", self.sw, "br0",
                                   GW_LAN, port="pc")

    def _plug(self, ns: str, ifname: str, bridge_ns: str, bridge: str, cidr: str, port: str) -> None:
        peer = f"v{self.lab_id}{port}"[:15]
        sh("ip", "-n", bridge_ns, "link", "add", peer, "type", "veth", "peer", "name", ifname,
           "netns", ns)
        sh("ip", "-n", bridge_ns, "link", "set", peer, "master", bridge)
        sh("ip", "-n", bridge_ns, "link", "set", peer, "up")
        sh("ip", "-n", ns, "addr", "add", cidr, "dev", ifname)
        sh("ip", "-n", ns, "link", "set", ifname, "up")

    def _device(self, ns: str, ip: str, bridge_ns: str, bridge: str, gw: str, port: str,
                nat: bool = False) -> Host:
        self._netns(ns)
        self._plug(ns, "eth0", bridge_ns, bridge, f"{ip}/24", port)
        sh("ip", "-n", ns, "route", "add", "default", "via", gw)
        return Host(ns, ip, behind_nat=nat)

    def close(self) -> None:
        """Delete every namespace of this lab (veths, bridges and nft tables go with them)."""
        errors = []
        for name in reversed(self._made):
            r = subprocess.run(["ip", "netns", "del", name], capture_output=True, text=True)
            if r.returncode != 0 and "No such file" not in r.stderr:
                errors.append(f"{name}: {r.stderr.strip()}")
        self._made.clear()
        if errors:
            raise LabError("lab teardown: " + "; ".join(errors))

    # -- faults (nemesis) --------------------------------------------------------------------

    def set_faults(self, host: Host, drop_from: list[str] = (), loss_pct: int = 0) -> None:
        """Replace ``host``'s fault table: drop traffic to/from ``drop_from``, random loss."""
        rules_in, rules_out = [], []
        if drop_from:
            s = ", ".join(drop_from)
            rules_in.append(f"ip saddr {{ {s} }} drop;")
            rules_out.append(f"ip daddr {{ {s} }} drop;")
        if loss_pct:
            rules_in.append(f"iifname \"eth0\" numgen random mod 100 < {int(loss_pct)} drop;")
            rules_out.append(f"oifname \"eth0\" numgen random mod 100 < {int(loss_pct)} drop;")
        sh("ip", "netns", "exec", host.ns, "nft", "delete", "table", "inet", "pmfault", check=False)
        if rules_in or rules_out:
            sh("ip", "netns", "exec", host.ns, "nft", "-f", "-", input=(
                "table inet pmfault {\n"
                f"  chain faultin {{ type filter hook input priority 0; {' '.join(rules_in)} }}\n"
                f"  chain faultout {{ type filter hook output priority 0; {' '.join(rules_out)} }}\n"
                "}\n"))

    def link(self, host: Host, up: bool) -> None:
        sh("ip", "-n", host.ns, "link", "set", "eth0", "up" if up else "down")


@dataclass
class NetnsNode(NodeProcess):
    """A :class:`NodeProcess` running inside a lab namespace, listening on its LAN address."""

    host: Host | None = None
    listen_ip: str = "0.0.0.0"
    p2p_port: int = 7700
    api_port: int = 8700

    @property
    def addr(self) -> str:
        return f"/ip4/{self.host.ip}/tcp/{self.p2p_port}/p2p/{self.peer_id}"

    @property
    def api(self) -> str:
        return f"{self.host.ip}:{self.api_port}"

    def argv(self) -> list[str]:
        a = super().argv()
        a[a.index("--listen") + 1] = f"/ip4/{self.listen_ip}/tcp/{self.p2p_port}"
        return ["ip", "netns", "exec", self.host.ns] + a

    def get(self, path: str, timeout_s: float = 5.0):
        with in_netns(self.host.ns):
            return super().get(path, timeout_s)

    def post(self, path: str, body: dict, timeout_s: float = 300.0):
        with in_netns(self.host.ns):
            return super().post(path, body, timeout_s)

    def log_text(self) -> str:
        try:
            return Path(self.log_path).read_text(errors="replace")
        except OSError:
            return ""
