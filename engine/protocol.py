"""The trainer protocol: every message between the engine and its trainers, defined once.

A message is one msgpack map ``{"p": PROTOCOL, "t": <type>, ...fields}`` in one ZeroMQ frame
(ROUTER on the engine, DEALER on trainers). Incoming frames are size-limited (by ZeroMQ's
``MAXMSGSIZE`` and again here) and validated field by field before anything can become an event.

Trainer -> engine: ``hello``, ``data`` (what towers are built on, once the run's data is read), ``ready``,
``heartbeat``, ``progress`` (the validation metrics of the epochs trained since the last one, at most about once a
second per lease), ``result``, ``fail``, ``blob_put``, ``blob_get``, ``bye``. Engine -> trainer: ``welcome``,
``work``, ``ack``, ``beat``, ``blob_ok``, ``blob``, ``error``, ``stop`` (train this lease no further than the
current epoch, then report). The items of ``work`` are the records of ``engine/work.py``: the engine sends
``item.to_message()``, and decoding checks each of their fields and gives back :class:`WorkItem` objects.

Nothing a peer sends can make decoding recurse or an error grow: containers nested deeper than
``MAX_DEPTH`` are refused before any field is looked at, and an error names the field and what it
must be, never the value it got (an error reply is at most ``MAX_ERROR`` characters): for example
``work.items[0].inherit.sources[1].weight must be a number in [0, 1]``.

A trainer proves it is the same trainer across connections with the ``secret`` of its hello (random,
made once per trainer process): the engine keeps only its hash with the trainer's CurveZMQ key
(:func:`proof_of`), records it with every lease it hands out, and accepts reports on a lease only
from a session with that proof.

Example::

    >>> frame = encode("ready", slots=1)
    >>> decode(frame, TRAINER_MESSAGES)
    ('ready', {'slots': 1})
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable
from enum import StrEnum
from typing import Any

import msgpack

from engine.state import Blame, Epoch, Kind, Resume, TowerInput
from engine.work import Architecture, Ensemble, Inherit, Member, Source, Teacher, WorkItem

PROTOCOL = 8  # 4: progress (per-epoch reports) and stop; 5: work items pause (until) and resume; 6: bundles;
#              7: a fail carries the metrics measured before the failure; 8: data (what towers are built on)
CHUNK = 1 << 20
MAX_FRAME = CHUNK + (64 << 10)
MAX_BLOB = 4 << 30
MAX_SLOTS = 64
MAX_DEPTH = 16  # engine messages nest 7 deep (a work item's inherited sources); trainer messages 3
MAX_ERROR = 200

Validator = Callable[[str, Any], Any]  # checks field ``name``'s value and returns it decoded


class ProtocolError(ValueError):
    """A frame that is not a valid message. ``code`` is ``version`` for a protocol mismatch."""

    def __init__(self, message: str, code: str = "invalid") -> None:
        super().__init__(message)
        self.code = code


def _integer(low: int = 0, high: int = 2**63 - 1) -> Validator:
    def check(name: str, value: Any) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise ProtocolError(f"{name} must be an integer in [{low}, {high}], not {_kind(value)}")
        return value

    return check


def _text(limit: int) -> Validator:
    def check(name: str, value: Any) -> str:
        if not isinstance(value, str) or len(value) > limit:
            raise ProtocolError(f"{name} must be text of at most {limit} characters")
        return value

    return check


def _choice(*allowed: str) -> Validator:
    def check(name: str, value: Any) -> str:
        if not isinstance(value, str) or value not in allowed:
            raise ProtocolError(f"{name} must be one of {list(allowed)}")
        return value

    return check


def _enum(kind: type[StrEnum]) -> Validator:
    """One of a StrEnum's values, decoded as its member."""
    choice = _choice(*(member.value for member in kind))

    def check(name: str, value: Any) -> StrEnum:
        return kind(choice(name, value))

    return check


def _number(name: str, value: Any) -> int | float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ProtocolError(f"{name} must be a number, not {_kind(value)}")
    return value


def _finite(name: str, value: Any) -> int | float:
    _number(name, value)
    if not math.isfinite(value) or value < 0:
        raise ProtocolError(f"{name} must be a finite number of 0 or more")
    return value


def _interval(name: str, value: Any) -> int | float:
    _number(name, value)
    if not math.isfinite(value) or value <= 0:
        raise ProtocolError(f"{name} must be a finite number of seconds above 0")
    return value


def _positive(name: str, value: Any) -> int | float:
    _number(name, value)
    if not math.isfinite(value) or value <= 0:
        raise ProtocolError(f"{name} must be a finite number above 0")
    return value


def _fraction(name: str, value: Any) -> int | float:
    _number(name, value)
    if not 0 <= value <= 1:  # NaN is not
        raise ProtocolError(f"{name} must be a number in [0, 1]")
    return value


def _integers(limit: int) -> Validator:
    item = _integer()

    def check(name: str, value: Any) -> list[int]:
        if not isinstance(value, list) or len(value) > limit:
            raise ProtocolError(f"{name} must be a list of at most {limit} integers")
        for entry in value:
            item(name, entry)
        return value

    return check


_KEY = re.compile(r"[A-Za-z0-9_.:/-]{1,64}")
DIGEST = re.compile(r"[0-9a-f]{64}")  # a sha256 hex digest, matched whole
_SECRET = re.compile(r"[0-9a-f]{32}")


def _kind(value: Any) -> str:
    """What a value is, in a few words that never repeat the value itself."""
    return "true or false" if isinstance(value, bool) else f"a value of type {type(value).__name__}"


def _digest(name: str, value: Any) -> str:
    if not isinstance(value, str) or not DIGEST.fullmatch(value):
        raise ProtocolError(f"{name} must be a sha256 hex digest")
    return value


def _secret(name: str, value: Any) -> str:
    if not isinstance(value, str) or not _SECRET.fullmatch(value):
        raise ProtocolError(f"{name} must be 32 lowercase hex digits")
    return value


def _metrics(name: str, value: Any) -> dict[str, int | float]:
    if not isinstance(value, dict) or len(value) > 64:
        raise ProtocolError(f"{name} must be a map of at most 64 metrics")
    for key, number in value.items():
        if not isinstance(key, str) or not _KEY.fullmatch(key):
            raise ProtocolError(f"{name} has an invalid metric name (names are 1-64 of A-Z a-z 0-9 _ . : / -)")
        _number(f"{name}.{key}", number)
    return value


def _artifacts(name: str, value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or len(value) > 32:
        raise ProtocolError(f"{name} must be a map of at most 32 artifacts")
    for key, digest in value.items():
        if not isinstance(key, str) or not _KEY.fullmatch(key):
            raise ProtocolError(f"{name} has an invalid artifact name (names are 1-64 of A-Z a-z 0-9 _ . : / -)")
        _digest(f"{name}.{key}", digest)
    return value


def _names(name: str, value: Any) -> list[str]:
    if not isinstance(value, list) or len(value) > 4096:
        raise ProtocolError(f"{name} must be a list of at most 4096 layer names")
    for entry in value:
        if not isinstance(entry, str) or len(entry) > 256:
            raise ProtocolError(f"{name} must hold layer names (text of at most 256 characters)")
    return value


def _chunk(name: str, value: Any) -> bytes:
    if not isinstance(value, bytes) or len(value) > CHUNK:
        raise ProtocolError(f"{name} must be binary data of at most {CHUNK} bytes")
    return value


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ProtocolError(f"{name} must be true or false")
    return value


def _map(name: str, value: Any) -> dict[Any, Any]:
    if not isinstance(value, dict):
        raise ProtocolError(f"{name} must be a map")
    return value


def _optional(check: Validator) -> Validator:
    """``check``, or nil."""
    def optional(name: str, value: Any) -> Any:
        return None if value is None else check(name, value)

    return optional


def _each(check: Validator, limit: int, what: str, into: type = tuple) -> Validator:
    """A list of at most ``limit`` values that each pass ``check`` (named by index), decoded ``into`` a tuple."""
    def each(name: str, value: Any) -> Any:
        if not isinstance(value, list) or len(value) > limit:
            raise ProtocolError(f"{name} must be a list of at most {limit} {what}")
        return into(check(f"{name}[{i}]", entry) for i, entry in enumerate(value))

    return each


Spec = dict[str, Validator]


def _fields(name: str, value: Any, spec: Spec) -> dict[str, Any]:
    """The decoded fields of a record at ``name``: a map of exactly ``spec``'s fields, each checked."""
    if not isinstance(value, dict):
        raise ProtocolError(f"{name} must be a map")
    missing = [field for field in spec if field not in value]
    if missing:
        raise ProtocolError(f"{name}.{missing[0]} is missing")
    if len(value) != len(spec):  # counted, not named: their names are the peer's text
        raise ProtocolError(f"{name} has {len(value) - len(spec)} unknown field(s)")
    return {field: check(f"{name}.{field}", value[field]) for field, check in spec.items()}


def _record(cls: type, spec: Spec) -> Validator:
    """A map of exactly ``spec``'s fields, decoded as ``cls`` made of them."""
    def record(name: str, value: Any) -> Any:
        return cls(**_fields(name, value, spec))

    return record


# -- work items: the records of engine/work.py, declared field by field like the messages below -----

def _setting(value: Any) -> bool:
    """Whether ``value`` can be a hyperparameter's: nil, true or false, a finite number, or short text."""
    if isinstance(value, float):
        return math.isfinite(value)
    return value is None or isinstance(value, bool | int) or isinstance(value, str) and len(value) <= 256


def _hyperparameters(name: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict) or len(value) > 64:
        raise ProtocolError(f"{name} must be a map of at most 64 hyperparameters")
    for key, setting in value.items():
        if not isinstance(key, str) or not _KEY.fullmatch(key):
            raise ProtocolError(f"{name} has an invalid hyperparameter name (names are 1-64 of A-Z a-z 0-9 _ . : / -)")
        if not _setting(setting):
            raise ProtocolError(f"{name}.{key} must be nil, true, false, a finite number or text of at most 256 "
                                "characters")
    return value


_tower = _each(_text(256), 4096, "block names")
_ensemble = _record(Ensemble, {"members": _each(_integer(), 4096, "trial ids"),
                               "combiner": _choice(*Ensemble.COMBINERS)})


def _architecture(name: str, value: Any) -> Architecture:
    """A tower's block names, or an ensemble's map."""
    if isinstance(value, dict):
        return _ensemble(name, value)
    if not isinstance(value, list):
        raise ProtocolError(f"{name} must be a list of block names or an ensemble's map")
    return _tower(name, value)


def _teacher(name: str, value: Any) -> Teacher:
    fields = _fields(name, value, TEACHER)
    if fields.pop("id") != fields["trial"]:
        raise ProtocolError(f"{name}.id must be the same as {name}.trial")
    return Teacher(**fields)


def _work_item(name: str, value: Any) -> WorkItem:
    fields = _fields(name, value, WORK_ITEM)
    kind = fields["kind"]
    ensemble = kind is Kind.ENSEMBLE
    if ensemble != isinstance(fields["architecture"], Ensemble):
        what = "an ensemble's members and combiner" if ensemble else "a list of block names"
        raise ProtocolError(f"{name}.architecture must be {what}, as its kind is {kind}")
    if ensemble != (fields["members"] is not None):
        raise ProtocolError(f"{name}.members must be {'a list' if ensemble else 'nil'}, as its kind is {kind}")
    if ensemble and (fields["until"] is not None or fields["resume"] is not None):
        raise ProtocolError(f"{name}.until and {name}.resume must be nil, as its kind is {kind}")
    resume, until = fields["resume"], fields["until"]
    if resume is not None and until is not None and until <= resume.epoch:
        raise ProtocolError(f"{name}.until ({until}) must come after {name}.resume.epoch ({resume.epoch})")
    return WorkItem(**fields)


SOURCE: Spec = {"trial": _integer(), "architecture": _tower, "hyperparameters": _hyperparameters,
                "weights": _optional(_digest), "weight": _fraction}
INHERIT: Spec = {"mode": _choice(*Inherit.MODES), "sources": _each(_record(Source, SOURCE), 4096, "sources")}
#: ``id`` repeats ``trial``, as CandidateProposed records the teacher.
TEACHER: Spec = {"kind": _choice(*Teacher.KINDS), "id": _integer(), "loss": _choice(*Teacher.LOSSES),
                 "temperature": _positive, "weight": _fraction, "trial": _integer(), "architecture": _architecture,
                 "hyperparameters": _hyperparameters, "outputs": _optional(_digest)}
MEMBER: Spec = {"trial": _integer(), "architecture": _tower, "hyperparameters": _hyperparameters,
                "outputs": _optional(_digest)}
#: Where a promoted tower resumes: after ``epoch`` epochs, from its checkpoint (a digest).
RESUME: Spec = {"epoch": _integer(1, 1_000_000), "checkpoint": _digest}
#: A work item, field by field; a tower's architecture is a list of names and its members nil, an ensemble's
#: architecture its members and combiner, and its members a list.
WORK_ITEM: Spec = {
    "lease": _integer(), "trial": _integer(), "key": _text(4096), "kind": _enum(Kind), "architecture": _architecture,
    "hyperparameters": _hyperparameters, "parent": _optional(_integer()), "parent_artifacts": _artifacts,
    "seed": _integer(-(2**63), 2**64 - 1), "inherit": _optional(_record(Inherit, INHERIT)),
    "teacher": _optional(_teacher), "members": _optional(_each(_record(Member, MEMBER), 4096, "members")),
    "needs": _each(_digest, 4096, "digests"), "until": _optional(_integer(1, 1_000_000)),
    "resume": _optional(_record(Resume, RESUME)),
}

MAX_EPOCHS = 1000  # epochs in one progress message: a reconnected trainer sends its whole curve again
#: One reported epoch: its number (from 1) and the validation metrics after it.
EPOCH: Spec = {"epoch": _integer(1, 1_000_000), "metrics": _metrics}

MAX_RANK = 4  # axes of one example a tower takes (an image's height, width and channels: 3)


def _axes(name: str, value: Any) -> tuple[int, ...]:
    axes = _each(_integer(1, 1 << 24), MAX_RANK, "axes")(name, value)
    if not axes:
        raise ProtocolError(f"{name} must hold at least one axis")
    return axes


#: What towers are built on (engine/state.py TowerInput).
TOWER_INPUT: Spec = {"shape": _axes, "outputs": _integer(1, 1 << 20),
                     "tokens": _integer(0, 1 << 31), "task": _choice("classification", "regression")}

#: What a trainer may send, field by field. Every field is required.
TRAINER_MESSAGES: dict[str, Spec] = {
    "hello": {"name": _text(128), "host": _text(255), "pid": _integer(), "leases": _integers(MAX_SLOTS),
              "secret": _secret},
    "ready": {"slots": _integer(1, MAX_SLOTS)},
    "data": {"input": _record(TowerInput, TOWER_INPUT)},
    "heartbeat": {"leases": _integers(MAX_SLOTS)},
    "progress": {"lease": _integer(), "epochs": _each(_record(Epoch, EPOCH), MAX_EPOCHS, "epochs", into=list)},
    "result": {"lease": _integer(), "metrics": _metrics, "artifacts": _artifacts, "inherited": _names,
               "slots": _integer(0, MAX_SLOTS)},
    "fail": {"lease": _integer(), "reason": _text(4000), "blame": _enum(Blame), "metrics": _metrics,
             "slots": _integer(0, MAX_SLOTS)},
    "blob_put": {"digest": _digest, "offset": _integer(0, MAX_BLOB), "total": _integer(0, MAX_BLOB), "data": _chunk},
    "blob_get": {"digest": _digest, "offset": _integer(0, MAX_BLOB)},
    "bye": {},
}

#: What the engine sends.
ENGINE_MESSAGES: dict[str, Spec] = {
    "welcome": {"run": _text(64), "name": _text(128), "config": _map, "bundle": _optional(_digest),
                "heartbeat": _interval, "lease_timeout": _interval},
    "work": {"items": _each(_work_item, MAX_SLOTS, "work items", into=list), "retry": _finite, "done": _flag},
    "ack": {"lease": _integer(), "accepted": _flag, "reason": _text(4000)},
    "beat": {"unknown": _integers(MAX_SLOTS)},
    "stop": {"lease": _integer()},
    "blob_ok": {"digest": _digest, "have": _integer(0, MAX_BLOB), "complete": _flag},
    "blob": {"digest": _digest, "offset": _integer(0, MAX_BLOB), "total": _integer(0, MAX_BLOB), "data": _chunk},
    "error": {"code": _text(32), "message": _text(MAX_ERROR)},
}

_ALL = {**TRAINER_MESSAGES, **ENGINE_MESSAGES}


def encode(kind: str, **fields: Any) -> bytes:
    """One frame of message ``kind``; the fields must be exactly the ones its spec lists."""
    spec = _ALL[kind]
    if set(fields) != set(spec):
        raise ProtocolError(f"{kind} takes fields {sorted(spec)}, got {sorted(fields)}")
    return msgpack.packb({"p": PROTOCOL, "t": kind, **fields})


def error(code: str, message: str) -> bytes:
    """An error reply: a code and a message cut to ``MAX_ERROR`` characters."""
    if len(message) > MAX_ERROR:
        message = message[: MAX_ERROR - 3] + "..."
    return encode("error", code=code[:32], message=message)


def proof_of(secret: str, key: str = "") -> str:
    """What the engine keeps of a trainer's secret and CurveZMQ public key (and records with its
    leases): half a sha256. A secret that leaked proves nothing from another key."""
    return hashlib.sha256(f"{key}:{secret}".encode()).hexdigest()[:32]


def _too_deep(value: Any, limit: int) -> bool:
    """Whether containers nest more than ``limit`` deep; iterative, and it stops at the first too deep."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


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
    if _too_deep(message, MAX_DEPTH):
        raise ProtocolError(f"a message may nest at most {MAX_DEPTH} deep")
    version = message.pop("p", None)
    if version != PROTOCOL:
        said = version if isinstance(version, int) and not isinstance(version, bool) and 0 <= version < 1000 \
            else "missing" if version is None else "not a version"
        raise ProtocolError(f"protocol version {said} is not supported (this engine speaks {PROTOCOL})",
                            code="version")
    kind = message.pop("t", None)
    spec = messages.get(kind) if isinstance(kind, str) else None
    if spec is None:
        raise ProtocolError("unknown message type")
    if set(message) != set(spec):
        missing = sorted(set(spec) - set(message))
        unknown = len(set(message) - set(spec))  # counted, not named: their names are the peer's text
        raise ProtocolError(f"{kind} takes fields {sorted(spec)}" + (f"; missing {missing}" if missing else "")
                            + (f"; {unknown} unknown" if unknown else ""))
    for name, check in spec.items():
        message[name] = check(f"{kind}.{name}", message[name])
    return kind, message
