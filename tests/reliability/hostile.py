"""Hostile frames and a hostile raw libp2p client, shared by the reliability tests and
``bench/reliability.py``.

:func:`hostile_frames` yields labelled byte strings that a correct node must refuse: random
bytes, mutations of a validly signed frame, wrongly typed envelopes, schema-breaking bodies
signed by the attacker, unsigned frames, stale timestamps, replays. Frames whose signature
does not verify (``forged``) come last and separately, because a node quarantines a direct
peer on the first forged signature and then refuses everything else from it unread.
"""
from __future__ import annotations

import random
import struct
from typing import Iterator

import msgpack

from p2pmoa.identity import Envelope, seal
from p2pmoa.messages import Ack, QueryAnnounce, encode_body, pack

_REQUIRED = ("query_id", "origin", "prompt", "method", "created_at", "deadline_s",
             "proposers_max")
KINDS = ("random", "mutated", "wrongly_typed", "schema", "unsigned", "stale", "replayed",
         "nan_vector")


def raw_envelope(who, kind: str, qid: str, ts: float, nonce: bytes, body: bytes, *,
                 version: int = 1, sign_as=None, pk: bytes | None = None) -> bytes:
    """An envelope with every field chosen by the caller, signed by ``sign_as or who``."""
    pk = pk if pk is not None else who.public_key
    env = Envelope(version, kind, pk, qid, float(ts), nonce, body, b"")
    sig = (sign_as or who).sign(env.signed_bytes())
    return pack([version, kind, pk, qid, float(ts), nonce, body, sig])


def _mutate(rng: random.Random, b: bytes) -> bytes:
    b = bytearray(b)
    op = rng.randrange(5)
    i = rng.randrange(len(b))
    if op == 0:
        b[i] ^= 1 << rng.randrange(8)
    elif op == 1:
        del b[i:]
    elif op == 2:
        b[i:i] = rng.randbytes(rng.randint(1, 8))
    elif op == 3:
        j = rng.randint(i, len(b))
        b = b[:i] + b[j:] + b[i:j]
    else:
        n = rng.randint(1, 8)
        b[i:i + n] = rng.randbytes(n)
    return bytes(b)


def _junk(rng: random.Random, depth: int = 0):
    c = rng.randrange(9 if depth < 2 else 6)
    if c == 0:
        return None
    if c == 1:
        return rng.random() < 0.5
    if c == 2:
        return rng.randint(-(1 << 63), (1 << 64) - 1)
    if c == 3:
        return rng.choice([float("nan"), float("inf"), -1e308, rng.random()])
    if c == 4:
        return "".join(chr(rng.randint(32, 0x2FF)) for _ in range(rng.randint(0, 12)))
    if c == 5:
        return rng.randbytes(rng.choice([0, 16, 32, 64, 65]))
    if c == 6:
        return [_junk(rng, depth + 1) for _ in range(rng.randint(0, 9))]
    return {str(rng.randrange(100)): _junk(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def _announce(origin: str, now: float, qid: str = "q1") -> QueryAnnounce:
    return QueryAnnounce(query_id=qid, origin=origin, prompt="hostile?", method="pbft",
                         created_at=now, deadline_s=5.0, proposers_max=2)


def hostile_frames(rng: random.Random, attacker, now: float, n: int,
                   kinds: tuple[str, ...] = KINDS) -> Iterator[tuple[str, bytes]]:
    """``n`` frames a node must refuse, none with a forged signature.

    ``replayed`` frames repeat (byte-identical, or re-encoded with the same nonce) a valid
    frame returned first by :func:`valid_frames`; send those first.
    """
    base = seal(attacker, Ack("q1", b"r" * 16), now=now, nonce=b"\xaa" * 16)
    body = encode_body(_announce(attacker.peer_id, now))
    for _ in range(n):
        kind = rng.choice(kinds)
        if kind == "random":
            yield kind, rng.randbytes(rng.randint(0, 300))
        elif kind == "mutated":
            m = _mutate(rng, base)
            yield kind, (m if m != base else m + b"\x00")
        elif kind == "wrongly_typed":
            items = [_junk(rng) for _ in range(rng.choice([0, 1, 7, 8, 8, 8, 9]))]
            try:
                yield kind, pack(items)
            except (ValueError, OverflowError):
                yield kind, b"\x98" + b"\xc0" * 8
        elif kind == "schema":
            d = msgpack.unpackb(body, raw=False)
            key = rng.choice(_REQUIRED)
            if rng.random() < 0.3:
                del d[key]
            else:
                d[key] = rng.choice([None, [], {}, -1, 1 << 40, float("nan"), "", b"x" * 40,
                                     "y" * 20_000])
            yield kind, raw_envelope(attacker, "announce", "q1", now, rng.randbytes(16),
                                     pack(d))
        elif kind == "unsigned":
            f = raw_envelope(attacker, "ack", "q1", now, rng.randbytes(16),
                             encode_body(Ack("q1", b"u" * 16)))
            yield kind, pack(msgpack.unpackb(f, raw=False)[:7] + [b""])  # no signature
        elif kind == "stale":
            yield kind, seal(attacker, Ack("q1", b"s" * 16),
                             now=now + rng.choice([-1, 1]) * rng.uniform(120, 1e6),
                             nonce=rng.randbytes(16))
        elif kind == "replayed":
            if rng.random() < 0.5:
                yield kind, base
            else:  # same nonce, different content, fresh signature
                yield kind, seal(attacker, Ack("q9", rng.randbytes(16)), now=now,
                                 nonce=b"\xaa" * 16)
        elif kind == "nan_vector":
            vec = struct.pack("<3f", 0.1, rng.choice([float("nan"), float("inf")]), 0.2)
            d = {"query_id": "q1", "step": 0, "vector_f32": vec, "settled": False,
                 "final": False}
            yield kind, raw_envelope(attacker, "avg", "q1", now, rng.randbytes(16), pack(d))


def valid_frames(attacker, now: float) -> list[bytes]:
    """The frames :func:`hostile_frames` replays (send them first)."""
    return [seal(attacker, Ack("q1", b"r" * 16), now=now, nonce=b"\xaa" * 16)]


def forged_frames(rng: random.Random, attacker, victim_pk: bytes, now: float,
                  n: int) -> list[bytes]:
    """Frames claiming another member's key (signed by the attacker), or with a flipped
    signature bit: every one fails signature verification."""
    out = []
    for i in range(n):
        body = encode_body(Ack("q1", rng.randbytes(16)))
        if i % 2 == 0:
            out.append(raw_envelope(attacker, "ack", "q1", now, rng.randbytes(16), body,
                                    pk=victim_pk))
        else:
            f = bytearray(raw_envelope(attacker, "ack", "q1", now, rng.randbytes(16), body))
            f[-1 - rng.randrange(64)] ^= 1 << rng.randrange(8)
            out.append(bytes(f))
    return out
