"""The protocol: every message validated; nothing a peer sends can crash the decoder. (The work items inside
`work` messages: test_work_items.py.)"""

from __future__ import annotations

import contextlib
import math

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wire import (
    DIGEST,
    HOSTILE,
    ITEMS,
    P,
    assert_short_refusal,
)

from engine import protocol
from engine.protocol import ENGINE_MESSAGES, TRAINER_MESSAGES, ProtocolError, decode, encode
from engine.state import Blame

EXAMPLES = {
    "hello": {"name": "t1", "host": "h", "pid": 12, "leases": [3, 4], "secret": "0f" * 16},
    "ready": {"slots": 2},
    "data": {"input": {"shape": [51, 10], "outputs": 12, "tokens": 0, "task": "classification"}},
    "heartbeat": {"leases": [1]},
    "progress": {"lease": 5, "epochs": [{"epoch": 1, "metrics": {"val_acc": 40.5}},
                                        {"epoch": 2, "metrics": {"val_acc": 61.0, "val_loss": 0.8}}]},
    "result": {"lease": 5, "metrics": {"val_acc": 91.5, "params": 12}, "artifacts": {"weights": DIGEST},
               "inherited": ["b0_dense_64_dense"], "slots": 1},
    "fail": {"lease": 5, "reason": "NaN loss", "blame": "candidate", "metrics": {}, "slots": 0},
    "blob_put": {"digest": DIGEST, "offset": 0, "total": 3, "data": b"abc"},
    "blob_get": {"digest": DIGEST, "offset": 0},
    "bye": {},
}


@pytest.mark.parametrize("kind", sorted(TRAINER_MESSAGES))
def test_every_trainer_message_round_trips(kind: str) -> None:
    got, fields = decode(encode(kind, **EXAMPLES[kind]), TRAINER_MESSAGES)
    if kind == "progress":  # epochs decode as Epoch records
        fields = {**fields, "epochs": [epoch.as_dict() for epoch in fields["epochs"]]}
    if kind == "data":  # and a description as a TowerInput
        fields = {"input": fields["input"].as_dict()}
    assert (got, fields) == (kind, EXAMPLES[kind])


def test_blame_is_decoded_as_the_enum() -> None:
    _, fields = decode(encode("fail", **EXAMPLES["fail"]), TRAINER_MESSAGES)
    assert fields["blame"] is Blame.CANDIDATE
    with pytest.raises(ProtocolError, match=r"fail.blame must be one of \['candidate', 'infrastructure'\]"):
        decode(encode("fail", **{**EXAMPLES["fail"], "blame": "weather"}), TRAINER_MESSAGES)


def test_engine_messages_are_not_accepted_from_trainers() -> None:
    frame = encode("work", items=[], retry=0.2, done=False)
    assert decode(frame, ENGINE_MESSAGES)[0] == "work"
    with pytest.raises(ProtocolError, match="unknown message type"):
        decode(frame, TRAINER_MESSAGES)


@pytest.mark.parametrize(("message", "match"), [
    ({"p": 1, "t": "ready", "slots": 1}, "protocol version 1"),
    ({"t": "ready", "slots": 1}, "protocol version missing"),
    ({"p": P, "t": "ready"}, "takes fields"),
    ({"p": P, "t": "ready", "slots": 1, "extra": 0}, "takes fields"),
    ({"p": P, "t": "ready", "slots": 0}, "ready.slots"),
    ({"p": P, "t": "ready", "slots": True}, "ready.slots"),
    ({"p": P, "t": "result", "lease": 1, "metrics": {"a b": 1}, "artifacts": {}, "inherited": [], "slots": 0},
     "metric name"),
    ({"p": P, "t": "result", "lease": 1, "metrics": {"acc": "high"}, "artifacts": {}, "inherited": [], "slots": 0},
     "number"),
    ({"p": P, "t": "result", "lease": 1, "metrics": {}, "artifacts": {"w": "zz"}, "inherited": [], "slots": 0},
     "digest"),
    ({"p": P, "t": "result", "lease": 1, "metrics": {}, "artifacts": {}, "inherited": [7], "slots": 0},
     "layer names"),
    ({"p": P, "t": "hello", "name": "x" * 500, "host": "h", "pid": 1, "leases": [], "secret": "0" * 32}, "hello.name"),
    ({"p": P, "t": "data", "input": {"shape": [], "outputs": 2, "tokens": 0, "task": "classification"}},
     "data.input.shape must hold at least one axis"),
    ({"p": P, "t": "data", "input": {"shape": [8, 0], "outputs": 2, "tokens": 0, "task": "classification"}},
     r"data.input.shape\[1\]"),
    ({"p": P, "t": "data", "input": {"shape": [8], "outputs": 2, "tokens": 0, "task": "ranking"}},
     "data.input.task must be one of"),
    ({"p": P, "t": "nonsense"}, "unknown message type"),
    ([1, 2, 3], "must be a msgpack map"),
])
def test_invalid_messages_are_refused_with_a_reason(message, match: str) -> None:
    with pytest.raises(ProtocolError, match=match) as caught:
        decode(msgpack.packb(message), TRAINER_MESSAGES)
    assert caught.value.code == ("version" if "protocol version" in match else "invalid")


def test_oversized_frames_and_chunks_are_refused() -> None:
    with pytest.raises(ProtocolError, match="exceeds"):
        decode(b"\x00" * (protocol.MAX_FRAME + 1), TRAINER_MESSAGES)
    big = {"digest": DIGEST, "offset": 0, "total": protocol.CHUNK + 1, "data": b"x" * (protocol.CHUNK + 1)}
    with pytest.raises(ProtocolError, match="at most"):
        decode(msgpack.packb({"p": P, "t": "blob_put", **big}), TRAINER_MESSAGES)


@settings(max_examples=300, deadline=None)
@given(frame=st.binary(max_size=256))
def test_random_bytes_only_ever_raise_protocol_errors(frame: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        decode(frame, TRAINER_MESSAGES)


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(sorted(TRAINER_MESSAGES)), data=st.data())
def test_mangled_fields_only_ever_raise_protocol_errors(kind: str, data) -> None:
    values = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.floats(), st.text(max_size=20),
                       st.binary(max_size=20), st.lists(st.integers(-5, 2**40), max_size=3),
                       st.dictionaries(st.text(max_size=5), st.integers(-5, 5), max_size=3))
    message = {"p": P, "t": kind, **EXAMPLES[kind]}
    for field in data.draw(st.lists(st.sampled_from(sorted(EXAMPLES[kind]) or ["x"]), max_size=3)):
        message[field] = data.draw(values)
    with contextlib.suppress(ProtocolError):
        decode(msgpack.packb(message), TRAINER_MESSAGES)


# -- what the engine sends: a trainer decodes it with the same care -------------------------------

ENGINE_EXAMPLES = {
    "welcome": {"run": "0f" * 16, "name": "t1-2", "config": {"search": {"trials": 3, "metric": "val_acc"}},
                "bundle": "ab" * 32, "heartbeat": 2.0, "lease_timeout": 30},
    "work": {"items": [item.to_message() for item in ITEMS], "retry": 0.2, "done": False},
    "ack": {"lease": 5, "accepted": True, "reason": "recorded"},
    "beat": {"unknown": [7, 9]},
    "stop": {"lease": 5},
    "blob_ok": {"digest": DIGEST, "have": 3, "complete": False},
    "blob": {"digest": DIGEST, "offset": 0, "total": 3, "data": b"abc"},
    "error": {"code": "invalid", "message": "ready.slots must be an integer in [1, 64]"},
}


def test_the_engine_examples_cover_every_engine_message() -> None:
    assert set(ENGINE_EXAMPLES) == set(ENGINE_MESSAGES)
    assert all(set(ENGINE_EXAMPLES[kind]) == set(spec) for kind, spec in ENGINE_MESSAGES.items())


#: What a trainer reads where it differs from what was sent: work items, as their typed records.
DECODED = {"work": {**ENGINE_EXAMPLES["work"], "items": ITEMS}}


@pytest.mark.parametrize("kind", sorted(ENGINE_MESSAGES))
def test_every_engine_message_round_trips(kind: str) -> None:
    expected = DECODED.get(kind, ENGINE_EXAMPLES[kind])
    assert decode(encode(kind, **ENGINE_EXAMPLES[kind]), ENGINE_MESSAGES) == (kind, expected)


def raw_map(fields: dict[object, bytes]) -> bytes:
    """A msgpack map whose values are given already encoded (to nest deeper than msgpack's packer will)."""
    head = bytes([0x80 | len(fields)]) if len(fields) < 16 else b"\xde" + len(fields).to_bytes(2, "big")
    return head + b"".join(msgpack.packb(key) + value for key, value in fields.items())


def nested(depth: int, opener: bytes) -> bytes:
    return opener * depth + b"\xc0"  # [[...[nil]...]] (b"\x91") or {"k": {"k": ... nil}} (b"\x81\xa1k")


# Values of every msgpack type, nested (below, at and far past MAX_DEPTH) and huge, already encoded.
LEAVES = (st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=20)
          | st.binary(max_size=20))
ENCODED = st.one_of(
    LEAVES.map(msgpack.packb),
    st.recursive(LEAVES, lambda inner: st.lists(inner, max_size=4)
                 | st.dictionaries(st.text(max_size=4) | st.integers(-3, 3), inner, max_size=4),
                 max_leaves=25).map(msgpack.packb),
    (st.text(min_size=201, max_size=5000) | st.binary(min_size=201, max_size=5000)
     | st.lists(st.integers(-(2**63), 2**64 - 1), min_size=50, max_size=500)).map(msgpack.packb),  # long
    st.integers(1, protocol.MAX_DEPTH + 2).map(lambda depth: nested(depth, b"\x91")),
    st.integers(1, 2000).map(lambda depth: nested(depth, b"\x81\xa1k")),
    st.sampled_from([
        msgpack.packb(2**64 - 1), msgpack.packb(-(2**63)), msgpack.packb(math.nan), msgpack.packb(-math.inf),
        msgpack.packb("x" * 300_000), msgpack.packb(b"\x00" * (protocol.CHUNK + 1)), msgpack.packb(list(range(4096))),
        msgpack.packb(list(range(4097))), msgpack.packb({str(i): i for i in range(4096)}),
        msgpack.packb([[[]] * 64] * 64), msgpack.packb({"\x00" * 100_000: 1.0}), msgpack.packb({1: 2, None: 3}),
        msgpack.packb(msgpack.ExtType(1, b"x")), msgpack.packb(msgpack.Timestamp(1, 0), datetime=False),
        b"\xc1", b"\xdd\xff\xff\xff\xff", b"\x92\x01",  # a reserved byte, an array that never comes, one cut short
    ]),
)
EXTRA_KEYS = st.text(max_size=8) | st.integers(-5, 5) | st.binary(max_size=4) | st.none() | st.just("x" * 1000)


@settings(max_examples=300, deadline=None)
@given(frame=st.binary(max_size=256))
def test_random_bytes_from_the_engine_only_ever_raise_protocol_errors(frame: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        decode(frame, ENGINE_MESSAGES)


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(sorted(ENGINE_MESSAGES)), data=st.data())
def test_damaged_engine_frames_only_ever_raise_protocol_errors(kind: str, data) -> None:
    """Valid frames cut short, with bytes overwritten or inserted: the decoder refuses them or reads a valid
    message, never anything else."""
    frame = bytearray(encode(kind, **ENGINE_EXAMPLES[kind]))
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(frame)))
        action = data.draw(st.sampled_from(["cut", "overwrite", "insert"]))
        byte = data.draw(st.integers(0, 255))
        if action == "cut":
            del frame[at:]
        elif action == "overwrite" and at < len(frame):
            frame[at] = byte
        else:
            frame.insert(at, byte)
    try:
        decoded_kind, fields = decode(bytes(frame), ENGINE_MESSAGES)
    except ProtocolError as exc:
        assert_short_refusal(exc)
    else:
        assert set(fields) == set(ENGINE_MESSAGES[decoded_kind])


def engine_frame(kind: str, **replaced: bytes) -> dict[object, bytes]:
    """The fields of a valid engine message of ``kind``, encoded, with some replaced by raw encoded values."""
    fields: dict[object, bytes] = {"p": msgpack.packb(protocol.PROTOCOL), "t": msgpack.packb(kind)}
    fields.update({name: msgpack.packb(value) for name, value in ENGINE_EXAMPLES[kind].items()})
    fields.update(replaced)
    return fields


def decodes_or_refuses_briefly(fields: dict[object, bytes]) -> None:
    """A ProtocolError of a few words, or a message of exactly its declared fields; nothing else."""
    try:
        kind, message = decode(raw_map(fields), ENGINE_MESSAGES)
    except ProtocolError as exc:
        assert_short_refusal(exc)
    else:
        assert set(message) == set(ENGINE_MESSAGES[kind])


@settings(max_examples=400, deadline=None)
@given(kind=st.sampled_from(sorted(ENGINE_MESSAGES)), data=st.data())
def test_mangled_engine_fields_only_ever_raise_protocol_errors(kind: str, data) -> None:
    """One or two declared fields replaced by values of any type, nested or huge: each reaches its validator."""
    names = data.draw(st.lists(st.sampled_from(sorted(ENGINE_MESSAGES[kind])), min_size=1, max_size=2, unique=True))
    decodes_or_refuses_briefly(engine_frame(kind, **{name: data.draw(ENCODED) for name in names}))


@settings(max_examples=200, deadline=None)
@given(kind=st.sampled_from(sorted(ENGINE_MESSAGES)), data=st.data())
def test_engine_frames_of_the_wrong_shape_only_ever_raise_protocol_errors(kind: str, data) -> None:
    """The version or type mangled, fields dropped, fields nobody declared added (keys of any type)."""
    fields = engine_frame(kind)
    for name in data.draw(st.lists(st.sampled_from(sorted(fields, key=str)), max_size=2, unique=True)):
        if data.draw(st.booleans()):
            del fields[name]
        else:
            fields[name] = data.draw(ENCODED)
    for key in data.draw(st.lists(EXTRA_KEYS, max_size=2)):
        fields[key] = data.draw(ENCODED)
    decodes_or_refuses_briefly(fields)


@pytest.mark.parametrize("kind", sorted(ENGINE_MESSAGES))
def test_every_engine_field_takes_or_briefly_refuses_every_hostile_value(kind: str) -> None:
    """Every field of every engine message, with each value of every type, nested and huge (the fuzz
    tests above draw these at random; here each one is tried)."""
    deep = [nested(depth, opener) for depth in (protocol.MAX_DEPTH - 2, protocol.MAX_DEPTH - 1, 1000)
            for opener in (b"\x91", b"\x81\xa1k")]
    for name in ENGINE_MESSAGES[kind]:
        for value in [*(msgpack.packb(v) for v in HOSTILE), *deep]:
            decodes_or_refuses_briefly(engine_frame(kind, **{name: value}))


# One malformed frame per engine message and way to get it wrong: the refusal names the field.
WRONG_TYPES = {
    "welcome": ("heartbeat", "two seconds"), "work": ("done", 1), "ack": ("lease", True),
    "beat": ("unknown", [1, "two"]), "blob_ok": ("digest", "AB" * 32), "blob": ("data", "abc"),
    "error": ("message", 12),
}
MISSING = {"welcome": "config", "work": "items", "ack": "reason", "beat": "unknown", "blob_ok": "have",
           "blob": "total", "error": "code"}
MALFORMED = [
    *[pytest.param(kind, {**ENGINE_EXAMPLES[kind], field: value}, field, id=f"{kind}-wrong-{field}")
      for kind, (field, value) in WRONG_TYPES.items()],
    *[pytest.param(kind, {k: v for k, v in ENGINE_EXAMPLES[kind].items() if k != field}, field,
                   id=f"{kind}-missing-{field}") for kind, field in MISSING.items()],
    # An undeclared field is refused by naming the fields the message takes (the stranger's name is the
    # peer's text, as long as it likes, so it is not repeated).
    *[pytest.param(kind, {**ENGINE_EXAMPLES[kind], "x" * 300: 1}, None, id=f"{kind}-extra-field")
      for kind in sorted(ENGINE_MESSAGES)],
]


@pytest.mark.parametrize(("kind", "fields", "field"), MALFORMED)
def test_malformed_engine_messages_are_refused_naming_the_field(kind: str, fields: dict, field: str | None) -> None:
    with pytest.raises(ProtocolError) as caught:
        decode(msgpack.packb({"p": P, "t": kind, **fields}), ENGINE_MESSAGES)
    message = str(caught.value)
    assert caught.value.code == "invalid"
    assert_short_refusal(caught.value)
    if field is None:  # an extra field: every field it should have had is named
        assert all(repr(name) in message for name in ENGINE_MESSAGES[kind]), message
    elif field in MISSING.values() and field not in fields:
        assert message.startswith(f"{kind} takes fields") and repr(field) in message, message
    else:
        assert f"{kind}.{field}" in message, message
        wrong = fields[field]
        assert not isinstance(wrong, str) or wrong not in message, "the refusal repeats the value it got"


def test_engine_messages_nest_up_to_max_depth() -> None:
    """The frame's map is depth 1, ``items`` 2: containers nested past MAX_DEPTH are refused before any field is
    looked at; up to it, the fields are checked. A work item's inherited sources nest deepest, 7 levels."""
    def work(depth: int) -> bytes:
        return raw_map({"p": msgpack.packb(protocol.PROTOCOL), "t": msgpack.packb("work"),
                        "items": nested(depth, b"\x91"), "retry": msgpack.packb(0.2), "done": msgpack.packb(False)})

    with pytest.raises(ProtocolError, match=r"^work.items\[0\] must be a map$"):
        decode(work(protocol.MAX_DEPTH - 1), ENGINE_MESSAGES)
    with pytest.raises(ProtocolError, match=f"nest at most {protocol.MAX_DEPTH} deep"):
        decode(work(protocol.MAX_DEPTH), ENGINE_MESSAGES)
    example = msgpack.unpackb(encode("work", **ENGINE_EXAMPLES["work"]))
    assert protocol._too_deep(example, 7) is False and protocol._too_deep(example, 6) is True
    assert protocol.MAX_DEPTH > 7


