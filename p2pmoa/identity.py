"""Node identity (Ed25519), signed envelopes, and the replay window.

What is signed: every protocol frame is an *envelope*, the msgpack array
``[version, kind, sender_pk, query_id, timestamp, nonce, body, signature]``. The signature
covers ``DOMAIN || msgpack([version, kind, sender_pk, query_id, timestamp, nonce, body])`` where
``body`` is the msgpack-encoded message (see :mod:`p2pmoa.messages`). So the sender, the query,
the time, the nonce and the entire message are bound together; changing any byte breaks it.

Peer ids: :func:`peer_id_from_public_key` derives the *libp2p* peer id string of an Ed25519
public key (base58btc of the identity multihash of the protobuf-encoded public key, the
familiar ``12D3KooW...``), so a node that uses the same key for its libp2p host has the same
id at both layers. Envelopes carry the raw 32-byte key; the id is a pure function of it.

Replay rule (:class:`ReplayWindow`): a frame is accepted only if its timestamp lies within
``now ± skew_s`` and its ``(sender key, nonce)`` pair has not been accepted before. Accepted
pairs are remembered until they age out of the window; memory is bounded by
``entries_max``; when full, the oldest pair is evicted and its *sender's* floor rises to its
timestamp, so a frame from that sender at or below the floor is rejected as stale (never
silently accepted), while a flood from one key cannot make other senders' frames stale.

Simulator stand-in: :class:`InsecureSimSigner` / :class:`InsecureSimVerifier` replace
Ed25519 by a keyed BLAKE2b MAC held in a shared registry. It verifies ~25x faster and is NOT secure
(whoever holds the registry can forge); it exists only so 1,000 simulated nodes can run.
"""
from __future__ import annotations

import hashlib
import heapq
import logging
import os
import stat
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from p2pmoa.effects import PeerId, QueryId
from p2pmoa.messages import (
    DEFAULT_LIMITS,
    MESSAGE_TYPES,
    SCHEMA_VERSION,
    TS_MAX,
    BadSignature,
    Duplicate,
    FrameError,
    Limits,
    MalformedFrame,
    Message,
    OversizedFrame,
    Replayed,
    StaleFrame,
    UnknownKind,
    UnsupportedVersion,
    decode_body,
    encode_body,
    pack,
    unpack_bounded,
)

log = logging.getLogger(__name__)

DOMAIN = b"p2pmoa/envelope/v1\x00"
"""Signature domain separator: a p2pmoa signature can never be valid in another protocol."""

PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64
NONCE_BYTES = 16


class IdentityError(Exception):
    """Key file problems (missing, wrong format, unsafe permissions)."""


# --------------------------------------------------------------------------- peer ids

_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_ED25519_PB_PREFIX = b"\x08\x01\x12\x20"  # protobuf PublicKey{Type: Ed25519, Data: 32 bytes}
_IDENTITY_MH_PREFIX = b"\x00\x24"  # multihash identity code, length 36


def _b58encode(b: bytes) -> str:
    n = int.from_bytes(b, "big")
    out = []
    while n:
        n, r = divmod(n, 58)
        out.append(_B58[r])
    pad = len(b) - len(b.lstrip(b"\x00"))
    return "1" * pad + "".join(reversed(out))


def _b58decode(s: str) -> bytes:
    n = 0
    for ch in s:
        i = _B58.find(ch)
        if i < 0:
            raise ValueError("not base58")
        n = n * 58 + i
    pad = len(s) - len(s.lstrip("1"))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    return b"\x00" * pad + body


@lru_cache(maxsize=65536)
def peer_id_from_public_key(public_key: bytes) -> PeerId:
    """The libp2p peer id string (``12D3KooW...``) of a raw 32-byte Ed25519 public key."""
    if len(public_key) != PUBLIC_KEY_BYTES:
        raise ValueError("public key must be 32 bytes")
    return PeerId(_b58encode(_IDENTITY_MH_PREFIX + _ED25519_PB_PREFIX + public_key))


def public_key_from_peer_id(peer_id: str) -> bytes:
    """Inverse of :func:`peer_id_from_public_key`; raises ``ValueError`` for other ids."""
    raw = _b58decode(peer_id)
    prefix = _IDENTITY_MH_PREFIX + _ED25519_PB_PREFIX
    if len(raw) != len(prefix) + PUBLIC_KEY_BYTES or not raw.startswith(prefix):
        raise ValueError("not an Ed25519 libp2p peer id")
    return raw[len(prefix):]


# --------------------------------------------------------------------------- signers


class Signer(Protocol):
    """Something that signs envelopes for one identity."""

    @property
    def public_key(self) -> bytes: ...

    @property
    def peer_id(self) -> PeerId: ...

    def sign(self, data: bytes) -> bytes: ...


class Verifier(Protocol):
    """Checks a signature; returns False (never raises) for anything invalid."""

    def verify(self, public_key: bytes, signature: bytes, data: bytes) -> bool: ...


class Ed25519Identity:
    """An Ed25519 key pair: the node's identity.

    Key file format: the libp2p protobuf ``PrivateKey`` encoding as go-libp2p marshals it
    (``08 01 12 40`` + 32-byte seed + 32-byte public key), written with mode 0600.
    """

    _FILE_PREFIX = b"\x08\x01\x12\x40"

    def __init__(self, private_key: Ed25519PrivateKey):
        self._sk = private_key
        self._pk = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self._peer_id = peer_id_from_public_key(self._pk)

    @classmethod
    def generate(cls) -> "Ed25519Identity":
        """A fresh key from the operating system's CSPRNG."""
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> "Ed25519Identity":
        """Deterministic key from a 32-byte seed (tests, or a key exported from libp2p)."""
        if len(seed) != 32:
            raise IdentityError("Ed25519 seed must be 32 bytes")
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    def seed(self) -> bytes:
        """The 32-byte private seed (to build the libp2p host key from the same secret)."""
        return self._sk.private_bytes(serialization.Encoding.Raw,
                                      serialization.PrivateFormat.Raw,
                                      serialization.NoEncryption())

    @property
    def public_key(self) -> bytes:
        return self._pk

    @property
    def peer_id(self) -> PeerId:
        return self._peer_id

    def sign(self, data: bytes) -> bytes:
        return self._sk.sign(data)

    def save(self, path: str | os.PathLike) -> None:
        """Write the key file atomically with permissions 0600 (created so from the start)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, self._FILE_PREFIX + self.seed() + self._pk)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Ed25519Identity":
        """Read a key file; refuses files readable by group/others or of the wrong format."""
        path = Path(path)
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise IdentityError(f"{path}: permissions {oct(mode)} too open, expected 0600")
        raw = path.read_bytes()
        if len(raw) != 68 or not raw.startswith(cls._FILE_PREFIX):
            raise IdentityError(f"{path}: not an Ed25519 key file")
        ident = cls.from_seed(raw[4:36])
        if ident.public_key != raw[36:]:
            raise IdentityError(f"{path}: public key does not match the seed")
        return ident

    @classmethod
    def load_or_create(cls, path: str | os.PathLike) -> "Ed25519Identity":
        """Load the key at ``path``, creating it on first start (so the peer id is stable)."""
        if Path(path).exists():
            return cls.load(path)
        ident = cls.generate()
        ident.save(path)
        log.info("created identity %s at %s", ident.peer_id, path)
        return ident


class Ed25519Verifier:
    """Ed25519 signature check with a bounded cache of parsed public keys."""

    def __init__(self, cache_entries_max: int = 4096):
        self._keys: OrderedDict[bytes, Ed25519PublicKey] = OrderedDict()
        self._max = cache_entries_max

    def verify(self, public_key: bytes, signature: bytes, data: bytes) -> bool:
        key = self._keys.get(public_key)
        if key is None:
            try:
                key = Ed25519PublicKey.from_public_bytes(public_key)
            except Exception:
                return False
            self._keys[public_key] = key
            if len(self._keys) > self._max:
                self._keys.popitem(last=False)
        try:
            key.verify(signature, data)
            return True
        except InvalidSignature:
            return False
        except Exception:
            return False


class InsecureSimRegistry:
    """Shared secret registry for :class:`InsecureSimSigner` (simulator only, NOT secure)."""

    def __init__(self):
        self.secrets: dict[bytes, bytes] = {}


class InsecureSimSigner:
    """FAST, INSECURE stand-in signer for the simulator: keyed BLAKE2b over a shared registry.

    The "public key" is a hash of a secret; signatures are MACs under that secret; the verifier
    looks the secret up in the registry. Forging needs the registry, which simulated Byzantine
    behaviours do not get. Never use outside simulations.
    """

    def __init__(self, secret: bytes, registry: InsecureSimRegistry):
        if len(secret) != 32:
            raise IdentityError("secret must be 32 bytes")
        self._secret = secret
        self._pk = hashlib.blake2b(b"insecure-sim-pk" + secret, digest_size=32).digest()
        registry.secrets[self._pk] = secret
        self._peer_id = peer_id_from_public_key(self._pk)

    @classmethod
    def create(cls, rng, registry: InsecureSimRegistry) -> "InsecureSimSigner":
        """A signer whose secret is drawn from ``rng`` (a seeded ``random.Random``)."""
        return cls(rng.getrandbits(256).to_bytes(32, "little"), registry)

    @property
    def public_key(self) -> bytes:
        return self._pk

    @property
    def peer_id(self) -> PeerId:
        return self._peer_id

    def sign(self, data: bytes) -> bytes:
        return hashlib.blake2b(data, key=self._secret, digest_size=64).digest()


class InsecureSimVerifier:
    """Verifier matching :class:`InsecureSimSigner` (simulator only, NOT secure)."""

    def __init__(self, registry: InsecureSimRegistry):
        self._registry = registry

    def verify(self, public_key: bytes, signature: bytes, data: bytes) -> bool:
        secret = self._registry.secrets.get(public_key)
        if secret is None:
            return False
        return hashlib.blake2b(data, key=secret, digest_size=64).digest() == signature


# --------------------------------------------------------------------------- envelopes


@dataclass(frozen=True)
class Envelope:
    """A decoded (not necessarily verified) frame; see the module docstring for the layout."""

    version: int
    kind: str
    sender_pk: bytes
    query_id: QueryId
    timestamp: float
    nonce: bytes
    body: bytes
    signature: bytes

    @property
    def sender(self) -> PeerId:
        return peer_id_from_public_key(self.sender_pk)

    def signed_bytes(self) -> bytes:
        return DOMAIN + pack([self.version, self.kind, self.sender_pk, self.query_id,
                              self.timestamp, self.nonce, self.body])


def seal(signer: Signer, msg: Message, *, now: float, nonce: bytes) -> bytes:
    """Encode and sign ``msg`` into wire bytes.

    Args:
        signer: the sender's identity.
        msg: the message; its ``query_id`` goes into the envelope too.
        now: the sender's clock, seconds (virtual in the simulator, Unix time in the daemon).
        nonce: 16 fresh random bytes (from the caller's ``random.Random``/``SystemRandom``).
    """
    if len(nonce) != NONCE_BYTES:
        raise ValueError("nonce must be 16 bytes")
    body = encode_body(msg)
    env = Envelope(SCHEMA_VERSION, msg.kind, signer.public_key, msg.query_id, float(now),
                   nonce, body, b"")
    sig = signer.sign(env.signed_bytes())
    return pack([env.version, env.kind, env.sender_pk, env.query_id, env.timestamp, env.nonce,
                 env.body, sig])


def decode_envelope(data: bytes, limits: Limits = DEFAULT_LIMITS) -> Envelope:
    """Parse the outer envelope (bounded), without verifying the signature.

    Raises:
        OversizedFrame, MalformedFrame, UnsupportedVersion, UnknownKind.
    """
    obj = unpack_bounded(data, limits)
    if not isinstance(obj, list) or len(obj) != 8:
        raise MalformedFrame("envelope must be an array of 8")
    version, kind, pk, qid, ts, nonce, body, sig = obj
    if isinstance(version, bool) or not isinstance(version, int):
        raise MalformedFrame("envelope version not an int")
    if version != SCHEMA_VERSION:
        raise UnsupportedVersion(f"schema version {version}, expected {SCHEMA_VERSION}")
    if not isinstance(kind, str) or kind not in MESSAGE_TYPES:
        raise UnknownKind(f"unknown kind {kind!r}"[:100])
    if not isinstance(pk, bytes) or len(pk) != PUBLIC_KEY_BYTES:
        raise MalformedFrame("sender key must be 32 bytes")
    if not isinstance(qid, str) or not qid or len(qid.encode("utf-8", "surrogatepass")) > limits.id_bytes_max:
        raise MalformedFrame("bad query id")
    if isinstance(ts, bool) or not isinstance(ts, (int, float)) or not (0.0 <= ts <= TS_MAX):
        raise MalformedFrame("bad timestamp")
    if not isinstance(nonce, bytes) or len(nonce) != NONCE_BYTES:
        raise MalformedFrame("nonce must be 16 bytes")
    if not isinstance(body, bytes):
        raise MalformedFrame("body must be bytes")
    if not isinstance(sig, bytes) or len(sig) != SIGNATURE_BYTES:
        raise MalformedFrame("signature must be 64 bytes")
    return Envelope(version, kind, pk, QueryId(qid), float(ts), nonce, body, sig)


class ReplayWindow:
    """Remembers accepted (sender key, nonce) pairs for ``skew_s`` seconds, bounded memory.

    Args:
        skew_s: accepted clock difference in seconds (default 30 s): timestamps outside
            ``now ± skew_s`` are stale; pairs older than ``now - skew_s`` are forgotten.
        entries_max: maximum remembered pairs (default 65,536, about 10 MB). When exceeded the
            oldest pair is evicted and its sender's floor rises to its timestamp.
    """

    def __init__(self, skew_s: float = 30.0, entries_max: int = 65536):
        assert skew_s > 0 and entries_max > 0, "replay window needs positive skew and size"
        self.skew_s = skew_s
        self.entries_max = entries_max
        self._seen: dict[tuple[bytes, bytes], float] = {}
        self._heap: list[tuple[float, tuple[bytes, bytes]]] = []
        # per-sender floors: a flood from one key evicts old pairs and raises only the floors
        # of the evicted pairs' senders to those (old) timestamps, never a global floor
        self._floors: dict[bytes, float] = {}

    def floor(self, sender_pk: bytes) -> float:
        """Timestamps at or below this are refused for ``sender_pk`` (-inf if none)."""
        return self._floors.get(sender_pk, float("-inf"))

    def __len__(self) -> int:
        return len(self._seen)

    def _expire(self, now: float) -> None:
        limit = now - self.skew_s
        while self._heap and self._heap[0][0] < limit:
            _, key = heapq.heappop(self._heap)
            self._seen.pop(key, None)

    def check(self, sender_pk: bytes, nonce: bytes, timestamp: float, now: float) -> None:
        """Raise :class:`StaleFrame` or :class:`Replayed` if the frame must be refused."""
        if timestamp > now + self.skew_s:
            raise StaleFrame(f"timestamp {timestamp:.3f} ahead of now {now:.3f} + skew")
        if timestamp < now - self.skew_s:
            raise StaleFrame(f"timestamp {timestamp:.3f} older than now {now:.3f} - skew")
        if timestamp <= self._floors.get(sender_pk, float("-inf")):
            raise StaleFrame(f"timestamp {timestamp:.3f} at or below the sender's window floor")
        if (sender_pk, nonce) in self._seen:
            raise Replayed("nonce already seen from this sender")

    def record(self, sender_pk: bytes, nonce: bytes, timestamp: float, now: float) -> None:
        """Remember an accepted frame (call only after its signature verified)."""
        self._expire(now)
        key = (sender_pk, nonce)
        self._seen[key] = timestamp
        heapq.heappush(self._heap, (timestamp, key))
        while len(self._seen) > self.entries_max:
            ts, old = heapq.heappop(self._heap)
            if self._seen.pop(old, None) is not None:
                pk = old[0]
                self._floors[pk] = max(self._floors.get(pk, float("-inf")), ts)
        if len(self._floors) > self.entries_max:
            limit = now - self.skew_s  # floors below the skew window are implied by it
            self._floors = {k: v for k, v in self._floors.items() if v >= limit}


class _Lru:
    def __init__(self, entries_max: int):
        self._d: OrderedDict = OrderedDict()
        self._max = entries_max

    def get(self, key):
        v = self._d.get(key)
        if v is not None:
            self._d.move_to_end(key)
        return v

    def __contains__(self, key) -> bool:
        return key in self._d

    def put(self, key, value) -> None:
        self._d[key] = value
        self._d.move_to_end(key)
        if len(self._d) > self._max:
            self._d.popitem(last=False)


class FrameReader:
    """One node's intake: size check, byte-level dedupe, envelope, replay, signature, body.

    The order is chosen so that cheap checks run first and a signature is verified at most
    once per unique frame: (1) length vs ``frame_bytes_max``; (2) BLAKE2b digest of the bytes
    against recently seen frames (gossip re-deliveries are dropped as ``duplicate`` before any
    crypto); (3) envelope parse; (4) timestamp within skew and nonce not yet accepted;
    (5) signature; (6) only now the (sender, nonce) is recorded and the body is parsed.

    Args:
        verifier: Ed25519Verifier in the daemon, InsecureSimVerifier in the simulator.
        limits: wire bounds (default :data:`DEFAULT_LIMITS`).
        skew_s: replay window / clock skew in seconds (default 30).
        replay_entries_max: replay window capacity (default 65,536).
        dedupe_entries_max: remembered frame digests (default 65,536).
    """

    def __init__(self, verifier: Verifier, *, limits: Limits = DEFAULT_LIMITS,
                 skew_s: float = 30.0, replay_entries_max: int = 65536,
                 dedupe_entries_max: int = 65536):
        self.verifier = verifier
        self.limits = limits
        self.replay = ReplayWindow(skew_s, replay_entries_max)
        self._seen = _Lru(dedupe_entries_max)
        self._embedded = _Lru(dedupe_entries_max)
        self.verifications = 0

    @staticmethod
    def digest(data: bytes) -> bytes:
        return hashlib.blake2b(data, digest_size=16).digest()

    def read(self, data: bytes, now: float) -> tuple[Envelope, Message]:
        """Accept one live frame or raise a :class:`FrameError` subclass."""
        if not isinstance(data, (bytes, bytearray)):
            raise MalformedFrame("frame is not bytes")
        if len(data) > self.limits.frame_bytes_max:
            raise OversizedFrame(f"{len(data)} bytes > {self.limits.frame_bytes_max}")
        d = self.digest(bytes(data))
        if d in self._seen:
            raise Duplicate("identical frame already processed")
        self._seen.put(d, True)
        env = decode_envelope(data, self.limits)
        self.replay.check(env.sender_pk, env.nonce, env.timestamp, now)
        self.verifications += 1
        if not self.verifier.verify(env.sender_pk, env.signature, env.signed_bytes()):
            raise BadSignature(f"signature of {env.kind} does not verify")
        self.replay.record(env.sender_pk, env.nonce, env.timestamp, now)
        msg = decode_body(env.kind, env.body, self.limits)
        if msg.query_id != env.query_id:
            raise MalformedFrame("body query id differs from envelope query id")
        return env, msg

    def read_embedded(self, data: bytes) -> tuple[Envelope, Message]:
        """Verify a frame carried inside another (a bundled proposal): no replay/skew check,
        the result is cached by digest so each bundled frame is verified once per node."""
        if not isinstance(data, bytes):
            raise MalformedFrame("embedded frame is not bytes")
        d = self.digest(data)
        hit = self._embedded.get(d)
        if hit is not None:
            return hit
        env = decode_envelope(data, self.limits)
        self.verifications += 1
        if not self.verifier.verify(env.sender_pk, env.signature, env.signed_bytes()):
            raise BadSignature(f"embedded {env.kind} signature does not verify")
        msg = decode_body(env.kind, env.body, self.limits)
        if msg.query_id != env.query_id:
            raise MalformedFrame("body query id differs from envelope query id")
        self._embedded.put(d, (env, msg))
        return env, msg

    def remember_verified(self, data: bytes, env: Envelope, msg: Message) -> None:
        """Mark a frame already verified via :meth:`read` as valid for later embedding."""
        self._embedded.put(self.digest(data), (env, msg))


__all__ = [
    "DOMAIN", "Ed25519Identity", "Ed25519Verifier", "Envelope", "FrameError", "FrameReader",
    "IdentityError", "InsecureSimRegistry", "InsecureSimSigner", "InsecureSimVerifier",
    "ReplayWindow", "Signer", "Verifier", "decode_envelope", "peer_id_from_public_key",
    "public_key_from_peer_id", "seal",
]
