"""Datasets: what a provider hands the Keras trainer, and the pieces every provider shares.

A provider reads its source (generated, bundled, a CSV, an ``.npz``, an image folder) into raw
arrays, splits them deterministically into train / validation / test, and supplies a Keras
preprocessing model fitted on the training split only (scaling, category encoding, imputation). The
trainer turns raw arrays into features with that model once; an exported model puts the same model
in front of the tower, so raw rows go in and the arithmetic is the same.

Example::

    >>> data = load_dataset(config)            # trainers.datasets
    >>> data.features["train"].shape, data.spec
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from blocks.tower import CLASSIFICATION, REGRESSION, DataSpec, InputKind

SPLITS = ("train", "validation", "test")


class DataError(ValueError):
    """Data that cannot be used; the message names the file, column, row or key."""


@dataclass
class RawData:
    """A provider's output: raw inputs and targets per split, and how to preprocess them.

    ``inputs[split]`` is an array, or for tables a dict of column arrays; ``preprocessor`` builds
    the Keras model that maps raw inputs to features, fitted on ``inputs["train"]``. ``kind`` says what the
    features are where the raw inputs' shape does not (audio becomes spectrograms, text token ids).
    """

    name: str
    task: str
    inputs: dict[str, Any]
    targets: dict[str, np.ndarray]
    preprocessor: Callable[[Any], Any]
    classes: list[str] | None = None
    describe: dict[str, Any] = field(default_factory=dict)
    kind: InputKind | None = None

    @property
    def input_kind(self) -> InputKind:
        """What the tower will see (read without TensorFlow): ``kind``, or what the raw shape says."""
        if self.kind is not None:
            return self.kind
        train = self.inputs["train"]
        return InputKind.FEATURES if isinstance(train, dict) else InputKind.of_shape(train.shape[1:])


@dataclass
class Dataset:
    """Features ready for training, per split, and the preprocessing model that made them."""

    name: str
    task: str
    features: dict[str, np.ndarray]
    targets: dict[str, np.ndarray]
    raw: dict[str, Any]
    preprocessing: Any
    classes: list[str] | None
    describe: dict[str, Any]
    tokens: int = 0  # the vocabulary's size where the features are token ids

    @property
    def outputs(self) -> int:
        if self.task == CLASSIFICATION:
            return len(self.classes)
        targets = self.targets["train"]
        return 1 if targets.ndim == 1 else targets.shape[1]

    @property
    def spec(self) -> DataSpec:
        shape = tuple(int(d) for d in self.features["train"].shape[1:])
        if self.task == CLASSIFICATION:
            return DataSpec(shape, self.task, self.outputs, tokens=self.tokens)
        targets = self.targets["train"].reshape(len(self.targets["train"]), -1).astype("float64")
        scale = np.where(targets.std(0) > 0, targets.std(0), 1.0)
        return DataSpec(shape, self.task, self.outputs, tuple(map(float, targets.mean(0))), tuple(map(float, scale)),
                        tokens=self.tokens)


def split_indices(n: int, validation: float, test: float, seed: int) -> dict[str, np.ndarray]:
    """A deterministic shuffled split of ``n`` examples into train / validation / test indices."""
    if n < 3:
        raise DataError(f"{n} examples are too few to split into train, validation and test")
    order = np.random.default_rng(seed).permutation(n)
    n_test = max(1, round(n * test)) if test > 0 else 0
    n_validation = max(1, round(n * validation))
    if n - n_test - n_validation < 1:
        raise DataError(f"{n} examples leave nothing to train on with validation={validation} and test={test}")
    return {
        "test": np.sort(order[:n_test]),
        "validation": np.sort(order[n_test:n_test + n_validation]),
        "train": np.sort(order[n_test + n_validation:]),
    }


def encode_labels(labels: np.ndarray, source: str) -> tuple[np.ndarray, list[str]]:
    """Class labels (any type) -> integer codes 0..k-1 and the class names, in sorted order."""
    names = sorted({str(label) for label in labels.tolist()})
    if len(names) < 2:
        raise DataError(f"{source} has {len(names)} class(es); classification needs at least 2")
    index = {name: i for i, name in enumerate(names)}
    return np.array([index[str(label)] for label in labels.tolist()], dtype="int32"), names


def infer_task(targets: np.ndarray, task: str) -> str:
    """``auto``: classification for integer, boolean or text targets, regression for fractional ones."""
    if task != "auto":
        return task
    if targets.dtype.kind in "biuUSO":
        return CLASSIFICATION
    values = targets.astype("float64")
    whole = np.all(np.isfinite(values)) and np.all(values == np.round(values))
    return CLASSIFICATION if whole and len(np.unique(values)) <= 50 else REGRESSION


def normalizer(train: np.ndarray) -> Any:
    """A preprocessing model that standardises each feature (the last axis) with training statistics."""
    import keras

    inputs = keras.Input(shape=train.shape[1:], name="raw", dtype="float32")
    layer = keras.layers.Normalization(axis=-1, name="standardise")
    layer.adapt(train.astype("float32"))
    return keras.Model(inputs, layer(inputs), name="preprocessing")


def rescaler(shape: tuple[int, ...], scale: float) -> Any:
    """A preprocessing model that multiplies raw values by ``scale`` (pixel intensities to [0, 1])."""
    import keras

    inputs = keras.Input(shape=shape, name="raw", dtype="float32")
    return keras.Model(inputs, keras.layers.Rescaling(scale, name="rescale")(inputs), name="preprocessing")


def take(inputs: Any, indices: np.ndarray) -> Any:
    """Rows ``indices`` of an array or of every column of a table."""
    if isinstance(inputs, dict):
        return {name: column[indices] for name, column in inputs.items()}
    return inputs[indices]


def split_arrays(name: str, task: str, x: Any, y: np.ndarray, split: dict[str, np.ndarray],
                 preprocessor: Callable[[Any], Any], classes: list[str] | None,
                 describe: dict[str, Any]) -> RawData:
    return RawData(name, task, {s: take(x, split[s]) for s in SPLITS}, {s: y[split[s]] for s in SPLITS},
                   preprocessor, classes, describe)


def apply_model(model: Any, inputs: Any, batch_size: int = 4096) -> np.ndarray:
    """``model`` on raw inputs in batches, as a numpy array.

    Keras' ``predict`` refuses text columns held in numpy arrays; here they go in as string tensors.
    """
    import keras
    import tensorflow as tf

    def tensor(values: np.ndarray) -> Any:
        return tf.constant(values.astype(str)) if values.dtype.kind in "OUS" else tf.constant(values)

    rows = len(next(iter(inputs.values()))) if isinstance(inputs, dict) else len(inputs)
    outputs = []
    for start in range(0, rows, batch_size):
        batch = take(inputs, np.arange(start, min(start + batch_size, rows)))
        batch = {k: tensor(v) for k, v in batch.items()} if isinstance(batch, dict) else tensor(batch)
        outputs.append(keras.ops.convert_to_numpy(model(batch, training=False)))
    return np.concatenate(outputs) if outputs else np.zeros((0,), dtype="float32")


def prepare(raw: RawData) -> Dataset:
    """Fit the preprocessing on the training split and compute every split's features once."""
    preprocessing = raw.preprocessor(raw.inputs["train"])
    features = {split: apply_model(preprocessing, raw.inputs[split]).astype("float32") for split in SPLITS}
    for split, values in features.items():
        if not np.all(np.isfinite(values)):
            raise DataError(f"the {split} split has values that are not finite after preprocessing")
    tokens = 0
    if raw.input_kind == InputKind.TOKENS:  # the vocabulary the text layer kept, padding and unknown included
        tokens = max(layer.vocabulary_size() for layer in preprocessing.layers if hasattr(layer, "vocabulary_size"))
    return Dataset(raw.name, raw.task, features, raw.targets, raw.inputs, preprocessing, raw.classes, raw.describe,
                   tokens)
