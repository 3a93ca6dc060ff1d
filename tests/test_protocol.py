"""The protocol: every message validated; nothing a peer sends can crash the decoder."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import tower_config

from engine import protocol
from engine.protocol import ENGINE_MESSAGES, TRAINER_MESSAGES, ProtocolError, decode, encode
from engine.scheduler import Scheduler
from engine.state import COMPLETED, ENSEMBLE, QUEUED, TOWER, Blame, Lease, Resume, State, Trial
from engine.work import Ensemble, Inherit, Member, Source, Teacher, WorkItem

DIGEST = "ab" * 32
P = protocol.PROTOCOL
EXAMPLES = {
    "hello": {"name": "t1", "host": "h", "pid": 12, "leases": [3, 4], "secret": "0f" * 16},
    "ready": {"slots": 2},
    "heartbeat": {"leases": [1]},
    "progress": {"lease": 5, "epochs": [{"epoch": 1, "metrics": {"val_acc": 40.5}},
                                        {"epoch": 2, "metrics": {"val_acc": 61.0, "val_loss": 0.8}}]},
    "result": {"lease": 5, "metrics": {"val_acc": 91.5, "params": 12}, "artifacts": {"weights": DIGEST},
               "inherited": ["b0_dense_64_dense"], "slots": 1},
    "fail": {"lease": 5, "reason": "NaN loss", "blame": "candidate", "slots": 0},
    "blob_put": {"digest": DIGEST, "offset": 0, "total": 3, "data": b"abc"},
    "blob_get": {"digest": DIGEST, "offset": 0},
    "bye": {},
}


@pytest.mark.parametrize("kind", sorted(TRAINER_MESSAGES))
def test_every_trainer_message_round_trips(kind: str) -> None:
    got, fields = decode(encode(kind, **EXAMPLES[kind]), TRAINER_MESSAGES)
    if kind == "progress":  # epochs decode as Epoch records
        fields = {**fields, "epochs": [epoch.as_dict() for epoch in fields["epochs"]]}
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

WEIGHTS_1, WEIGHTS_2, OUTPUTS_3, OUTPUTS_4 = ("1" * 64), ("2" * 64), ("3" * 64), ("4" * 64)
CHECKPOINT_5 = "5" * 64
HP = {"learning_rate": 0.003, "dropout": 0.1, "batch_size": 32, "optimizer": "adam"}
#: A tower that starts from two trials' averaged weights and learns from the best ensemble.
TOWER_ITEM = WorkItem(
    lease=12, trial=9, key="conv1d_16_k3 > dense_32", kind=TOWER, architecture=("conv1d_16_k3", "dense_32"),
    hyperparameters=HP, seed=2**62 + 5, parent=1, parent_artifacts={"weights": WEIGHTS_1, "outputs": OUTPUTS_4},
    inherit=Inherit("average", (Source(1, ("conv1d_16_k3",), HP, WEIGHTS_1, 0.75),
                                Source(2, ("conv1d_16_k3", "dense_32"), {**HP, "dropout": 0.0}, WEIGHTS_2, 0.25))),
    teacher=Teacher(kind="ensemble", trial=3, loss="soft", temperature=4.0, weight=0.5,
                    architecture=Ensemble((1, 2), "weighted"), hyperparameters={}, outputs=OUTPUTS_3),
    needs=(WEIGHTS_1, WEIGHTS_2, OUTPUTS_3, CHECKPOINT_5), until=8, resume=Resume(2, CHECKPOINT_5),
)
#: An ensemble step: three trained towers' outputs, combined.
ENSEMBLE_ITEM = WorkItem(
    lease=13, trial=10, key="ensemble 1+2+4 (average)", kind=ENSEMBLE, architecture=Ensemble((1, 2, 4), "average"),
    hyperparameters={}, seed=7, members=(Member(1, ("conv1d_16_k3",), HP, OUTPUTS_3),
                                         Member(2, ("conv1d_16_k3", "dense_32"), HP, OUTPUTS_4),
                                         Member(4, ("dense_32",), HP, None)),
    needs=(OUTPUTS_3, OUTPUTS_4),
)
#: A tower trained from scratch: no parent, nothing inherited, no teacher, nothing needed.
PLAIN_ITEM = WorkItem(lease=14, trial=11, key="nor_conv_3x3|skip_connect", kind=TOWER,
                      architecture=("nor_conv_3x3", "skip_connect"), hyperparameters={}, seed=0)
ITEMS = [TOWER_ITEM, ENSEMBLE_ITEM, PLAIN_ITEM]

ENGINE_EXAMPLES = {
    "welcome": {"run": "0f" * 16, "name": "t1-2", "config": {"search": {"trials": 3, "metric": "val_acc"}},
                "heartbeat": 2.0, "lease_timeout": 30},
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


# -- work items: typed records, on the wire field by field -----------------------------------------

def decoded_items(items: list[WorkItem]) -> list[WorkItem]:
    """What a trainer receives for ``items`` sent in one work message."""
    frame = encode("work", items=[item.to_message() for item in items], retry=1.0, done=False)
    return decode(frame, ENGINE_MESSAGES)[1]["items"]


@pytest.mark.parametrize("item", ITEMS, ids=["tower-inherit-teacher", "ensemble", "plain-tower"])
def test_a_work_item_round_trips_as_itself(item: WorkItem) -> None:
    [received] = decoded_items([item])
    assert received == item and type(received) is WorkItem
    assert received.to_message() == item.to_message(), "the same map both ways"
    with pytest.raises(dataclasses.FrozenInstanceError):
        received.seed = 1  # type: ignore[misc]


def test_work_items_decode_as_typed_records() -> None:
    tower, ensemble, plain = decoded_items(ITEMS)
    assert tower.kind is TOWER and tower.architecture == ("conv1d_16_k3", "dense_32")
    assert [(s.trial, s.weights, s.weight) for s in tower.inherit.sources] == [(1, WEIGHTS_1, 0.75),
                                                                               (2, WEIGHTS_2, 0.25)]
    assert isinstance(tower.teacher.architecture, Ensemble) and tower.teacher.architecture.members == (1, 2)
    assert (tower.teacher.loss, tower.teacher.outputs, tower.needs) == ("soft", OUTPUTS_3, TOWER_ITEM.needs)
    assert ensemble.kind is ENSEMBLE and ensemble.architecture.combiner == "average"
    assert [m.outputs for m in ensemble.members] == [OUTPUTS_3, OUTPUTS_4, None]
    assert (plain.inherit, plain.teacher, plain.members, plain.parent, plain.needs) == (None, None, None, None, ())
    message = TOWER_ITEM.to_message()
    assert message["teacher"]["id"] == message["teacher"]["trial"] == 3, "the wire repeats the teacher's trial as id"
    assert list(message) == ["lease", "trial", "key", "kind", "architecture", "hyperparameters", "parent",
                             "parent_artifacts", "seed", "inherit", "teacher", "members", "needs", "until", "resume"]


def test_the_schedulers_work_items_are_what_it_recorded_and_round_trip() -> None:
    """Scheduler.work_item reads the trials a lease's candidate draws on; what it makes decodes as itself."""
    def trial(id_: int, architecture, kind=TOWER, artifacts=None, **fields) -> Trial:
        return Trial(id_, architecture, {} if kind == ENSEMBLE else dict(HP), f"key {id_}", fields.pop("parent", None),
                     None, id_, 100 + id_, kind=kind, status=COMPLETED if artifacts else QUEUED, artifacts=artifacts,
                     **fields)

    state = State(trials={
        1: trial(1, ["conv1d_16_k3"], artifacts={"weights": WEIGHTS_1, "outputs": OUTPUTS_3}),
        2: trial(2, ["dense_32"], artifacts={"weights": WEIGHTS_2, "outputs": OUTPUTS_4}),
        3: trial(3, {"members": [1, 2], "combiner": "weighted"}, ENSEMBLE, artifacts={"outputs": OUTPUTS_3}),
        4: trial(4, ["conv1d_16_k3", "dense_32"], parent=1,
                 inherit={"mode": "average", "sources": [1, 2], "weights": [0.75, 0.25]},
                 teacher={"kind": "ensemble", "id": 3, "loss": "soft", "temperature": 4.0, "weight": 0.5}),
        5: trial(5, {"members": [1, 2], "combiner": "average"}, ENSEMBLE,
                 inherit={"mode": "off", "sources": [], "weights": []}),
    }, config=tower_config(evaluator__kind="keras", search__stopping="asha-promote", search__asha__min_epochs=2,
                           training__epochs=8))
    state.trials[4].resume = Resume(2, CHECKPOINT_5)  # promoted at rung 2 of 2, 6: it pauses again at 6
    scheduler = Scheduler(state, now=0.0)
    state.leases = {20: Lease(20, 4, "t", 0.0), 21: Lease(21, 5, "t", 0.0)}
    tower, ensemble = scheduler.work_item(20), scheduler.work_item(21)
    assert tower == WorkItem(
        lease=20, trial=4, key="key 4", kind=TOWER, architecture=("conv1d_16_k3", "dense_32"), hyperparameters=HP,
        seed=104, parent=1, parent_artifacts={"weights": WEIGHTS_1, "outputs": OUTPUTS_3},
        inherit=Inherit("average", (Source(1, ("conv1d_16_k3",), HP, WEIGHTS_1, 0.75),
                                    Source(2, ("dense_32",), HP, WEIGHTS_2, 0.25))),
        teacher=Teacher(kind="ensemble", trial=3, loss="soft", temperature=4.0, weight=0.5,
                        architecture=Ensemble((1, 2), "weighted"), hyperparameters={}, outputs=OUTPUTS_3),
        needs=(WEIGHTS_1, WEIGHTS_2, OUTPUTS_3, CHECKPOINT_5), until=6, resume=Resume(2, CHECKPOINT_5),
    )
    assert ensemble.members == (Member(1, ("conv1d_16_k3",), HP, OUTPUTS_3), Member(2, ("dense_32",), HP, OUTPUTS_4))
    assert (ensemble.inherit, ensemble.needs) == (None, (OUTPUTS_3, OUTPUTS_4))
    assert decoded_items([tower, ensemble]) == [tower, ensemble]


def work_frame(items: list) -> bytes:
    return msgpack.packb({"p": P, "t": "work", "items": items, "retry": 0.2, "done": False})


def item_messages() -> list[dict]:
    return copy.deepcopy(ENGINE_EXAMPLES["work"]["items"])


def at(message: dict, path: tuple) -> object:
    for step in path:
        message = message[step]
    return message


def field_paths(value: object, path: tuple = ()) -> list[tuple]:
    """Every field and entry under ``value``, by path (keys and list indices), outermost first."""
    found = []
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in children:
        found.append((*path, key))
        found.extend(field_paths(child, (*path, key)))
    return found


def name_of(path: tuple) -> str:
    """How a refusal names a field of the work items: ``work.items[0].inherit.sources[1].weight``."""
    return "work.items" + "".join(f"[{step}]" if isinstance(step, int) else f".{step}" for step in path)


ITEM_PATHS = field_paths(ENGINE_EXAMPLES["work"]["items"])
#: Fields whose wrong value another field's check finds: a kind that does not fit the item's architecture,
#: a teacher's trial that is not its id.
NAMED_BY = {"kind": "architecture", "trial": "id"}


def names(path: tuple) -> list[str]:
    """How a refusal may name the field at ``path``: by itself, or by the field whose check finds it wrong."""
    named = [name_of(path)]
    if path and path[-1] in NAMED_BY:
        named.append(name_of((*path[:-1], NAMED_BY[path[-1]])))
    return named


def test_every_work_item_field_takes_or_refuses_every_hostile_value_naming_the_field() -> None:
    """Each field and entry of each example item, at every depth, replaced by each hostile value (of every
    type, nested and huge): decoded (and read the same when sent again), or refused with a short error that
    names that very field."""
    # msgpack itself refuses an ext type and a map keyed by anything but text, before any field is read
    values = [value for value in HOSTILE if not isinstance(value, msgpack.ExtType) and value != {1: 2}]
    refusals = 0
    for path in ITEM_PATHS:
        for value in values:
            items = item_messages()
            at(items, path[:-1])[path[-1]] = value
            try:
                received = decode(work_frame(items), ENGINE_MESSAGES)[1]["items"]
            except ProtocolError as exc:
                assert_short_refusal(exc)
                assert exc.code == "invalid" and any(name in str(exc) for name in names(path)), (path, str(exc))
                refusals += 1
            else:
                assert all(type(item) is WorkItem for item in received)
                assert decoded_items(received) == received, "what a trainer reads, sent again, reads the same"
    assert refusals > len(values) * len(ITEM_PATHS) * 3 // 4, "most values are wrong for most fields"


def test_every_work_item_field_is_required_and_no_other_is_taken() -> None:
    for path in ITEM_PATHS:
        container = at(ENGINE_EXAMPLES["work"]["items"], path[:-1])
        if not isinstance(container, dict) or path[-2:-1] == ("hyperparameters",) or \
                path[-2:-1] == ("parent_artifacts",):
            continue  # entries of a list, a hyperparameter or an artifact: not declared fields
        items = item_messages()
        del at(items, path[:-1])[path[-1]]
        with pytest.raises(ProtocolError) as missing:
            decode(work_frame(items), ENGINE_MESSAGES)
        assert str(missing.value) == f"{name_of(path)} is missing"
    for path in [(0,), (1,), (0, "inherit"), (0, "inherit", "sources", 1), (0, "teacher"),
                 (0, "teacher", "architecture"), (1, "members", 2), (1, "architecture")]:
        items = item_messages()
        at(items, path)["x" * 300] = 1
        with pytest.raises(ProtocolError) as extra:
            decode(work_frame(items), ENGINE_MESSAGES)
        assert str(extra.value) == f"{name_of(path)} has 1 unknown field(s)"


@pytest.mark.parametrize(("path", "value", "message"), [
    ((0, "inherit", "sources", 1, "weight"), "heavy",
     "work.items[0].inherit.sources[1].weight must be a number, not a value of type str"),
    ((0, "inherit", "sources", 1, "weight"), 1.5, "work.items[0].inherit.sources[1].weight must be a number in [0, 1]"),
    ((0, "inherit", "mode"), "off", "work.items[0].inherit.mode must be one of ['parent', 'average']"),
    ((0, "teacher", "loss"), "hard", "work.items[0].teacher.loss must be one of ['soft', 'logits']"),
    ((0, "teacher", "temperature"), 0, "work.items[0].teacher.temperature must be a finite number above 0"),
    ((0, "teacher", "id"), 4, "work.items[0].teacher.id must be the same as work.items[0].teacher.trial"),
    ((0, "teacher", "architecture", "combiner"), "vote",
     "work.items[0].teacher.architecture.combiner must be one of ['average', 'weighted']"),
    ((0, "teacher", "outputs"), "AB" * 32, "work.items[0].teacher.outputs must be a sha256 hex digest"),
    ((0, "needs", 2), 3, "work.items[0].needs[2] must be a sha256 hex digest"),
    ((0, "architecture", 1), ["dense_32"], "work.items[0].architecture[1] must be text of at most 256 characters"),
    ((0, "hyperparameters", "dropout"), [0.1],
     "work.items[0].hyperparameters.dropout must be nil, true, false, a finite number or text of at most 256 "
     "characters"),
    ((0, "kind"), "ensemble",
     "work.items[0].architecture must be an ensemble's members and combiner, as its kind is ensemble"),
    ((0, "kind"), "cell", "work.items[0].kind must be one of ['tower', 'ensemble']"),
    ((0, "members"), [], "work.items[0].members must be nil, as its kind is tower"),
    ((1, "members"), None, "work.items[1].members must be a list, as its kind is ensemble"),
    ((1, "members", 0, "architecture"), {"members": [1], "combiner": "average"},
     "work.items[1].members[0].architecture must be a list of at most 4096 block names"),
    ((1, "architecture", "members", 1), -2,
     f"work.items[1].architecture.members[1] must be an integer in [0, {2**63 - 1}], not a value of type int"),
    ((2, "parent"), "1", f"work.items[2].parent must be an integer in [0, {2**63 - 1}], not a value of type str"),
    ((2,), 7, "work.items[2] must be a map"),
])
def test_malformed_work_items_are_refused_naming_the_field(path: tuple, value: object, message: str) -> None:
    items = item_messages()
    at(items, path[:-1])[path[-1]] = value
    with pytest.raises(ProtocolError) as caught:
        decode(work_frame(items), ENGINE_MESSAGES)
    assert str(caught.value) == message


VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=20)
    | st.binary(max_size=8) | st.sampled_from([DIGEST, "soft", "ensemble"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)


@settings(max_examples=500, deadline=None)
@given(data=st.data())
def test_mangled_work_items_only_ever_raise_protocol_errors_naming_the_field(data) -> None:
    """Fields or entries anywhere in the work items replaced, dropped or joined by a stranger: the items decode
    (and read the same when sent again) or are refused with a short error; with one change, naming it."""
    items = item_messages()
    changed = []
    for path in data.draw(st.lists(st.sampled_from(ITEM_PATHS), min_size=1, max_size=3, unique=True)):
        try:
            container = at(items, path[:-1])
            container[path[-1]]
        except (KeyError, IndexError, TypeError):
            continue  # an earlier change removed or replaced it
        if not isinstance(container, dict | list):
            continue
        action = data.draw(st.sampled_from(["replace", "drop", "extra"]))
        if action == "replace" or isinstance(container, list):
            container[path[-1]] = data.draw(VALUES)
            changed.append(names(path))
        elif action == "drop":
            del container[path[-1]]
            changed.append([f"{name_of(path)} is missing", name_of(path[:-1])])  # a hyperparameter may go
        else:
            container[data.draw(st.text(max_size=8))] = data.draw(VALUES)
            changed.append([name_of(path[:-1])])
    try:
        received = decode(work_frame(items), ENGINE_MESSAGES)[1]["items"]
    except ProtocolError as exc:
        assert_short_refusal(exc)
        assert str(exc).startswith("work.items"), str(exc)
        if len(changed) == 1:
            assert any(name in str(exc) for name in changed[0]), (changed, str(exc))
    else:
        assert all(type(item) is WorkItem for item in received)
        assert decoded_items(received) == received


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


def assert_short_refusal(exc: ProtocolError) -> None:
    """A refusal is a few words: never the value it got, however large."""
    assert len(str(exc)) <= protocol.MAX_ERROR, f"a {len(str(exc))}-character error: {str(exc)[:80]}..."


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


HOSTILE = [
    None, True, False, -1, 2**64 - 1, -(2**63), math.nan, math.inf, -0.0, 1.5, "", "x" * 300_000, "A" * 64,
    b"", b"\x00" * (protocol.CHUNK + 1), [], [1, "two"], list(range(4096)), [[[1]]], {}, {"k": "v"}, {1: 2},
    {str(i): i for i in range(4096)}, [[[]] * 64] * 64, msgpack.ExtType(1, b"x"),
]


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


def test_a_work_item_resumes_before_it_pauses_and_only_a_tower_does() -> None:
    items = item_messages()
    items[0]["until"] = 2  # resumes after epoch 2: it cannot pause there again
    with pytest.raises(ProtocolError, match=r"work.items\[0\].until \(2\) must come after .*resume.epoch \(2\)"):
        decode(work_frame(items), ENGINE_MESSAGES)
    items = item_messages()
    items[1]["until"] = 3
    with pytest.raises(ProtocolError, match=r"work.items\[1\].until and .*resume must be nil"):
        decode(work_frame(items), ENGINE_MESSAGES)
