"""The trainer protocol: every message between the engine and its trainers, defined once.

A message is one msgpack map ``{"p": PROTOCOL, "t": <type>, ...fields}`` in one ZeroMQ frame
(ROUTER on the engine, DEALER on trainers). Incoming frames are size-limited (by ZeroMQ's
``MAXMSGSIZE`` and again here) and validated field by field before anything can become an event.

Trainer -> engine: ``hello``, ``ready``, ``heartbeat``, ``result``, ``fail``, ``blob_put``,
``blob_get``, ``bye``. Engine -> trainer: ``welcome``, ``work``, ``ack``, ``beat``, ``blob_ok``,
``blob``, ``error``.

Example::

    >>> frame = encode("ready", slots=1)
    >>> decode(frame, TRAINER_MESSAGES)
    ('ready', {'slots': 1})
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import msgpack

PROTOCOL = 2
CHUNK = 1 << 20
MAX_FRAME = CHUNK + (64 << 10)
MAX_BLOB = 4 << 30
MAX_SLOTS = 64

Validator = Callable[[str, Any], None]


class ProtocolError(ValueError):
    """A frame that is not a valid message. ``code`` is ``version`` for a protocol mismatch."""

    def __init__(self, message: str, code: str = "invalid") -> None:
        super().__init__(message)
        self.code = code


def _integer(low: int = 0, high: int = 2**63 - 1) -> Validator:
    def check(name: str, value: Any) -> None:
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise ProtocolError(f"{name} must be an integer in [{low}, {high}], not {value!r}")

    return check


def _text(limit: int) -> Validator:
    def check(name: str, value: Any) -> None:
        if not isinstance(value, str) or len(value) > limit:
            raise ProtocolError(f"{name} must be text of at most {limit} characters")

    return check


def _choice(*allowed: str) -> Validator:
    def check(name: str, value: Any) -> None:
        if value not in allowed:
            raise ProtocolError(f"{name} must be one of {list(allowed)}, not {value!r}")

    return check


def _number(name: str, value: Any) -> None:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ProtocolError(f"{name} must be a number, not {value!r}")


def _finite(name: str, value: Any) -> None:
    _number(name, value)
    if not math.isfinite(value) or value < 0:
        raise ProtocolError(f"{name} must be a finite number of 0 or more, not {value!r}")


def _integers(limit: int) -> Validator:
    item = _integer()

    def check(name: str, value: Any) -> None:
        if not isinstance(value, list) or len(value) > limit:
            raise ProtocolError(f"{name} must be a list of at most {limit} integers")
        for entry in value:
            item(name, entry)

    return check


_KEY = re.compile(r"^[A-Za-z0-9_.:/-]{1,64}$")
_DIGEST = re.compile(r"^[0-9a-f]{64}$")


def _digest(name: str, value: Any) -> None:
    if not isinstance(value, str) or not _DIGEST.match(value):
        raise ProtocolError(f"{name} must be a sha256 hex digest")


def _metrics(name: str, value: Any) -> None:
    if not isinstance(value, dict) or len(value) > 64:
        raise ProtocolError(f"{name} must be a map of at most 64 metrics")
    for key, number in value.items():
        if not isinstance(key, str) or not _KEY.match(key):
            raise ProtocolError(f"{name} has an invalid metric name {key!r}")
        _number(f"{name}.{key}", number)


def _artifacts(name: str, value: Any) -> None:
    if not isinstance(value, dict) or len(value) > 32:
        raise ProtocolError(f"{name} must be a map of at most 32 artifacts")
    for key, digest in value.items():
        if not isinstance(key, str) or not _KEY.match(key):
            raise ProtocolError(f"{name} has an invalid artifact name {key!r}")
        _digest(f"{name}.{key}", digest)


def _names(name: str, value: Any) -> None:
    if not isinstance(value, list) or len(value) > 4096:
        raise ProtocolError(f"{name} must be a list of at most 4096 layer names")
    for entry in value:
        if not isinstance(entry, str) or len(entry) > 256:
            raise ProtocolError(f"{name} must hold layer names (text of at most 256 characters), not {entry!r}")


def _chunk(name: str, value: Any) -> None:
    if not isinstance(value, bytes) or len(value) > CHUNK:
        raise ProtocolError(f"{name} must be at most {CHUNK} bytes")


def _flag(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ProtocolError(f"{name} must be true or false")


def _list(name: str, value: Any) -> None:
    if not isinstance(value, list):
        raise ProtocolError(f"{name} must be a list")


def _map(name: str, value: Any) -> None:
    if not isinstance(value, dict):
        raise ProtocolError(f"{name} must be a map")


Spec = dict[str, Validator]

#: What a trainer may send, field by field. Every field is required.
TRAINER_MESSAGES: dict[str, Spec] = {
    "hello": {"name": _text(128), "host": _text(255), "pid": _integer(), "leases": _integers(MAX_SLOTS)},
    "ready": {"slots": _integer(1, MAX_SLOTS)},
    "heartbeat": {"leases": _integers(MAX_SLOTS)},
    "result": {"lease": _integer(), "metrics": _metrics, "artifacts": _artifacts, "inherited": _names,
               "slots": _integer(0, MAX_SLOTS)},
    "fail": {"lease": _integer(), "reason": _text(4000), "blame": _choice("candidate", "infrastructure"),
             "slots": _integer(0, MAX_SLOTS)},
    "blob_put": {"digest": _digest, "offset": _integer(0, MAX_BLOB), "total": _integer(0, MAX_BLOB), "data": _chunk},
    "blob_get": {"digest": _digest, "offset": _integer(0, MAX_BLOB)},
    "bye": {},
}

#: What the engine sends.
ENGINE_MESSAGES: dict[str, Spec] = {
    "welcome": {"run": _text(64), "config": _map, "heartbeat": _finite, "lease_timeout": _finite},
    "work": {"items": _list, "retry": _finite, "done": _flag},
    "ack": {"lease": _integer(), "accepted": _flag, "reason": _text(4000)},
    "beat": {"unknown": _integers(MAX_SLOTS)},
    "blob_ok": {"digest": _digest, "have": _integer(0, MAX_BLOB), "complete": _flag},
    "blob": {"digest": _digest, "offset": _integer(0, MAX_BLOB), "total": _integer(0, MAX_BLOB), "data": _chunk},
    "error": {"code": _text(32), "message": _text(4000)},
}

_ALL = {**TRAINER_MESSAGES, **ENGINE_MESSAGES}


def encode(kind: str, **fields: Any) -> bytes:
    """One frame of message ``kind``; the fields must be exactly the ones its spec lists."""
    spec = _ALL[kind]
    if set(fields) != set(spec):
        raise ProtocolError(f"{kind} takes fields {sorted(spec)}, got {sorted(fields)}")
    return msgpack.packb({"p": PROTOCOL, "t": kind, **fields})


def decode(frame: bytes, messages: dict[str, Spec]) -> tuple[str, dict[str, Any]]:
    """Parse and validate one frame against ``messages``. Raises :class:`ProtocolError`."""
    if len(frame) > MAX_FRAME:
        raise ProtocolError(f"frame of {len(frame)} bytes exceeds the {MAX_FRAME}-byte limit")
    try:
        message = msgpack.unpackb(
            frame, max_str_len=MAX_FRAME, max_bin_len=MAX_FRAME, max_array_len=4096, max_map_len=4096,
            max_ext_len=0,
        )
    except Exception as exc:  # msgpack raises several unrelated types for malformed input
        raise ProtocolError(f"not a msgpack message ({type(exc).__name__})") from None
    if not isinstance(message, dict):
        raise ProtocolError("a message must be a msgpack map")
    version = message.pop("p", None)
    if version != PROTOCOL:
        raise ProtocolError(f"protocol version {version!r} is not supported (this engine speaks {PROTOCOL})",
                            code="version")
    kind = message.pop("t", None)
    spec = messages.get(kind) if isinstance(kind, str) else None
    if spec is None:
        raise ProtocolError(f"unknown message type {kind!r}")
    if set(message) != set(spec):
        raise ProtocolError(f"{kind} takes fields {sorted(spec)}, got {sorted(map(str, message))}")
    for name, check in spec.items():
        check(f"{kind}.{name}", message[name])
    return kind, message
