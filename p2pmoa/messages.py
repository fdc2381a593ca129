"""Typed protocol messages and their bounded, schema-checked msgpack codec.

Every byte a peer sends us is hostile until proven otherwise, so decoding is done in two
bounded steps and never raises anything but a :class:`FrameError` subclass:

1. the *envelope* (see :mod:`p2pmoa.identity` for signing) is a msgpack array
   ``[version, kind, sender_pk, query_id, timestamp, nonce, body, signature]``; it is unpacked
   with every msgpack limit set (``max_buffer_size``, ``max_str_len``, ``max_bin_len``,
   ``max_array_len``, ``max_map_len``, no ext types) after the raw length was checked against
   :attr:`Limits.frame_bytes_max` (1 MiB by default, below gossipsub's silent 1 MiB drop);
2. the *body* (a msgpack map, itself a ``bin`` field of the envelope so that the signature can
   be checked before the body is parsed) is unpacked with the same limits and validated field
   by field against the schema of its ``kind``: exact key set, types, ranges, string byte
   lengths, finite floats. Only then is a frozen dataclass built.

Each error class has a stable ``reason`` string: the daemon uses it as a metric label
(``p2pmoa_frames_rejected_total{reason="oversized"}``) and the peer protocol counts rejects
by it in ``statistics()``.

Schema versioning: :data:`SCHEMA_VERSION` is the first element of every envelope. A node
rejects other versions with :class:`UnsupportedVersion` (reason ``bad_version``) instead of
guessing; a future version bump must be deployed as "accept both, send new".
"""
from __future__ import annotations

import math
import struct
from functools import cached_property
from dataclasses import MISSING, dataclass, fields
from typing import Any, ClassVar, Union

import msgpack

from p2pmoa.effects import PeerId, QueryId

SCHEMA_VERSION = 1
"""Wire schema version carried in every envelope."""

CANONICAL_BYTES_MAX = 512
"""Largest canonical answer a proposal may carry (UTF-8 bytes; canonical answers are clipped
to 120 characters, so this leaves room for multi-byte scripts)."""

QUERY_TOPIC = "p2pmoa/query/1"
"""Gossip topic on which :class:`QueryAnnounce` frames are broadcast."""

METHODS = ("pbft", "averaging", "vote", "aggregate", "score")
"""Aggregation methods a query may ask for."""


# --------------------------------------------------------------------------- errors


class FrameError(Exception):
    """Base class of everything that can go wrong with bytes received from a peer.

    ``reason`` is a short stable identifier used as a metric label; subclasses override it.
    """

    reason: ClassVar[str] = "frame_error"


class MalformedFrame(FrameError):
    """The bytes are not a well-formed envelope or body of the current schema."""

    reason = "malformed"


class OversizedFrame(FrameError):
    """The frame is longer than ``Limits.frame_bytes_max``; it is rejected before parsing."""

    reason = "oversized"


class UnsupportedVersion(MalformedFrame):
    """The envelope carries a schema version this node does not speak."""

    reason = "bad_version"


class UnknownKind(MalformedFrame):
    """The envelope names a message kind this schema version does not define."""

    reason = "unknown_kind"


class BadSignature(FrameError):
    """The signature does not verify against the sender key in the envelope."""

    reason = "bad_signature"


class Replayed(FrameError):
    """The (sender, nonce) pair was already accepted inside the replay window."""

    reason = "replayed"


class StaleFrame(FrameError):
    """The envelope timestamp lies outside ``now ± skew_s`` (or below the window floor)."""

    reason = "stale"


class UnknownSender(FrameError):
    """The sender is not allowed to send this message in this context (e.g. not a member)."""

    reason = "unknown_sender"


class Duplicate(FrameError):
    """Byte-identical frame already processed (gossip re-delivery); dropped without work."""

    reason = "duplicate"


# --------------------------------------------------------------------------- limits


@dataclass(frozen=True)
class Limits:
    """Hard bounds on everything decoded from the wire.

    The defaults keep a full :class:`RoundStart` bundle (``members_max`` signed proposals with
    ``answer_bytes_max`` answers and ``dim_max`` float32 embeddings) under ``frame_bytes_max``.

    Args:
        frame_bytes_max: maximum envelope size in bytes (default 1 MiB). Larger frames are
            rejected with :class:`OversizedFrame` before any parsing.
        prompt_bytes_max: maximum UTF-8 size of a query prompt (default 16 KiB).
        answer_bytes_max: maximum UTF-8 size of an answer (default 16 KiB).
        dim_max: maximum embedding dimension (default 1024 floats).
        members_max: maximum members of one aggregation round, hence bundle size (default 32).
        id_bytes_max: maximum size of ids (query ids, peer ids, model ids; default 128 bytes).
        text_bytes_max: maximum size of other short strings (roles, reasons; default 1 KiB).
        pbft_items_max: maximum list length inside a PBFT message (default 256).
    """

    frame_bytes_max: int = 1 << 20
    prompt_bytes_max: int = 16 << 10
    answer_bytes_max: int = 16 << 10
    dim_max: int = 1024
    members_max: int = 32
    id_bytes_max: int = 128
    text_bytes_max: int = 1024
    pbft_items_max: int = 256

    @cached_property
    def _unpack_kwargs(self) -> dict:
        return self.unpack_kwargs()

    def unpack_kwargs(self) -> dict:
        """Keyword arguments for ``msgpack.Unpacker`` that bound every container and string."""
        return dict(
            max_buffer_size=self.frame_bytes_max,
            max_str_len=max(self.prompt_bytes_max, self.answer_bytes_max, self.text_bytes_max),
            max_bin_len=self.frame_bytes_max,
            max_array_len=max(self.members_max, self.pbft_items_max, 16),
            max_map_len=64,
            max_ext_len=0,
            raw=False,
            strict_map_key=True,
            use_list=True,
        )


DEFAULT_LIMITS = Limits()


def unpack_bounded(data: bytes, limits: Limits = DEFAULT_LIMITS) -> Any:
    """Unpack msgpack ``data`` with every limit of ``limits`` set.

    Raises:
        OversizedFrame: ``len(data) > limits.frame_bytes_max``.
        MalformedFrame: anything msgpack refuses (truncation, extra data, limits, bad UTF-8).
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise MalformedFrame(f"expected bytes, got {type(data).__name__}")
    if len(data) > limits.frame_bytes_max:
        raise OversizedFrame(f"{len(data)} bytes > frame_bytes_max={limits.frame_bytes_max}")
    data = bytes(data)
    try:
        # Unpacker with max_buffer_size = frame_bytes_max plus every per-object limit; the
        # explicit length check above already refused anything larger than the buffer.
        unpacker = msgpack.Unpacker(**limits._unpack_kwargs)
        unpacker.feed(data)
        obj = unpacker.unpack()
        if unpacker.tell() != len(data):
            raise MalformedFrame("extra bytes after the msgpack object")
        return obj
    except MalformedFrame:
        raise
    except Exception as exc:  # OutOfData/ValueError/FormatError/StackError/UnicodeDecodeError
        raise MalformedFrame(f"msgpack: {type(exc).__name__}: {exc}"[:200]) from None


def pack(obj: Any) -> bytes:
    """Deterministic msgpack encoding (bin type for bytes, no ext types)."""
    return msgpack.packb(obj, use_bin_type=True)


# --------------------------------------------------------------------------- field checks


def _str(v: Any, name: str, max_bytes: int, *, allow_empty: bool = True) -> str:
    if not isinstance(v, str):
        raise MalformedFrame(f"{name}: expected str")
    if len(v.encode("utf-8", "surrogatepass")) > max_bytes:
        raise MalformedFrame(f"{name}: longer than {max_bytes} bytes")
    if not allow_empty and not v:
        raise MalformedFrame(f"{name}: empty")
    return v


def _int(v: Any, name: str, lo: int, hi: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise MalformedFrame(f"{name}: expected int")
    if not lo <= v <= hi:
        raise MalformedFrame(f"{name}: {v} outside [{lo}, {hi}]")
    return v


def _bool(v: Any, name: str) -> bool:
    if not isinstance(v, bool):
        raise MalformedFrame(f"{name}: expected bool")
    return v


def _float(v: Any, name: str, lo: float, hi: float) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise MalformedFrame(f"{name}: expected float")
    v = float(v)
    if not math.isfinite(v) or not lo <= v <= hi:
        raise MalformedFrame(f"{name}: {v} not finite or outside [{lo}, {hi}]")
    return v


def _bin(v: Any, name: str, max_len: int, exact: int | None = None) -> bytes:
    if not isinstance(v, bytes):
        raise MalformedFrame(f"{name}: expected bytes")
    if exact is not None and len(v) != exact:
        raise MalformedFrame(f"{name}: expected {exact} bytes, got {len(v)}")
    if len(v) > max_len:
        raise MalformedFrame(f"{name}: longer than {max_len} bytes")
    return v


def _vec(v: Any, name: str, dim_max: int, *, allow_empty: bool = False) -> bytes:
    """A float32 little-endian vector: length multiple of 4, 1..dim_max floats, all finite."""
    b = _bin(v, name, 4 * dim_max)
    if len(b) % 4 or (not b and not allow_empty):
        raise MalformedFrame(f"{name}: not a non-empty float32 vector")
    if b:
        vals = struct.unpack(f"<{len(b) // 4}f", b)
        if not all(math.isfinite(x) for x in vals):
            raise MalformedFrame(f"{name}: NaN or Inf in vector")
    return b


def _list(v: Any, name: str, max_len: int) -> list:
    if not isinstance(v, list):
        raise MalformedFrame(f"{name}: expected array")
    if len(v) > max_len:
        raise MalformedFrame(f"{name}: more than {max_len} items")
    return v


def _peer_list(v: Any, name: str, L: Limits) -> tuple[PeerId, ...]:
    """A sorted, duplicate-free list of peer ids (at most ``members_max``; may be empty)."""
    peers = tuple(PeerId(_str(p, f"{name}[]", L.id_bytes_max, allow_empty=False))
                  for p in _list(v, name, L.members_max))
    if list(peers) != sorted(set(peers)):
        raise MalformedFrame(f"{name}: not sorted and unique")
    return peers


def vector_to_f32(values) -> bytes:
    """Encode a sequence of floats (or a 1-d numpy array) as float32 little-endian bytes."""
    vals = [float(x) for x in values]
    return struct.pack(f"<{len(vals)}f", *vals)


def f32_to_vector(b: bytes) -> tuple[float, ...]:
    """Decode float32 little-endian bytes into a tuple of floats."""
    return struct.unpack(f"<{len(b) // 4}f", b)


TS_MAX = 1e11  # seconds; any sane clock (virtual or Unix) is below this
DURATION_MAX_S = 3600.0
TOKENS_MAX = 1 << 20


# --------------------------------------------------------------------------- messages


@dataclass(frozen=True)
class QueryAnnounce:
    """Gossiped by the originator: "please answer this prompt in your role".

    ``select_ppm`` (parts per million) lets a large mesh sample its proposers: a peer answers
    iff a deterministic hash of (query id, its peer id) falls below it, so the originator can
    aim at ``proposers_max`` answers without knowing every peer. 1_000_000 = everyone answers.

    ``invited``: when the asker capped the query's proposers (``UserQuery.proposers_max``),
    the peers the originator asks to answer (sorted, unique, at most ``members_max``); every
    other peer ignores the announce, so a capped query makes only that many model calls.
    None (the field absent on the wire): every selected peer answers, as before the field
    existed. Added after schema 1 shipped as an optional field: it is left out of the frame
    when None, so frames of uncapped queries are byte-for-byte what older nodes send (an older
    node refuses a capped announce as malformed, i.e. it does not answer it).
    """

    kind: ClassVar[str] = "announce"
    query_id: QueryId
    origin: PeerId
    prompt: str
    method: str
    created_at: float
    deadline_s: float
    proposers_max: int
    select_ppm: int = 1_000_000
    max_tokens: int = 128
    temperature: float = 0.7
    seed: int = 0
    invited: tuple[PeerId, ...] | None = None


@dataclass(frozen=True)
class Proposal:
    """A peer's signed answer to a query, sent to the originator over a direct stream.

    ``embedding_f32`` is empty: members embed every candidate themselves in their own
    embedder, so a shipped vector would be trusted by nobody (issue 10 removed the proposer's
    self-embedding). The field stays in the schema, decoded if present (float32 LE, finite,
    at most ``dim_max``), so frames of older nodes still decode.
    ``canonical`` is the short answer inside ``answer`` (:func:`p2pmoa.agreement.canonical_answer`),
    signed with it so that every member compares the same claim. Added after schema 1 shipped
    as an optional field: a frame without it decodes with ``canonical=""`` (members then extract
    it from ``answer`` themselves).
    """

    kind: ClassVar[str] = "proposal"
    query_id: QueryId
    proposer: PeerId
    answer: str
    model_id: str
    role: str
    space_id: str
    embedding_f32: bytes
    prompt_tokens: int
    completion_tokens: int
    llm_s: float
    canonical: str = ""


@dataclass(frozen=True)
class Ack:
    """Application-level acknowledgement of the frame whose nonce is ``ref``."""

    kind: ClassVar[str] = "ack"
    query_id: QueryId
    ref: bytes


@dataclass(frozen=True)
class Nack:
    """Refusal of the frame whose nonce is ``ref``; ``retry_after_s`` > 0 means "busy, retry"."""

    kind: ClassVar[str] = "nack"
    query_id: QueryId
    ref: bytes
    reason: str
    retry_after_s: float = 0.0


@dataclass(frozen=True)
class RoundStart:
    """Originator -> members: start aggregation ``method`` over ``bundle``.

    ``bundle`` holds the *signed proposal frames* exactly as received, so every member checks
    each proposer's signature itself. ``members`` is sorted; ``weights[i]`` is the integer vote
    weight of ``members[i]`` (fixed by the originator so that all members count quorums alike).
    """

    kind: ClassVar[str] = "round"
    query_id: QueryId
    method: str
    members: tuple[PeerId, ...]
    weights: tuple[int, ...]
    bundle: tuple[bytes, ...]
    round_timeout_s: float
    view_timeout_s: float
    avg_rounds: int = 8


@dataclass(frozen=True)
class PbftWire:
    """One consensus.pbft message for the query's PBFT instance (``body`` = pbft.encode(msg))."""

    kind: ClassVar[str] = "pbft"
    query_id: QueryId
    body: Any  # decoded consensus.pbft message object


@dataclass(frozen=True)
class AvgVector:
    """One embedding-averaging round: the sender's vector for round ``step``; ``settled``: it
    moved less than eps last round; ``final``: it stopped (use this vector from now on)."""

    kind: ClassVar[str] = "avg"
    query_id: QueryId
    step: int
    vector_f32: bytes
    settled: bool = False
    final: bool = False


@dataclass(frozen=True)
class ScoreVote:
    """Score vote of one member: ``scores[i]`` in 0..1000 for bundle entry ``i`` (permille)."""

    kind: ClassVar[str] = "vote"
    query_id: QueryId
    scores: tuple[int, ...]


@dataclass(frozen=True)
class Decision:
    """The final answer of a query, as recorded by the sender.

    ``digest`` = sha256(answer); ``chosen`` is the proposer whose answer won ("" when the answer
    was synthesised, as with ``aggregate``); ``n_proposals`` of ``n_expected`` arrived in time.
    """

    kind: ClassVar[str] = "decision"
    query_id: QueryId
    method: str
    answer: str
    digest: bytes
    chosen: PeerId
    n_proposals: int
    n_expected: int
    view: int = 0


@dataclass(frozen=True)
class MemoryShare:
    """A decided (query, consensus answer) offered for shared memory (p2pmoa/memory_share.py).

    Signed (by the envelope) by its sender: the originator that decided the round, or a round
    member endorsing it after checking it against the decision it recorded itself. ``digest``
    is the round's decision digest (sha256 of ``answer``); ``members`` the round's members
    (sorted, unique); ``decided_at`` the originator's decision time, seconds.
    """

    kind: ClassVar[str] = "memory"
    query_id: QueryId
    origin: PeerId
    query: str
    answer: str
    digest: bytes
    method: str
    members: tuple[PeerId, ...]
    decided_at: float


Message = Union[
    QueryAnnounce, Proposal, Ack, Nack, RoundStart, PbftWire, AvgVector, ScoreVote, Decision,
    MemoryShare,
]
MESSAGE_TYPES: dict[str, type] = {
    t.kind: t
    for t in (QueryAnnounce, Proposal, Ack, Nack, RoundStart, PbftWire, AvgVector, ScoreVote,
              Decision, MemoryShare)
}


# --------------------------------------------------------------------------- body codec


def _pbft():
    # Imported lazily so that messages without PBFT content work even while consensus/ evolves.
    from consensus import pbft  # noqa: PLC0415

    return pbft


def encode_body(msg: Message) -> bytes:
    """Encode a message body (without envelope) as a msgpack map of its fields."""
    d: dict[str, Any] = {}
    for f in fields(msg):
        v = getattr(msg, f.name)
        if v is None and f.default is None:
            continue  # an optional field added after schema 1: absent, as older nodes send it
        if isinstance(v, tuple):
            v = list(v)
        d[f.name] = v
    if isinstance(msg, PbftWire):
        d["body"] = _pbft().encode(msg.body)
    return pack(d)


_SCHEMA_KEYS: dict[type, tuple[frozenset, frozenset]] = {}


def _check_keys(d: Any, cls: type) -> dict:
    if not isinstance(d, dict):
        raise MalformedFrame(f"{cls.kind}: body is not a map")
    sk = _SCHEMA_KEYS.get(cls)
    if sk is None:
        sk = _SCHEMA_KEYS[cls] = (
            frozenset(f.name for f in fields(cls)),
            frozenset(f.name for f in fields(cls)
                      if f.default is MISSING and f.default_factory is MISSING))
    names, required = sk
    keys = set(d)
    if not keys <= names or not required <= keys:
        raise MalformedFrame(f"{cls.kind}: fields {sorted(map(str, keys))} != schema")
    return d


def decode_body(kind: str, body: bytes, limits: Limits = DEFAULT_LIMITS) -> Message:
    """Decode and validate a body of ``kind``.

    Raises:
        UnknownKind: ``kind`` is not defined in this schema version.
        OversizedFrame / MalformedFrame: as :func:`unpack_bounded`, or a field fails the schema.
    """
    cls = MESSAGE_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise UnknownKind(f"unknown kind {kind!r}"[:100])
    d = _check_keys(unpack_bounded(body, limits), cls)
    L = limits
    idm = L.id_bytes_max
    q = QueryId(_str(d["query_id"], "query_id", idm, allow_empty=False))
    match kind:
        case "announce":
            method = _str(d["method"], "method", idm)
            if method not in METHODS:
                raise MalformedFrame(f"method {method!r} unknown")
            return QueryAnnounce(
                query_id=q,
                origin=PeerId(_str(d["origin"], "origin", idm, allow_empty=False)),
                prompt=_str(d["prompt"], "prompt", L.prompt_bytes_max, allow_empty=False),
                method=method,
                created_at=_float(d["created_at"], "created_at", 0.0, TS_MAX),
                deadline_s=_float(d["deadline_s"], "deadline_s", 0.0, DURATION_MAX_S),
                proposers_max=_int(d["proposers_max"], "proposers_max", 1, L.members_max),
                select_ppm=_int(d.get("select_ppm", 1_000_000), "select_ppm", 0, 1_000_000),
                max_tokens=_int(d.get("max_tokens", 128), "max_tokens", 1, 1 << 16),
                temperature=_float(d.get("temperature", 0.7), "temperature", 0.0, 10.0),
                seed=_int(d.get("seed", 0), "seed", -(1 << 63), (1 << 63) - 1),
                invited=_peer_list(d["invited"], "invited", L) if "invited" in d else None,
            )
        case "proposal":
            return Proposal(
                query_id=q,
                proposer=PeerId(_str(d["proposer"], "proposer", idm, allow_empty=False)),
                answer=_str(d["answer"], "answer", L.answer_bytes_max),
                model_id=_str(d["model_id"], "model_id", idm),
                role=_str(d["role"], "role", L.text_bytes_max),
                space_id=_str(d["space_id"], "space_id", idm),
                embedding_f32=_vec(d["embedding_f32"], "embedding_f32", L.dim_max, allow_empty=True),
                prompt_tokens=_int(d["prompt_tokens"], "prompt_tokens", 0, TOKENS_MAX),
                completion_tokens=_int(d["completion_tokens"], "completion_tokens", 0, TOKENS_MAX),
                llm_s=_float(d["llm_s"], "llm_s", 0.0, DURATION_MAX_S),
                canonical=_str(d.get("canonical", ""), "canonical", CANONICAL_BYTES_MAX),
            )
        case "ack":
            return Ack(query_id=q, ref=_bin(d["ref"], "ref", 64))
        case "nack":
            return Nack(
                query_id=q,
                ref=_bin(d["ref"], "ref", 64),
                reason=_str(d["reason"], "reason", L.text_bytes_max),
                retry_after_s=_float(d.get("retry_after_s", 0.0), "retry_after_s", 0.0,
                                     DURATION_MAX_S),
            )
        case "round":
            method = _str(d["method"], "method", idm)
            if method not in METHODS:
                raise MalformedFrame(f"method {method!r} unknown")
            members = tuple(PeerId(_str(m, "members[]", idm, allow_empty=False))
                            for m in _list(d["members"], "members", L.members_max))
            weights = tuple(_int(w, "weights[]", 0, 1 << 30)
                            for w in _list(d["weights"], "weights", L.members_max))
            if not members or len(weights) != len(members):
                raise MalformedFrame("round: members/weights length mismatch or empty")
            if list(members) != sorted(set(members)):
                raise MalformedFrame("round: members not sorted and unique")
            if sum(weights) <= 0:
                raise MalformedFrame("round: total weight is zero")
            bundle = tuple(_bin(b, "bundle[]", L.frame_bytes_max)
                           for b in _list(d["bundle"], "bundle", L.members_max))
            return RoundStart(
                query_id=q, method=method, members=members, weights=weights, bundle=bundle,
                round_timeout_s=_float(d["round_timeout_s"], "round_timeout_s", 0.0,
                                       DURATION_MAX_S),
                view_timeout_s=_float(d["view_timeout_s"], "view_timeout_s", 0.0,
                                      DURATION_MAX_S),
                avg_rounds=_int(d.get("avg_rounds", 8), "avg_rounds", 0, 1000),
            )
        case "pbft":
            pbft = _pbft()
            try:
                inner = pbft.decode(d["body"])
            except pbft.PbftError as exc:
                raise MalformedFrame(f"pbft: {exc}"[:200]) from None
            except Exception as exc:  # decode must never leak other errors; be defensive
                raise MalformedFrame(f"pbft: {type(exc).__name__}"[:200]) from None
            return PbftWire(query_id=q, body=inner)
        case "avg":
            return AvgVector(
                query_id=q,
                step=_int(d["step"], "step", 0, 1 << 20),
                vector_f32=_vec(d["vector_f32"], "vector_f32", L.dim_max),
                settled=_bool(d.get("settled", False), "settled"),
                final=_bool(d.get("final", False), "final"),
            )
        case "vote":
            return ScoreVote(
                query_id=q,
                scores=tuple(_int(s, "scores[]", 0, 1000)
                             for s in _list(d["scores"], "scores", L.members_max)),
            )
        case "decision":
            method = _str(d["method"], "method", idm)
            if method not in METHODS:
                raise MalformedFrame(f"method {method!r} unknown")
            return Decision(
                query_id=q,
                method=method,
                answer=_str(d["answer"], "answer", L.answer_bytes_max),
                digest=_bin(d["digest"], "digest", 32, exact=32),
                chosen=PeerId(_str(d["chosen"], "chosen", idm)),
                n_proposals=_int(d["n_proposals"], "n_proposals", 0, L.members_max),
                n_expected=_int(d["n_expected"], "n_expected", 0, L.members_max),
                view=_int(d.get("view", 0), "view", 0, 1 << 30),
            )
        case "memory":
            method = _str(d["method"], "method", idm)
            if method not in METHODS:
                raise MalformedFrame(f"method {method!r} unknown")
            members = tuple(PeerId(_str(m, "members[]", idm, allow_empty=False))
                            for m in _list(d["members"], "members", L.members_max))
            if not members or list(members) != sorted(set(members)):
                raise MalformedFrame("memory: members empty, or not sorted and unique")
            return MemoryShare(
                query_id=q,
                origin=PeerId(_str(d["origin"], "origin", idm, allow_empty=False)),
                query=_str(d["query"], "query", L.prompt_bytes_max, allow_empty=False),
                answer=_str(d["answer"], "answer", L.answer_bytes_max),
                digest=_bin(d["digest"], "digest", 32, exact=32),
                method=method,
                members=members,
                decided_at=_float(d["decided_at"], "decided_at", 0.0, TS_MAX),
            )
    raise UnknownKind(kind)  # pragma: no cover - MESSAGE_TYPES and match agree
