"""How fast the mesh's own peer exchange connects a LAN mesh that starts as a chain.

N daemons (stand-in model), each in its own network namespace; node i is given only node
i-1 as ``--bootstrap`` (a chain, the worst case for learning peers). Measured: seconds from
all APIs up until every node is connected to every other (N <= connections_target + 1), and
the peer-exchange traffic it took. This is the figure behind keeping peer exchange rather
than adding Kademlia/rendezvous for meshes of 3-20 devices (docs/node.md, "Discovery").

    python bench/discovery.py [--nodes 8]
Prints one JSON object as the last line. Needs root, iproute2, nftables.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from node.netlab import Lab, NetnsNode  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=8)
    a = ap.parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="p2pmoa-disc-"))
    nodes: list[NetnsNode] = []
    with Lab(lan_hosts=a.nodes) as lab:
        try:
            for i, h in enumerate(lab.hosts):
                nodes.append(NetnsNode(f"n{i}", base / f"n{i}", host=h,
                                       bootstrap=[nodes[-1].addr] if nodes else []))
            for n in nodes:
                n.start()
            for n in nodes:
                n.wait_ready(120)
            t0 = time.monotonic()
            want = a.nodes - 1
            full = None
            while time.monotonic() - t0 < 120:
                peers = [(n.status() or {}).get("peers", 0) for n in nodes]
                if all(p >= want for p in peers):
                    full = time.monotonic() - t0
                    break
                time.sleep(0.2)
            sts = [n.status() or {} for n in nodes]
            px = sum(s.get("transport", {}).get("requests_sent", 0) for s in sts)
        finally:
            for n in nodes:
                n.stop()
    print(json.dumps({"nodes": a.nodes, "topology": "chain", "full_mesh_s": None if full is None else round(full, 2),
                      "peers_min": min(peers), "requests_sent_total": px}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
