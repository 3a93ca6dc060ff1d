"""The protocol: every message validated; nothing a peer sends can crash the decoder."""

from __future__ import annotations

import contextlib

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import protocol
from engine.protocol import ENGINE_MESSAGES, TRAINER_MESSAGES, ProtocolError, decode, encode

DIGEST = "ab" * 32
EXAMPLES = {
    "hello": {"name": "t1", "host": "h", "pid": 12, "leases": [3, 4], "secret": "0f" * 16},
    "ready": {"slots": 2},
    "heartbeat": {"leases": [1]},
    "result": {"lease": 5, "metrics": {"val_acc": 91.5, "params": 12}, "artifacts": {"weights": DIGEST},
               "inherited": ["b0_dense_64_dense"], "slots": 1},
    "fail": {"lease": 5, "reason": "NaN loss", "blame": "candidate", "slots": 0},
    "blob_put": {"digest": DIGEST, "offset": 0, "total": 3, "data": b"abc"},
    "blob_get": {"digest": DIGEST, "offset": 0},
    "bye": {},
}


@pytest.mark.parametrize("kind", sorted(TRAINER_MESSAGES))
def test_every_trainer_message_round_trips(kind: str) -> None:
    assert decode(encode(kind, **EXAMPLES[kind]), TRAINER_MESSAGES) == (kind, EXAMPLES[kind])


def test_engine_messages_are_not_accepted_from_trainers() -> None:
    frame = encode("work", items=[], retry=0.2, done=False)
    assert decode(frame, ENGINE_MESSAGES)[0] == "work"
    with pytest.raises(ProtocolError, match="unknown message type"):
        decode(frame, TRAINER_MESSAGES)


@pytest.mark.parametrize(("message", "match"), [
    ({"p": 1, "t": "ready", "slots": 1}, "protocol version 1"),
    ({"t": "ready", "slots": 1}, "protocol version missing"),
    ({"p": 3, "t": "ready"}, "takes fields"),
    ({"p": 3, "t": "ready", "slots": 1, "extra": 0}, "takes fields"),
    ({"p": 3, "t": "ready", "slots": 0}, "ready.slots"),
    ({"p": 3, "t": "ready", "slots": True}, "ready.slots"),
    ({"p": 3, "t": "result", "lease": 1, "metrics": {"a b": 1}, "artifacts": {}, "inherited": [], "slots": 0},
     "metric name"),
    ({"p": 3, "t": "result", "lease": 1, "metrics": {"acc": "high"}, "artifacts": {}, "inherited": [], "slots": 0},
     "number"),
    ({"p": 3, "t": "result", "lease": 1, "metrics": {}, "artifacts": {"w": "zz"}, "inherited": [], "slots": 0},
     "digest"),
    ({"p": 3, "t": "result", "lease": 1, "metrics": {}, "artifacts": {}, "inherited": [7], "slots": 0},
     "layer names"),
    ({"p": 3, "t": "hello", "name": "x" * 500, "host": "h", "pid": 1, "leases": [], "secret": "0" * 32}, "hello.name"),
    ({"p": 3, "t": "nonsense"}, "unknown message type"),
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
        decode(msgpack.packb({"p": protocol.PROTOCOL, "t": "blob_put", **big}), TRAINER_MESSAGES)


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
    message = {"p": protocol.PROTOCOL, "t": kind, **EXAMPLES[kind]}
    for field in data.draw(st.lists(st.sampled_from(sorted(EXAMPLES[kind]) or ["x"]), max_size=3)):
        message[field] = data.draw(values)
    with contextlib.suppress(ProtocolError):
        decode(msgpack.packb(message), TRAINER_MESSAGES)
