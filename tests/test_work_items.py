"""Work items: typed records on the wire, field by field; every field is required, and every hostile value is
refused naming the field."""

from __future__ import annotations

import copy
import dataclasses

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import tower_config
from wire import (
    CHECKPOINT_5,
    DIGEST,
    HOSTILE,
    HP,
    ITEMS,
    OUTPUTS_3,
    OUTPUTS_4,
    TOWER_ITEM,
    WEIGHTS_1,
    WEIGHTS_2,
    P,
    assert_short_refusal,
)

from engine.protocol import ENGINE_MESSAGES, ProtocolError, decode, encode
from engine.scheduler import Scheduler
from engine.state import COMPLETED, ENSEMBLE, QUEUED, TOWER, Lease, Resume, State, Trial
from engine.work import Ensemble, Inherit, Member, Source, Teacher, WorkItem

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
    return copy.deepcopy([item.to_message() for item in ITEMS])


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


ITEM_PATHS = field_paths([item.to_message() for item in ITEMS])
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
        container = at([item.to_message() for item in ITEMS], path[:-1])
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


def test_a_work_item_resumes_before_it_pauses_and_only_a_tower_does() -> None:
    items = item_messages()
    items[0]["until"] = 2  # resumes after epoch 2: it cannot pause there again
    with pytest.raises(ProtocolError, match=r"work.items\[0\].until \(2\) must come after .*resume.epoch \(2\)"):
        decode(work_frame(items), ENGINE_MESSAGES)
    items = item_messages()
    items[1]["until"] = 3
    with pytest.raises(ProtocolError, match=r"work.items\[1\].until and .*resume must be nil"):
        decode(work_frame(items), ENGINE_MESSAGES)
