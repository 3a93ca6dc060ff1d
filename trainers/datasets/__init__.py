"""Data providers, by the ``data.dataset`` that selects them; each trainer loads a dataset once."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from blocks.tower import CLASSIFICATION, REGRESSION
from trainers.datasets.base import DataError, Dataset, RawData, prepare
from trainers.datasets.builtin import diabetes, digits, mnist1d
from trainers.datasets.csv_file import csv_table
from trainers.datasets.images import image_folder
from trainers.datasets.npz import npz_arrays

PROVIDERS: dict[str, Callable[[Mapping[str, Any]], RawData]] = {
    "mnist1d": mnist1d, "digits": digits, "diabetes": diabetes,
    "csv": csv_table, "npz": npz_arrays, "images": image_folder,
}

FIXED_TASKS = {"mnist1d": CLASSIFICATION, "digits": CLASSIFICATION, "images": CLASSIFICATION,
               "diabetes": REGRESSION}

_loaded: dict[str, Dataset] = {}


def check_data(config: Mapping[str, Any]) -> str:
    """Read a user's data as a trainer will (without TensorFlow) and return its task, so bad data is
    refused before a run starts and the task, with its metric, is frozen in the run's config."""
    if config["dataset"] in FIXED_TASKS:
        return FIXED_TASKS[config["dataset"]] if config["task"] == "auto" else config["task"]
    return PROVIDERS[config["dataset"]](config).task


def load_dataset(config: Mapping[str, Any]) -> Dataset:
    """The dataset a resolved ``[data]`` table describes, loaded and preprocessed once per process."""
    key = json.dumps(dict(config), sort_keys=True)
    if key not in _loaded:
        _loaded[key] = prepare(PROVIDERS[config["dataset"]](config))
    return _loaded[key]


__all__ = ["PROVIDERS", "DataError", "Dataset", "check_data", "load_dataset"]
