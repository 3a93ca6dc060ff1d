"""Event types: validation on write, upcasting of old versions on read (stored bytes untouched)."""

from __future__ import annotations

from pathlib import Path

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import events as ev
from engine.log import EventLog


def test_every_event_type_round_trips() -> None:
    for name in ev.TYPES.names():
        payload = {field: 1 for field in ev.TYPES[name].fields}
        event = ev.TYPES.decode(7, ev.TYPES.encode(name, payload, at=12.5))
        assert event == ev.Event(7, name, ev.TYPES.version(name), 12.5, payload)


def test_a_draft_missing_a_field_is_refused() -> None:
    with pytest.raises(ev.EventError, match="missing field"):
        ev.TYPES.encode(ev.TRIAL_COMPLETED, {"trial": 1, "lease": 2}, at=0)


def test_unknown_types_and_future_versions_are_refused() -> None:
    with pytest.raises(ev.EventError, match="unknown type"):
        ev.TYPES.decode(1, msgpack.packb({"type": "Nope", "v": 1, "at": 0, "payload": {}}))
    future = msgpack.packb({"type": ev.SEARCH_FINISHED, "v": 9, "at": 0, "payload": {"reason": "x"}})
    with pytest.raises(ev.EventError, match="newer than this Lineage knows"):
        ev.TYPES.decode(1, future)
    with pytest.raises(ev.EventError, match="not a valid record"):
        ev.TYPES.decode(1, b"\xc1garbage")


def test_a_type_without_its_upcasters_cannot_be_declared() -> None:
    with pytest.raises(ev.EventError, match="no upcaster"):
        ev.EventType("Thing", 3, ("a",), "doc", upcasters={1: dict})


# A type that went through two schema changes: v1 {"score"} -> v2 {"value"} -> v3 {"value", "unit"}.
THING = ev.EventType(
    "Thing", 3, ("value", "unit"), "a test type",
    upcasters={1: lambda p: {"value": p.pop("score")}, 2: lambda p: {**p, "unit": "accuracy"}},
)
TYPES = ev.EventTypes([THING])


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stored=st.lists(st.tuples(st.sampled_from([1, 2, 3]), st.floats(allow_nan=False)), min_size=1, max_size=8))
def test_old_versions_are_upcast_on_read_and_the_stored_bytes_never_change(tmp_path_factory, stored) -> None:
    payloads = {1: lambda x: {"score": x}, 2: lambda x: {"value": x}, 3: lambda x: {"value": x, "unit": "accuracy"}}
    raws = [msgpack.packb({"type": "Thing", "v": v, "at": 0.0, "payload": payloads[v](x)}) for v, x in stored]
    run: Path = tmp_path_factory.mktemp("upcast")
    with EventLog.create(run, sync=False, types=TYPES) as log:
        log.copy(raws, expected_head=0)  # as an earlier Lineage stored them
        events = list(log.read())
        assert [e.v for e in events] == [3] * len(stored)
        assert [e.payload for e in events] == [{"value": x, "unit": "accuracy"} for _, x in stored]
        assert [raw for _, raw in log.read_raw()] == raws


def test_trial_failed_v1_events_are_upcast_with_a_blame_and_no_metrics(tmp_path: Path) -> None:
    """Real schema changes: TrialFailed v2 says whose fault a failure was, v3 what was measured before it; v1
    records read as v3."""
    old = [msgpack.packb({"type": ev.TRIAL_FAILED, "v": 1, "at": 0.0, "payload": payload}) for payload in (
        {"trial": 2, "lease": None, "reason": "lost 3 times; last: no heartbeat for 30s"},
        {"trial": 5, "lease": 6, "reason": "the loss became NaN"},
    )]
    with EventLog.create(tmp_path, sync=False) as log:
        log.copy(old, expected_head=0)  # as an earlier Lineage stored them
        events = list(log.read())
        assert [raw for _, raw in log.read_raw()] == old, "stored bytes are never rewritten"
    assert [(e.v, e.payload["blame"], e.payload["metrics"]) for e in events] == [
        (3, "infrastructure", {}), (3, "candidate", {})]


def test_a_version_2_config_reads_with_the_behaviour_it_ran_with(tmp_path: Path) -> None:
    """Config v3 added search.tie_break and beam exploration, v4 ensemble.criterion, v5 space.draw, v6
    search.beam.explore_pick and ensemble.replicas, v7 ensemble.start; a v2 run replays as it ran (ties to
    the earlier trial, no exploration, ensembles by score grown from the leader, towers drawn left to right,
    no replicas) instead of today's defaults. Until v8 the event's version was its config's: a v2 event's
    config (no "version" key) decodes stamped as version 2, and Config.from_dict migrates it."""
    from support import tower_config

    from engine.config import Config
    from engine.config_versions import CONFIG_VERSION
    from engine.fold import fold_records

    config = tower_config().to_dict()
    del config["version"]
    del config["search"]["tie_break"], config["search"]["beam"]["explore"], config["search"]["beam"]["explore_draws"]
    del config["ensemble"]["criterion"], config["space"]["draw"], config["search"]["beam"]["explore_pick"]
    del config["ensemble"]["replicas"], config["ensemble"]["start"]
    old = [msgpack.packb({"type": ev.SEARCH_STARTED, "v": 2, "at": 0.0,
                          "payload": {"run_id": "old", "config": config, "lineage": "0.1.0"}})]
    with EventLog.create(tmp_path, sync=False) as log:
        log.copy(old, expected_head=0)  # as an earlier Lineage stored them
        (started,) = log.read()
        folded = fold_records(log.records()).config
        assert [raw for _, raw in log.read_raw()] == old, "stored bytes are never rewritten"
    assert started.v == ev.TYPES.version(ev.SEARCH_STARTED) == 9
    assert started.payload["bundle"] is None, "a run from before bundles: its trainers read their own disks"
    assert started.payload["config"] == {**config, "version": 2}, "the config is stamped with its version, as stored"
    read = Config.from_dict(started.payload["config"])
    assert folded == read, "the fold reads the config the same way"
    assert read.version == CONFIG_VERSION
    search = read.search
    assert (search.tie_break, search.beam.explore, search.beam.explore_draws) == ("first", 0.0, 1)
    assert read.ensemble.criterion == "score", "v4 added ensemble.criterion"
    assert read.space.draw == "positions", "v5 added space.draw"
    assert search.beam.explore_pick == "ei", "v6 added search.beam.explore_pick"
    assert read.ensemble.replicas == 0, "and ensemble.replicas"
    assert read.ensemble.start == "leader", "v7 added ensemble.start"
    assert tower_config().search.tie_break == "val_loss", "new runs break ties by validation loss"
    assert tower_config().space.draw == "blocks", "new runs draw towers as collections of blocks"
    assert tower_config().search.beam.explore_pick == "thompson"
