"""The log's hash chain: every appended event links to the one before it; forks go on from their parent's chain;
logs written before links still verify; a change anywhere in the middle is named by the event where it shows."""

from __future__ import annotations

from pathlib import Path

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import commands, drive, nb201_config

from engine import chain
from engine import events as ev
from engine.log import EventLog
from engine.runs import create_run
from replay import fork, verify

values = st.one_of(st.integers(-(2**63), 2**63 - 1), st.text(max_size=20), st.none(),
                   st.lists(st.integers(0, 2**32), max_size=4))
payloads = st.dictionaries(st.text(max_size=8), values, max_size=6)


@given(payload=payloads, at=st.floats(0, 2e9), prev=st.binary(min_size=32, max_size=32))
def test_a_link_is_the_record_with_one_more_entry(payload, at, prev) -> None:
    raw = ev.TYPES.encode(ev.SEARCH_FINISHED, {"reason": "done", **payload}, at=at)
    linked = chain.link(raw, prev)
    assert msgpack.unpackb(linked) == {**msgpack.unpackb(raw), chain.LINK: prev}
    assert linked == msgpack.packb({**msgpack.unpackb(raw), chain.LINK: prev})
    assert chain.link(linked, bytes(32)) == chain.link(raw, bytes(32)), "a new link replaces the old one"
    assert ev.TYPES.decode(7, linked).payload == ev.TYPES.decode(7, raw).payload


def stored(run: Path) -> list[bytes]:
    with EventLog.open_reader(run) as log:
        return [raw for _, raw in log.read_raw()]


def rewritten(raws: list[bytes], run: Path) -> Path:
    with EventLog.create(run, sync=False) as log:
        log.copy(raws, expected_head=0)
    return run


def unlinked(raw: bytes) -> bytes:
    """An event as Lineage stored it before events were linked."""
    record = msgpack.unpackb(raw)
    del record[chain.LINK]
    return msgpack.packb(record)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(script=commands, where=st.floats(0, 1), how=st.sampled_from(["changed", "dropped", "swapped", "inserted"]))
def test_every_event_is_linked_and_a_change_breaks_the_chain_where_it_shows(tmp_path_factory, script, where, how):
    root = tmp_path_factory.mktemp("chain")
    log, state = create_run(root / "run", nb201_config(search__trials=8), sync=False)
    with log:
        drive(log, state, script)
    raws = stored(root / "run")
    found = chain.check(enumerate(raws, 1))
    assert found == chain.Chain(events=len(raws), first=1, head=chain.digest(raws[-1]).hex())
    assert msgpack.unpackb(raws[0])[chain.LINK] == chain.GENESIS
    if len(raws) < 3:
        return
    k = 1 + int(where * (len(raws) - 2))  # an event with one after it, never the head (nothing links to it)
    changed = list(raws)
    if how == "changed":
        record = msgpack.unpackb(raws[k - 1])
        record["at"] += 1.0
        changed[k - 1], broken = msgpack.packb(record), k + 1
    elif how == "dropped":
        del changed[k - 1]
        broken = k
    elif how == "swapped":
        changed[k - 1], changed[k] = changed[k], changed[k - 1]
        broken = k
    else:
        changed.insert(k, raws[k - 1])
        broken = k + 1
    with pytest.raises(chain.ChainBroken) as caught:
        chain.check(enumerate(changed, 1))
    assert caught.value.seq == broken, str(caught.value)


def test_a_log_from_before_links_verifies_and_its_chain_begins_where_a_newer_engine_appends(tmp_path: Path,
                                                                                             engine_here) -> None:
    log, state = create_run(tmp_path / "new", nb201_config(search__trials=6), sync=False)
    with log:
        drive(log, state, [("ready", 0, 2, None, False), ("complete", 0, 0, 0.5, False),
                           ("ready", 1, 2, None, False), ("complete", 1, 0, 0.7, False)])
    old = [unlinked(raw) for raw in stored(tmp_path / "new")]
    run = rewritten(old, tmp_path / "old")
    assert chain.check(enumerate(old, 1)).first is None
    assert verify(run).chain.first is None
    result = engine_here("replay", "--run", str(run), "--verify")
    assert "hash chain: none" in result.stdout

    with EventLog.open_writer(run, sync=False) as log:  # what an engine of today appends to it
        log.append([ev.TYPES.encode(ev.SEARCH_FINISHED, {"reason": "enough"}, at=0.0)], expected_head=len(old))
    assert verify(run).chain == chain.Chain(len(old) + 1, len(old) + 1, chain.digest(stored(run)[-1]).hex())
    result = engine_here("replay", "--run", str(run), "--verify")
    assert f"hash chain: events {len(old) + 1}-{len(old) + 1} linked" in result.stdout

    later_unlinked = stored(run) + [old[-1]]
    with pytest.raises(chain.ChainBroken, match=f"event {len(old) + 2}: it carries no link"):
        chain.check(enumerate(later_unlinked, 1))


@pytest.mark.parametrize("parent_linked", [True, False], ids=["linked parent", "parent from before links"])
def test_a_fork_goes_on_from_its_parents_chain(parent_linked: bool, tmp_path: Path, engine_here) -> None:
    log, state = create_run(tmp_path / "made", nb201_config(search__trials=6), sync=False)
    with log:
        drive(log, state, [("ready", 0, 2, None, False), ("complete", 0, 0, 0.5, False),
                           ("ready", 1, 2, None, False), ("complete", 1, 0, 0.7, False)])
    raws = stored(tmp_path / "made") if parent_linked else [unlinked(raw) for raw in stored(tmp_path / "made")]
    parent = rewritten(raws, tmp_path / "parent")
    at = len(raws) - 1
    fork(parent, at, tmp_path / "child", ["search.seed=3"])
    child = stored(tmp_path / "child")
    assert child[:at] == raws[:at]
    assert msgpack.unpackb(child[at])[chain.LINK] == chain.digest(raws[at - 1])
    assert verify(tmp_path / "child").chain.first == (1 if parent_linked else at + 1)
    engine_here("replay", "--run", str(tmp_path / "child"), "--verify")

    tampered = list(child)
    tampered[at - 1] = raws[at]  # the parent's event after the fork point, in place of the fork point's own
    with pytest.raises(chain.ChainBroken) as caught:
        verify(rewritten(tampered, tmp_path / "tampered"))
    assert caught.value.seq == (at if parent_linked else at + 1)
