"""CSV tables: a header row, one label column named in the config, numeric, categorical and text columns.

A column is numeric when its values parse as numbers, text when most of its values are sentences (several
words, and mostly distinct), and categorical otherwise; ``data.columns`` says it where the guess would be
wrong, and ``ignore`` leaves a column out (an id). A column whose values are nearly all numbers but not quite
is refused with the first offending row named, since that is almost always a typo. Missing values (empty,
``NA``, ``NaN``, ``null``, ``?``) are imputed (numbers: the training mean; categories: an "unknown" one;
text: the empty text, all padding) or, with ``data.missing = "refuse"``, refused with the row and column
named. The file must be UTF-8; a row that is not is named.

A text column is learned from alone: the preprocessing cuts it into tokens (``data.text``: words or
characters, with their n-grams), with a vocabulary of the training split's most frequent tokens (others
read as one unknown token), so the tower sees ``data.text.length`` token ids per row. Otherwise the
preprocessing model takes one named input per column. Either way an exported model reads raw rows.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from blocks.tower import CLASSIFICATION, InputKind
from engine.config import DataOptions
from engine.data_options import TextOptions
from trainers.datasets.base import DataError, RawData, encode_labels, infer_task, split_arrays, split_indices

MISSING = {"", "na", "nan", "null", "none", "?"}
NUMERIC_SHARE = 0.8  # this share of numbers, and a few that are not, is a typo (declare the column otherwise)
TEXT_SHARE = 0.5  # a column is text when at least this share of its values have several words and are distinct


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
        content = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{path}: a folder, not a CSV file") from None
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = content[:exc.start].count(b"\n") + 1
        raise DataError(f"{path}: line {line} is not UTF-8 text (byte {content[exc.start]:#04x}); save the file "
                        "as UTF-8") from None
    try:
        rows = list(csv.reader(text.splitlines(keepends=True)))
    except csv.Error as exc:
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
    if declared in ("categorical", "text", "ignore"):
        return declared
    if len(numeric) == len(present):
        return "numeric"
    if declared == "numeric" or len(numeric) >= NUMERIC_SHARE * len(present):
        line, value = next((line, v) for line, v in present if _number(v) is None)
        raise DataError(f"{path}: column {name!r} is numeric, but row {line} has {value!r}")
    sentences = sum(len(v.split()) >= 3 for _, v in present)
    distinct = len({v for _, v in present})
    if sentences >= TEXT_SHARE * len(present) and distinct >= TEXT_SHARE * len(present):
        return "text"
    return "categorical"


def column_inputs(path: Path, header: list[str], body: list[tuple[int, list[str]]], kinds: Mapping[str, str],
                  refuse_missing: bool = False) -> dict[str, np.ndarray]:
    """The model inputs of a table: one (rows, 1) array per column, keyed by its input name.

    Numeric columns become floats (NaN where missing), categorical and text ones strings ("" where missing).
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
    kinds = {name: kind for name, kind in kinds.items() if kind != "ignore"}
    text = [name for name, kind in kinds.items() if kind == "text"]
    if text and len(kinds) > 1:
        others = [name for name in kinds if name != text[0]]
        raise DataError(f"{path}: column {text[0]!r} is text, which is learned from alone; leave out the other "
                        f"columns {others} with data.columns = {{{others[0]} = 'ignore'}} (or declare "
                        f"{text[0]!r} 'categorical')")
    if not kinds:
        raise DataError(f"{path}: every column besides the label {label!r} is ignored; nothing is left to learn from")
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

        if text:
            return tokenizer(input_name(text[0]), train[input_name(text[0])], config.text)
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
    data = split_arrays(path.stem, task, raw, y, split, preprocessor, classes, describe)
    data.kind = InputKind.TOKENS if text else InputKind.FEATURES
    return data


def tokenizer(key: str, train: np.ndarray, text: TextOptions) -> Any:
    """The preprocessing model of a text column: raw strings -> ``text.length`` token ids, with the vocabulary
    of the training rows ``train`` (0 pads, 1 is any token outside the vocabulary)."""
    import keras

    inputs = keras.Input(shape=(1,), name=key, dtype="string")
    vectorize = keras.layers.TextVectorization(
        max_tokens=text.vocabulary, standardize="lower_and_strip_punctuation",
        split="whitespace" if text.tokens == "words" else "character", ngrams=text.ngrams if text.ngrams > 1 else None,
        output_mode="int", output_sequence_length=text.length, name=f"{key}_tokens")
    vectorize.adapt(train[:, 0].astype(str))
    return keras.Model({key: inputs}, vectorize(inputs), name="preprocessing")
