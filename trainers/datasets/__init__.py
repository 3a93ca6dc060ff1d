"""Data providers, by the ``data.dataset`` that selects them; each trainer loads a dataset once."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from blocks.tower import CLASSIFICATION, REGRESSION
from trainers.datasets.base import DataError, Dataset, RawData, infer_task, prepare
from trainers.datasets.builtin import diabetes, digits, mnist1d
from trainers.datasets.csv_file import csv_table, label_values, read_table
from trainers.datasets.images import image_folder
from trainers.datasets.npz import npz_arrays

PROVIDERS: dict[str, Callable[[Mapping[str, Any]], RawData]] = {
    "mnist1d": mnist1d, "digits": digits, "diabetes": diabetes,
    "csv": csv_table, "npz": npz_arrays, "images": image_folder,
}

FIXED_TASKS = {"mnist1d": CLASSIFICATION, "digits": CLASSIFICATION, "images": CLASSIFICATION,
               "diabetes": REGRESSION}

_loaded: dict[str, Dataset] = {}


def task_of(config: Mapping[str, Any]) -> str:
    """The task a resolved ``[data]`` table means, reading no more than its labels (so the engine can
    freeze the task, and the metric that goes with it, in the run's configuration)."""
    if config["task"] != "auto":
        return config["task"]
    if config["dataset"] in FIXED_TASKS:
        return FIXED_TASKS[config["dataset"]]
    path = Path(config["path"])
    if config["dataset"] == "csv":
        header, body = read_table(path)
        return infer_task(label_values(path, header, body, config["label"]), "auto")
    try:
        with np.load(path, allow_pickle=False) as archive:
            return infer_task(archive["y"], "auto")
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"{path}: cannot read its array 'y' ({exc})") from None


def load_dataset(config: Mapping[str, Any]) -> Dataset:
    """The dataset a resolved ``[data]`` table describes, loaded and preprocessed once per process."""
    key = json.dumps(dict(config), sort_keys=True)
    if key not in _loaded:
        _loaded[key] = prepare(PROVIDERS[config["dataset"]](config))
    return _loaded[key]


__all__ = ["PROVIDERS", "DataError", "Dataset", "load_dataset", "task_of"]
