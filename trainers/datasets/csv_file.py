"""CSV tables: a header row, one label column named in the config, numeric and text columns.

A column is numeric when its values parse as numbers, and categorical (text) otherwise; a column
whose values are nearly all numbers but not quite is refused with the first offending row named,
since that is almost always a typo. Missing values (empty, ``NA``, ``NaN``, ``null``, ``?``) are
imputed (numbers: the training mean; text: an "unknown" category) or, with ``data.missing =
"refuse"``, refused with the row and column named. The preprocessing model takes one named input per
column, so an exported model reads raw rows.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from blocks.tower import CLASSIFICATION
from engine.config import DataOptions
from trainers.datasets.base import DataError, RawData, encode_labels, infer_task, split_arrays, split_indices

MISSING = {"", "na", "nan", "null", "none", "?"}
NUMERIC_SHARE = 0.8  # this share of numbers, and a few that are not, is a typo (declare the column otherwise)


def _is_missing(text: str) -> bool:
    return text.strip().lower() in MISSING


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def input_name(column: str) -> str:
    """A Keras-safe input name for a column (exported models take these names)."""
    return "col_" + re.sub(r"[^0-9A-Za-z_]", "_", column)


def read_table(path: Path) -> tuple[list[str], list[list[str]]]:
    """The header and rows of a CSV file, each row as long as the header."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.reader(handle))
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: not a readable CSV file ({exc})") from None
    if not rows or not any(cell.strip() for cell in rows[0]):
        raise DataError(f"{path}: the file is empty; a header row is required")
    header = [cell.strip() for cell in rows[0]]
    duplicates = sorted({name for name in header if header.count(name) > 1})
    if duplicates or "" in header:
        raise DataError(f"{path}: the header must name every column once (problem: {duplicates or 'an empty name'})")
    body = []
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise DataError(f"{path}: row {line} has {len(row)} fields, the header has {len(header)}")
        body.append((line, row))
    if not body:
        raise DataError(f"{path}: the file has a header but no rows")
    return header, body


def label_values(path: Path, header: list[str], body: list[tuple[int, list[str]]], label: str) -> np.ndarray:
    """The label column: numbers when every label is one, else text. Missing labels are refused."""
    if label not in header:
        raise DataError(f"{path}: data.label {label!r} is not a column; columns are {header}")
    index = header.index(label)
    labels = [row[index] for _, row in body]
    for (line, _), value in zip(body, labels, strict=True):
        if _is_missing(value):
            raise DataError(f"{path}: row {line} has no value in the label column {label!r}")
    if all(_number(v) is not None for v in labels):
        return np.array([float(v) for v in labels])
    return np.array([v.strip() for v in labels])


def _column_kind(path: Path, name: str, lines: list[int], values: list[str], declared: str | None) -> str:
    present = [(line, v) for line, v in zip(lines, values, strict=True) if not _is_missing(v)]
    if not present:
        raise DataError(f"{path}: column {name!r} has no values")
    numeric = [(line, v) for line, v in present if _number(v) is not None]
    if declared == "categorical":
        return "categorical"
    if len(numeric) == len(present):
        return "numeric"
    if declared == "numeric" or len(numeric) >= NUMERIC_SHARE * len(present):
        line, value = next((line, v) for line, v in present if _number(v) is None)
        raise DataError(f"{path}: column {name!r} is numeric, but row {line} has {value!r}")
    return "categorical"


def column_inputs(path: Path, header: list[str], body: list[tuple[int, list[str]]], kinds: Mapping[str, str],
                  refuse_missing: bool = False) -> dict[str, np.ndarray]:
    """The model inputs of a table: one (rows, 1) array per column, keyed by its input name.

    Numeric columns become floats (NaN where missing), categorical ones text ("" where missing).
    """
    missing_columns = [name for name in kinds if name not in header]
    if missing_columns:
        raise DataError(f"{path}: columns {missing_columns} are missing (expected {list(kinds)})")
    inputs: dict[str, np.ndarray] = {}
    for name, kind in kinds.items():
        index = header.index(name)
        values = []
        for line, row in body:
            text = row[index].strip()
            if _is_missing(text):
                if refuse_missing:
                    raise DataError(f"{path}: row {line} has no value in column {name!r} (data.missing = 'refuse')")
                values.append(math.nan if kind == "numeric" else "")
            elif kind == "numeric":
                number = _number(text)
                if number is None:
                    raise DataError(f"{path}: column {name!r} is numeric, but row {line} has {text!r}")
                values.append(number)
            else:
                values.append(text)
        dtype = "float32" if kind == "numeric" else object
        inputs[input_name(name)] = np.array(values, dtype=dtype)[:, None]
    return inputs


def csv_table(config: DataOptions) -> RawData:
    path = Path(config.path)
    header, body = read_table(path)
    label = config.label
    lines = [line for line, _ in body]
    columns = {name: [row[i] for _, row in body] for i, name in enumerate(header)}
    declared = config.columns
    for name in declared:
        if name not in header:
            raise DataError(f"{path}: data.columns names {name!r}, which is not a column")
    y_raw = label_values(path, header, body, label)
    columns.pop(label)
    numeric_labels = y_raw.dtype.kind == "f"
    task = infer_task(y_raw, config.task)
    if task == CLASSIFICATION:
        y, classes = encode_labels(y_raw, f"{path}: label column {label!r}")
    elif not numeric_labels:
        raise DataError(f"{path}: regression needs numeric labels, but column {label!r} has text")
    else:
        y, classes = y_raw.astype("float32"), None

    if not columns:
        raise DataError(f"{path}: there is no column besides the label {label!r} to learn from")
    kinds = {name: _column_kind(path, name, lines, values, declared.get(name)) for name, values in columns.items()}
    names = {}
    for name in kinds:
        if input_name(name) in names:
            raise DataError(f"{path}: columns {names[input_name(name)]!r} and {name!r} need different names "
                            "(they read the same once punctuation is replaced)")
        names[input_name(name)] = name
    raw = column_inputs(path, header, body, kinds, refuse_missing=config.missing == "refuse")

    def preprocessor(train: dict[str, np.ndarray]) -> Any:
        import keras

        from trainers.layers import FillMissing

        inputs, parts = {}, []
        for name, kind in kinds.items():
            key = input_name(name)
            if kind == "numeric":
                inputs[key] = keras.Input(shape=(1,), name=key, dtype="float32")
                observed = train[key][~np.isnan(train[key])]
                mean = float(observed.mean()) if observed.size else 0.0
                filled = FillMissing(mean, name=f"{key}_fill")(inputs[key])
                scale = keras.layers.Normalization(name=f"{key}_scale")
                scale.adapt(np.where(np.isnan(train[key]), mean, train[key]))
                parts.append(scale(filled))
            else:
                inputs[key] = keras.Input(shape=(1,), name=key, dtype="string")
                vocabulary = sorted({v for v in train[key][:, 0].tolist() if v})
                lookup = keras.layers.StringLookup(vocabulary=vocabulary or ["?"], output_mode="one_hot",
                                                   name=f"{key}_onehot")
                parts.append(lookup(inputs[key]))
        merged = keras.layers.Concatenate(name="columns")(parts) if len(parts) > 1 else parts[0]
        return keras.Model(inputs, merged, name="preprocessing")

    split = split_indices(len(y), config.validation, config.test, config.seed)
    describe = {"source": str(path), "label": label, "columns": kinds}
    return split_arrays(path.stem, task, raw, y, split, preprocessor, classes, describe)
