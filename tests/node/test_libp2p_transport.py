"""libp2p-only properties of the transport: Noise only, raw frame abuse, explicit close."""
from __future__ import annotations

import contextlib
import struct
import tempfile
from pathlib import Path

import multiaddr
import pytest
import trio

from node.transport import (
    RPC_PROTOCOL,
    TransportLimits,
    load_or_create_identity,
    open_libp2p_transport,
    read_frame,
)
from tests.node.conftest import wait_until

pytestmark = pytest.mark.real_net


def _key(tmp: Path, name: str):
    return load_or_create_identity(str(tmp / f"{name}.key"))


def test_identity_file_is_private_and_stable(tmp_path):
    kp1 = _key(tmp_path, "id")
    assert (tmp_path / "id.key").stat().st_mode & 0o777 == 0o600
    kp2 = _key(tmp_path, "id")
    assert kp1.public_key.serialize() == kp2.public_key.serialize()


def test_plaintext_peer_cannot_connect(tmp_path):
    from libp2p import new_host
    from libp2p.peer.peerinfo import info_from_p2p_addr
    from libp2p.security.insecure.transport import PLAINTEXT_PROTOCOL_ID, InsecureTransport

    async def main():
        async with open_libp2p_transport(_key(tmp_path, "a")) as a:
            kp = _key(tmp_path, "plain")
            la = [multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]
            plain = new_host(key_pair=kp, listen_addrs=la,
                             sec_opt={PLAINTEXT_PROTOCOL_ID: InsecureTransport(kp)})
            async with plain.run(la):
                with pytest.raises(Exception):
                    with trio.fail_after(15):
                        await plain.connect(info_from_p2p_addr(multiaddr.Multiaddr(a.listen_addrs()[0])))
                await plain.close()
            assert a.peers() == []
    trio.run(main)


def test_raw_stream_abuse_is_rejected_counted_and_node_keeps_serving(tmp_path):
    """Huge length prefix, truncated frame, garbage: each rejected before decoding."""
    async def main():
        limits = TransportLimits(frame_bytes_max=4096, maintain_interval_s=0.1)
        async with open_libp2p_transport(_key(tmp_path, "srv"), limits=limits) as srv, \
                open_libp2p_transport(_key(tmp_path, "cli"), bootstrap=srv.listen_addrs()) as cli:
            calls = []

            async def handler(sender, payload):
                calls.append(payload)
                return b"pong"
            srv.set_request_handler(handler)
            await wait_until(lambda: srv.local_peer in cli.peers(), what="connection")
            from libp2p.peer.id import ID
            pid = ID.from_base58(srv.local_peer)
            # 1. a length prefix claiming 100 MB: refused without reading the body
            s = await cli.host.new_stream(pid, [RPC_PROTOCOL])
            await s.write(struct.pack(">I", 100_000_000) + b"x" * 10)
            reply = await read_frame(s, 4096)
            assert reply[0] == 1 and b"oversized" in reply
            # 2. a truncated frame: the stream is closed half-way
            s = await cli.host.new_stream(pid, [RPC_PROTOCOL])
            await s.write(struct.pack(">I", 100) + b"short")
            await s.close()
            await wait_until(lambda: srv.statistics().rejected_malformed == 1, what="malformed count")
            # 3. still serving
            assert await cli.request(srv.local_peer, b"ping") == b"pong"
            assert calls == [b"ping"]
            st = srv.statistics()
            assert (st.rejected_oversized, st.rejected_malformed) == (1, 1)
    trio.run(main)
