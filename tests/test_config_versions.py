"""The config as a typed, frozen, versioned object: read by attribute, written with its own version, and
read back from any version older Lineage stored (events up to v7 stored it without one)."""

from __future__ import annotations

import copy
import dataclasses
import pickle
from pathlib import Path

import msgpack
import pytest
from support import nb201_config, tower_config

from engine import events as ev
from engine.config import Config, load_config, resolve_config
from engine.config_versions import CONFIG_VERSION, MIGRATIONS, migrate
from engine.fold import fold_records
from engine.log import EventLog
from engine.options import ConfigError

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.toml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_every_example_reads_back_from_what_events_store(path: Path) -> None:
    config = load_config(path)
    stored = msgpack.unpackb(msgpack.packb(config.to_dict()))
    assert stored["version"] == CONFIG_VERSION
    assert Config.from_dict(stored) == config
    assert resolve_config(stored) == config, "resolving a resolved config changes nothing"


def test_a_config_is_frozen_and_read_by_attribute() -> None:
    config = tower_config(search__beam__k=4)
    assert config.search.beam.k == 4 and config.space.kind == "tower"
    assert isinstance(config.space.blocks, tuple)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.search.trials = 5  # type: ignore[misc]
    assert copy.deepcopy(config) is config
    assert pickle.loads(pickle.dumps(config)) == config


def _started_record(config: dict, version: int) -> bytes:
    """A SearchStarted record as Lineage of event version ``version`` wrote it (no config version)."""
    return msgpack.packb({"type": ev.SEARCH_STARTED, "v": version, "at": 0.0,
                          "payload": {"run_id": "old", "config": config, "lineage": "0.1"}})


def _versioned_record(config: dict) -> bytes:
    """A SearchStarted record of event version 9, its config carrying its own version (configs do since v8)."""
    return msgpack.packb({"type": ev.SEARCH_STARTED, "v": 9, "at": 0.0,
                          "payload": {"run_id": "old", "config": config, "lineage": "0.1", "bundle": None}})


def _replayed(tmp_path: Path, record: bytes) -> Config:
    with EventLog.create(tmp_path / "run", sync=False) as log:
        log.copy([record], expected_head=0)  # as that Lineage stored it
        return fold_records(log.records()).config


def test_a_version_6_log_replays_with_the_rule_it_ran_with(tmp_path: Path) -> None:
    """v7 added ensemble.start; a run stored before it grew ensembles from the leader."""
    stored = tower_config(evaluator__kind="keras", ensemble__strategy="adaptive").to_dict()
    del stored["version"], stored["ensemble"]["start"]
    config = _replayed(tmp_path, _started_record(stored, 6))
    assert config.ensemble.start == "leader" and config.version == CONFIG_VERSION
    assert config.ensemble.strategy == "adaptive"


def test_a_version_11_tower_log_flattens_its_last_feature_map(tmp_path: Path) -> None:
    """v12 added space.head; towers stored before it ended by flattening."""
    stored = tower_config(evaluator__kind="keras", space__head="pool").to_dict()
    del stored["space"]["head"]
    stored["version"] = 11  # configs carry their own version since v8
    config = _replayed(tmp_path, _versioned_record(stored))
    assert config.space.head == "flatten" and config.version == CONFIG_VERSION


# Options each version added: (the version before it, the table it sits in, the option, what older runs did, the
# default).
OPTIONS = [
    (12, "search.beam", "budget", "ignore", "learn"),         # the beam ignored space.max_params
    (13, "search.beam", "size_model", "positions", "blocks"),  # the size model read which block sat at each depth
    (14, "search.beam", "niches", 0, 0),                      # every exploring proposal was a fresh random tower
    (15, "search.beam", "founding", "screened", "fewest"),    # the surrogate chose a founding proposal's family
    (16, "search.asha", "children", "population", "population"),  # ASHA judged a mutated tower against all trials
    (17, "training", "schedule", "constant", "constant"),      # a candidate trained at one learning rate
    (18, "search.beam", "sweep", (), ("learning_rate",)),      # a new best tower kept its rate unless screened
]


def _table(tree, path: str):
    for name in path.split("."):
        tree = tree[name] if isinstance(tree, dict) else getattr(tree, name)
    return tree


@pytest.mark.parametrize(("version", "path", "option", "before", "default"), OPTIONS, ids=[o[2] for o in OPTIONS])
def test_a_log_stored_before_an_option_keeps_the_behaviour_it_ran_with(tmp_path: Path, version: int, path: str,
                                                                      option: str, before, default) -> None:
    stored = tower_config(space__max_params=20_000, search__beam__niches=2).to_dict()
    del _table(stored, path)[option]
    stored["version"] = version
    config = _replayed(tmp_path, _versioned_record(stored))
    assert getattr(_table(config, path), option) == before and config.version == CONFIG_VERSION
    assert getattr(_table(tower_config(), path), option) == default


def test_a_version_1_log_gets_every_option_added_since_at_its_old_behaviour(tmp_path: Path) -> None:
    stored = nb201_config().to_dict()
    del stored["version"], stored["sharing"], stored["distillation"], stored["ensemble"]
    del stored["search"]["tie_break"], stored["search"]["beam"]["explore"], stored["search"]["beam"]["explore_draws"]
    del stored["search"]["beam"]["explore_pick"]
    config = _replayed(tmp_path, _started_record(stored, 1))
    assert (config.search.tie_break, config.search.beam.explore, config.search.beam.explore_draws,
            config.search.beam.explore_pick) == ("first", 0.0, 1, "ei")
    assert (config.sharing.mode, config.distillation.teacher, config.ensemble.strategy) == ("off", "none", "none")


def test_each_migration_lifts_one_version() -> None:
    assert sorted(MIGRATIONS) == list(range(1, CONFIG_VERSION))
    current = nb201_config().to_dict()
    assert migrate(current) == current


def test_events_keep_their_version_when_the_config_grows() -> None:
    """A new option bumps CONFIG_VERSION and adds a migration; the events that carry the config stay where they are
    (SearchStarted went to v9 for its bundle, a field of its own, not for the config)."""
    assert [ev.TYPES.version(name) for name in (ev.SEARCH_STARTED, ev.SEARCH_FORKED, ev.SEARCH_RESUMED)] == [9, 8, 8]
    payload = ev.TYPES.upcast(ev.SEARCH_STARTED, 3, {"run_id": "r", "lineage": "0.1", "config": {"search": {}}})
    assert payload["config"]["version"] == 3, "an old event says which config version it stored"


@pytest.mark.parametrize("version, message", [
    (CONFIG_VERSION + 1, "newer than this Lineage knows"),
    (0, "whole number from 1"),
    ("7", "whole number from 1"),
])
def test_a_config_of_an_unknown_version_is_refused(version: object, message: str) -> None:
    stored = {**nb201_config().to_dict(), "version": version}
    with pytest.raises(ConfigError, match=message):
        Config.from_dict(stored)


def test_a_stored_config_with_a_bad_value_names_the_key() -> None:
    stored = nb201_config().to_dict()
    stored["search"]["beam"]["k"] = "eight"
    with pytest.raises(ConfigError, match=r"search\.beam\.k must be an integer"):
        Config.from_dict(stored)
