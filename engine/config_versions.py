"""Config versions: :data:`CONFIG_VERSION`, the version :meth:`engine.config.Config.to_dict` writes, and the
migrations that lift a config stored by an older Lineage to it. A new option bumps the version and adds a
migration here that fills the option in at the value that keeps older runs' behaviour.

Example::

    >>> migrate({"version": 8, "search": {...}, ...})["search"]["stopping"]
    'none'
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from engine.options import ConfigError

#: The version of the config :meth:`Config.to_dict` writes; configs of earlier versions are migrated on read.
CONFIG_VERSION = 19


def _legacy(table: Mapping[str, Any], path: tuple[str, ...], values: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``table`` with ``values`` filled in where the sub-table at ``path`` lacks them: options added
    since, at the values that keep the behaviour older runs had."""
    if not path:
        return {**values, **table}
    return {**table, path[0]: _legacy(table[path[0]], path[1:], values)}


# The sections v2 added, as v1 runs had them: nothing shared, no teacher, no ensembles. Written out rather
# than read from the defaults, so a v1 config migrates the same whatever the defaults become.
_V2_SECTIONS: dict[str, dict[str, Any]] = {
    "sharing": {"mode": "off", "weighting": "uniform", "sources": 4},
    "distillation": {"teacher": "none", "loss": "soft", "temperature": 4.0, "weight": 0.5, "adaptive": False,
                     "ramp": 20},
    "ensemble": {"strategy": "none", "combiner": "average", "width": 5, "criterion": "val_loss", "every": 5,
                 "replicas": 0, "replica_wait": 6, "start": "criterion"},
}


def _v1_to_v2(config: dict[str, Any]) -> dict[str, Any]:
    """v2 configs always hold [sharing], [distillation] and [ensemble]."""
    return {**config, **{name: dict(values) for name, values in _V2_SECTIONS.items() if name not in config}}


def _v2_to_v3(config: dict[str, Any]) -> dict[str, Any]:
    """v3 configs always hold search.tie_break and search.beam.explore(_draws)."""
    config = _legacy(config, ("search",), {"tie_break": "first"})
    return _legacy(config, ("search", "beam"), {"explore": 0.0, "explore_draws": 1})


def _v3_to_v4(config: dict[str, Any]) -> dict[str, Any]:
    """v4 configs always hold ensemble.criterion; before it, ensembles were compared by score."""
    return _legacy(config, ("ensemble",), {"criterion": "score"})


def _v4_to_v5(config: dict[str, Any]) -> dict[str, Any]:
    """v5 tower spaces always hold space.draw; before it, random towers were drawn left to right."""
    return _legacy(config, ("space",), {"draw": "positions"}) if config["space"]["kind"] == "tower" else config


def _v5_to_v6(config: dict[str, Any]) -> dict[str, Any]:
    """v6 configs always hold search.beam.explore_pick and ensemble.replicas; before them, exploring
    proposals kept the draw with the highest expected improvement, and no tower was trained twice."""
    config = _legacy(config, ("search", "beam"), {"explore_pick": "ei"})
    return _legacy(config, ("ensemble",), {"replicas": 0, "replica_wait": 6})


def _v6_to_v7(config: dict[str, Any]) -> dict[str, Any]:
    """v7 configs always hold ensemble.start; before it, ensembles grew from the search's best tower even
    where another tower had the lower validation loss they had to beat."""
    return _legacy(config, ("ensemble",), {"start": "leader"})


def _v7_to_v8(config: dict[str, Any]) -> dict[str, Any]:
    """v8 configs always hold search.at_deadline; before it, candidates in flight at the deadline trained on."""
    return _legacy(config, ("search",), {"at_deadline": "finish"})


def _v8_to_v9(config: dict[str, Any]) -> dict[str, Any]:
    """v9 configs always hold search.stopping and its tables; before them, no trial was stopped by a rule."""
    return _legacy(config, ("search",), {"stopping": "none", "asha": {"min_epochs": 2, "eta": 3},
                                         "median": {"warmup": 2, "min_trials": 5}})


def _v9_to_v10(config: dict[str, Any]) -> dict[str, Any]:
    """v10 configs always hold data.audio and data.text (read only by the audio dataset and csv text columns,
    which v10 added)."""
    return _legacy(config, ("data",), {"audio": {"sample_rate": 16000, "duration": 1.0, "noise": 0.1,
                                                 "front_end": "log-mel", "mels": 40, "mfccs": 10, "frame_ms": 40.0,
                                                 "hop_ms": 20.0},
                                       "text": {"tokens": "words", "ngrams": 1, "vocabulary": 20000, "length": 64}})


def _v10_to_v11(config: dict[str, Any]) -> dict[str, Any]:
    """v11 configs always hold ensemble.top; before it, an adaptive ensemble only grew, one tower at a time, and
    stopped at ``width`` members."""
    return _legacy(config, ("ensemble",), {"top": False})


def _v11_to_v12(config: dict[str, Any]) -> dict[str, Any]:
    """v12 tower spaces always hold space.head; before it, a tower's last feature map was flattened."""
    return _legacy(config, ("space",), {"head": "flatten"}) if config["space"]["kind"] == "tower" else config


def _v12_to_v13(config: dict[str, Any]) -> dict[str, Any]:
    """v13 configs always hold search.beam.budget; before it, the beam ignored space.max_params."""
    return _legacy(config, ("search", "beam"), {"budget": "ignore"})


def _v13_to_v14(config: dict[str, Any]) -> dict[str, Any]:
    """v14 configs always hold search.beam.size_model; before it, the size model read which block sat at each
    depth."""
    return _legacy(config, ("search", "beam"), {"size_model": "positions"})


def _v14_to_v15(config: dict[str, Any]) -> dict[str, Any]:
    """v15 configs always hold search.beam.niches; before it, every exploring proposal was a fresh random tower."""
    return _legacy(config, ("search", "beam"), {"niches": 0})


def _v15_to_v16(config: dict[str, Any]) -> dict[str, Any]:
    """v16 configs always hold search.beam.founding; before it, the surrogate chose the family a founding proposal
    started among all but the best tower's."""
    return _legacy(config, ("search", "beam"), {"founding": "screened"})


def _v16_to_v17(config: dict[str, Any]) -> dict[str, Any]:
    """v17 configs always hold search.asha.children; before it, ASHA judged every tower against all trials at a
    rung."""
    return _legacy(config, ("search", "asha"), {"children": "population"})


def _v17_to_v18(config: dict[str, Any]) -> dict[str, Any]:
    """v18 configs always hold training.schedule; before it, a candidate trained at one learning rate."""
    return _legacy(config, ("training",), {"schedule": "constant"})


def _v18_to_v19(config: dict[str, Any]) -> dict[str, Any]:
    """v19 configs always hold search.beam.sweep; before it, a new best tower's hyperparameters changed only when
    the surrogate picked such a mutation."""
    return _legacy(config, ("search", "beam"), {"sweep": []})


#: ``MIGRATIONS[n]`` lifts a version-``n`` config to version ``n + 1``. Configs up to version 7 were stored
#: by events of the same version, which say so on read (engine/events.py).
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {
    1: _v1_to_v2, 2: _v2_to_v3, 3: _v3_to_v4, 4: _v4_to_v5, 5: _v5_to_v6, 6: _v6_to_v7, 7: _v7_to_v8, 8: _v8_to_v9,
    9: _v9_to_v10, 10: _v10_to_v11, 11: _v11_to_v12, 12: _v12_to_v13, 13: _v13_to_v14, 14: _v14_to_v15,
    15: _v15_to_v16, 16: _v16_to_v17, 17: _v17_to_v18, 18: _v18_to_v19,
}


def migrate(stored: Mapping[str, Any]) -> dict[str, Any]:
    """A stored config lifted to :data:`CONFIG_VERSION` (``version`` key included)."""
    version = stored.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ConfigError(f"a stored config's version must be a whole number from 1, not {version!r}")
    if version > CONFIG_VERSION:
        raise ConfigError(f"config version {version} is newer than this Lineage knows ({CONFIG_VERSION}); "
                          "upgrade Lineage to read it")
    config = {key: value for key, value in stored.items() if key != "version"}
    for step in range(version, CONFIG_VERSION):
        config = MIGRATIONS[step](config)
    return {**config, "version": CONFIG_VERSION}
