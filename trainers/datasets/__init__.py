"""Data providers, by the ``data.dataset`` that selects them; each trainer loads a dataset once."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from blocks.registry import BlockError, lookup, use_paths
from blocks.tower import FAMILIES_FOR, InputKind
from engine.config import NEEDS_PATH, Config, DataOptions, with_task
from engine.options import ConfigError, as_dict
from trainers.datasets.audio import audio_folder
from trainers.datasets.base import DataError, Dataset, RawData, prepare
from trainers.datasets.builtin import diabetes, digits, mnist1d
from trainers.datasets.csv_file import csv_table
from trainers.datasets.idx import idx_files
from trainers.datasets.images import image_folder
from trainers.datasets.npz import npz_arrays

PROVIDERS: dict[str, Callable[[DataOptions], RawData]] = {
    "mnist1d": mnist1d, "digits": digits, "diabetes": diabetes,
    "csv": csv_table, "npz": npz_arrays, "images": image_folder, "idx": idx_files,
    "audio": audio_folder,
}

#: What the built-in datasets' examples are (read without making them).
BUILTIN_KINDS = {"mnist1d": InputKind.FEATURES, "digits": InputKind.IMAGE, "diabetes": InputKind.FEATURES}

_loaded: dict[str, Dataset] = {}


def check_data(config: Config) -> Config:
    """The config once its data has been read as a trainer will (without TensorFlow), before a new run starts:
    data that cannot be used is refused (the file, row or column named), so are blocks of the space that cannot
    take it (image blocks on text, say), and a task the labels decide is fixed, with its metric. A config whose
    trainers read no data comes back as it is.

    Raises :class:`ConfigError` (``data: ...`` or ``space.blocks: ...``).
    """
    if config.evaluator.kind != "keras":
        return config
    data = config.data
    if data.dataset in NEEDS_PATH and not Path(data.path).exists():
        raise ConfigError(f"data.path: {data.path} does not exist")
    if data.dataset not in NEEDS_PATH:  # built in: nothing of the user's to read
        check_blocks(config, BUILTIN_KINDS[data.dataset], data.dataset)
        return config
    try:
        raw = PROVIDERS[data.dataset](data)
    except DataError as exc:
        raise ConfigError(f"data: {exc}") from None
    check_blocks(config, raw.input_kind, data.path)
    return with_task(config, raw.task)


def check_blocks(config: Config, kind: InputKind, source: str) -> None:
    """Refuses a space with blocks that cannot take the data's kind of examples, naming them."""
    use_paths(list(config.space.block_paths))
    fitting = FAMILIES_FOR[kind]
    try:
        unfit = [(name, lookup(name).family) for name in config.space.blocks if lookup(name).family not in fitting]
    except BlockError as exc:
        raise ConfigError(f"space.blocks: {exc}") from None
    if unfit:
        families = sorted({family for _, family in unfit})
        raise ConfigError(f"space.blocks: {[name for name, _ in unfit]} are {' and '.join(families)} blocks, which "
                          f"cannot take {kind} ({source}); here blocks of the families {', '.join(fitting)} fit "
                          "(`engine blocks` lists them)")


def load_dataset(data: DataOptions) -> Dataset:
    """The dataset a config's ``data`` section describes, loaded and preprocessed once per process."""
    key = json.dumps(as_dict(data), sort_keys=True)
    if key not in _loaded:
        _loaded[key] = prepare(PROVIDERS[data.dataset](data))
    return _loaded[key]


__all__ = ["PROVIDERS", "DataError", "Dataset", "check_data", "load_dataset"]
