"""The PBFT wire codec: plain dicts of str/int/bytes/list (msgpack-able), validated strictly
on the way in, and the canonical bytes a member signs.

:func:`encode` / :func:`decode` are inverse on every well-formed message; :func:`decode`
raises :class:`MalformedMessage` on a wrong type, a missing or extra field or a value out of
bounds, so nothing malformed reaches a replica. :func:`signing_bytes` covers every field
except the signature, nested messages with their own signatures (a signature over a view
change also covers the certificates it carries). Pure functions of the message.
"""
from __future__ import annotations

import hashlib
import struct
from typing import Callable, Optional

from .messages import (
    DIGEST_BYTES, INT_MAX, ITEMS_MAX, MEMBER_ID_CHARS_MAX, SIGNATURE_BYTES_MAX,
    VALUE_BYTES_MAX, Checkpoint, Commit, CommitProof, MalformedMessage, MemberId, Message,
    NewView, PbftError, PreparedCert, PrePrepare, Prepare, ViewChange,
)


def with_signature(msg: Message, signature: bytes) -> Message:
    """A copy of ``msg`` carrying ``signature`` (over :func:`signing_bytes` of ``msg``)."""
    cls = type(msg)
    vals = {f: getattr(msg, f) for f in cls.__dataclass_fields__}
    vals["signature"] = signature
    return cls(**vals)


def encode(msg: Message) -> dict:
    """Encode a message as a dict of str/int/bytes/list/dict (msgpack-able)."""
    match msg:
        case PrePrepare(view=v, seq=n, digest=d, value=x, sender=s, signature=g):
            return {"t": "pp", "v": v, "n": n, "d": d, "x": x, "s": s, "g": g}
        case Prepare(view=v, seq=n, digest=d, sender=s, signature=g):
            return {"t": "p", "v": v, "n": n, "d": d, "s": s, "g": g}
        case Commit(view=v, seq=n, digest=d, sender=s, signature=g):
            return {"t": "c", "v": v, "n": n, "d": d, "s": s, "g": g}
        case Checkpoint(seq=n, state_digest=d, sender=s, signature=g):
            return {"t": "ck", "n": n, "d": d, "s": s, "g": g}
        case ViewChange(new_view=v, stable_seq=n, prepared=certs, sender=s,
                        checkpoint_proof=proof, missing=missing, signature=g):
            return {"t": "vc", "v": v, "n": n, "M": list(missing),
                    "P": [{"pp": encode(c.pre_prepare), "ps": [encode(p) for p in c.prepares]}
                          for c in certs],
                    "C": [encode(c) for c in proof], "s": s, "g": g}
        case NewView(view=v, view_changes=vcs, pre_prepares=pps, sender=s, signature=g):
            return {"t": "nv", "v": v, "V": [encode(x) for x in vcs],
                    "O": [encode(x) for x in pps], "s": s, "g": g}
        case CommitProof(seq=n, view=v, digest=d, value=x, commits=cs, sender=s, signature=g):
            return {"t": "cp", "n": n, "v": v, "d": d, "x": x,
                    "C": [encode(c) for c in cs], "s": s, "g": g}
    raise PbftError(f"cannot encode {type(msg).__name__}")


_KEYS = {
    "pp": {"t", "v", "n", "d", "x", "s", "g"},
    "p": {"t", "v", "n", "d", "s", "g"},
    "c": {"t", "v", "n", "d", "s", "g"},
    "ck": {"t", "n", "d", "s", "g"},
    "vc": {"t", "v", "n", "P", "C", "M", "s", "g"},
    "nv": {"t", "v", "V", "O", "s", "g"},
    "cp": {"t", "n", "v", "d", "x", "C", "s", "g"},
}


def _int(obj: dict, k: str) -> int:
    x = obj[k]
    if type(x) is not int or not (0 <= x <= INT_MAX):
        raise MalformedMessage(f"field {k!r} must be an int in [0, 2^63), got {x!r:.40}")
    return x


def _bytes(obj: dict, k: str, *, exact: Optional[int] = None, most: int = VALUE_BYTES_MAX) -> bytes:
    x = obj[k]
    if type(x) is not bytes:
        raise MalformedMessage(f"field {k!r} must be bytes")
    if exact is not None and len(x) != exact:
        raise MalformedMessage(f"field {k!r} must be {exact} bytes, got {len(x)}")
    if len(x) > most:
        raise MalformedMessage(f"field {k!r} longer than {most} bytes")
    return x


def _sender(obj: dict) -> MemberId:
    s = obj["s"]
    if type(s) is not str or not (1 <= len(s) <= MEMBER_ID_CHARS_MAX):
        raise MalformedMessage("sender must be a non-empty string of at most 256 chars")
    return MemberId(s)


def _list(obj: dict, k: str) -> list:
    x = obj[k]
    if type(x) not in (list, tuple) or len(x) > ITEMS_MAX:
        raise MalformedMessage(f"field {k!r} must be a list of at most {ITEMS_MAX} items")
    return list(x)


def decode(obj: object, *, value_bytes_max: int = VALUE_BYTES_MAX) -> Message:
    """Decode and validate a dict produced by :func:`encode`.

    Raises:
        MalformedMessage: on a wrong type, a missing or extra field, or a value out of bounds.
    """
    return _decode(obj, value_bytes_max, None)


def _decode(obj: object, vmax: int, want: Optional[str]):
    if not isinstance(obj, dict):
        raise MalformedMessage("a PBFT message must be a dict")
    t = obj.get("t")
    if t not in _KEYS:
        raise MalformedMessage(f"unknown message type {t!r:.40}")
    if want is not None and t != want:
        raise MalformedMessage(f"expected a {want!r} message, got {t!r}")
    if set(obj) != _KEYS[t]:
        raise MalformedMessage(f"{t!r} needs fields {sorted(_KEYS[t])}, got {sorted(map(str, obj))}")
    g = _bytes(obj, "g", most=SIGNATURE_BYTES_MAX)
    s = _sender(obj)
    if t == "pp":
        return PrePrepare(_int(obj, "v"), _int(obj, "n"), _bytes(obj, "d", exact=DIGEST_BYTES),
                          _bytes(obj, "x", most=vmax), s, g)
    if t == "p":
        return Prepare(_int(obj, "v"), _int(obj, "n"), _bytes(obj, "d", exact=DIGEST_BYTES), s, g)
    if t == "c":
        return Commit(_int(obj, "v"), _int(obj, "n"), _bytes(obj, "d", exact=DIGEST_BYTES), s, g)
    if t == "ck":
        return Checkpoint(_int(obj, "n"), _bytes(obj, "d", exact=DIGEST_BYTES), s, g)
    if t == "vc":
        certs = []
        for c in _list(obj, "P"):
            if not isinstance(c, dict) or set(c) != {"pp", "ps"}:
                raise MalformedMessage("a prepared certificate is {'pp': ..., 'ps': [...]}")
            certs.append(PreparedCert(_decode(c["pp"], vmax, "pp"),
                                      tuple(_decode(p, vmax, "p") for p in _list(c, "ps"))))
        proof = tuple(_decode(c, vmax, "ck") for c in _list(obj, "C"))
        missing = _list(obj, "M")
        if any(type(x) is not int or not (0 <= x <= INT_MAX) for x in missing):
            raise MalformedMessage("field 'M' must list sequence numbers")
        return ViewChange(_int(obj, "v"), _int(obj, "n"), tuple(certs), s, proof,
                          tuple(missing), g)
    if t == "nv":
        return NewView(_int(obj, "v"), tuple(_decode(x, vmax, "vc") for x in _list(obj, "V")),
                       tuple(_decode(x, vmax, "pp") for x in _list(obj, "O")), s, g)
    return CommitProof(_int(obj, "n"), _int(obj, "v"), _bytes(obj, "d", exact=DIGEST_BYTES),
                       _bytes(obj, "x", most=vmax),
                       tuple(_decode(c, vmax, "c") for c in _list(obj, "C")), s, g)


_I64 = struct.Struct("!q")
_I64x2 = struct.Struct("!qq")


def _ints(*xs) -> bytes:
    try:
        return _I64x2.pack(*xs) if len(xs) == 2 else _I64.pack(*xs)
    except struct.error as exc:
        raise PbftError(f"integer field out of range: {xs!r:.60}") from exc


def _blob(b: bytes) -> bytes:
    return len(b).to_bytes(4, "big") + b


def _name(s: str) -> bytes:
    if type(s) is not str:
        raise PbftError("sender must be a string")
    return _blob(s.encode())


def _nested(m) -> bytes:
    """A nested message inside a signed one: its own signing bytes and signature."""
    return _blob(_sb(m)) + _blob(m.signature)


def _sb(m) -> bytes:
    t = type(m)
    if t is Prepare or t is Commit:
        return (b"p" if t is Prepare else b"c") + _ints(m.view, m.seq) + _blob(m.digest) + _name(m.sender)
    if t is PrePrepare:
        # the value is bound through its digest: every receiver checks sha256(value) == digest
        return b"P" + _ints(m.view, m.seq) + _blob(m.digest) + _name(m.sender)
    if t is Checkpoint:
        return b"k" + _ints(m.seq) + _blob(m.state_digest) + _name(m.sender)
    if t is ViewChange:
        h = hashlib.sha256()
        for cert in m.prepared:
            h.update(b"C" + _nested(cert.pre_prepare) + len(cert.prepares).to_bytes(4, "big"))
            for p in cert.prepares:
                h.update(_nested(p))
        h.update(b"K" + len(m.checkpoint_proof).to_bytes(4, "big"))
        for ck in m.checkpoint_proof:
            h.update(_nested(ck))
        h.update(b"M" + len(m.missing).to_bytes(4, "big"))
        for n in m.missing:
            h.update(_ints(n))
        return b"v" + _ints(m.new_view, m.stable_seq) + _name(m.sender) + h.digest()
    if t is NewView:
        h = hashlib.sha256(len(m.view_changes).to_bytes(4, "big"))
        for vc in m.view_changes:
            h.update(_nested(vc))
        h.update(len(m.pre_prepares).to_bytes(4, "big"))
        for pp in m.pre_prepares:
            h.update(_nested(pp))
        return b"n" + _ints(m.view) + _name(m.sender) + h.digest()
    if t is CommitProof:
        h = hashlib.sha256(len(m.commits).to_bytes(4, "big"))
        for c in m.commits:
            h.update(_nested(c))
        return b"f" + _ints(m.seq, m.view) + _blob(m.digest) + _name(m.sender) + h.digest()
    raise PbftError(f"cannot sign {t.__name__}")


def signing_bytes(msg: Message) -> bytes:
    """The bytes a member signs for ``msg``: an unambiguous encoding of every field except
    the signature. Values are covered through their digest (receivers check
    ``sha256(value) == digest``); nested messages are covered with their own signatures, so
    a signature over a view change also covers the certificates it carries.

    Raises:
        PbftError: a field has an impossible type or an integer outside 64 bits.
    """
    return b"pbft2" + _sb(msg)


class Auth:
    """A member's signing hooks: :meth:`signed` for what it creates, :meth:`authentic` for
    what it receives (both no-ops without hooks)."""

    __slots__ = ("_sign", "_verify")

    def __init__(self, sign: Optional[Callable[[bytes], bytes]],
                 verify: Optional[Callable[[MemberId, bytes, bytes], bool]]) -> None:
        self._sign = sign
        self._verify = verify

    def signed(self, msg: Message) -> Message:
        """``msg`` signed over :func:`signing_bytes` (unchanged without a ``sign`` hook)."""
        if self._sign is None:
            return msg
        return with_signature(msg, self._sign(signing_bytes(msg)))

    def authentic(self, msg: Message) -> bool:
        """The ``verify`` hook's verdict on ``msg``'s signature; False, never an exception,
        for unsignable fields or a verifier raising on garbage."""
        if self._verify is None:
            return True
        try:
            return bool(self._verify(msg.sender, signing_bytes(msg), msg.signature))
        except Exception:
            return False
