"""Built-in datasets, made or read on this machine, never downloaded.

- ``mnist1d``: MNIST-1D (Greydanus, 2020), generated with ``mnist1d.data.make_dataset``: 40-step
  sequences of 10 digit templates; the package's own 80/20 split gives the test set.
- ``digits``: scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10 classes).
- ``diabetes``: scikit-learn's bundled diabetes progression data (442 patients, regression).
"""

from __future__ import annotations

import random

import numpy as np

from blocks.tower import CLASSIFICATION, REGRESSION
from engine.config import DataOptions
from trainers.datasets.base import RawData, normalizer, rescaler, split_arrays, split_indices


def mnist1d(config: DataOptions) -> RawData:
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = config.samples
    args.seed = config.seed
    # make_dataset seeds numpy's and Python's global generators; keep the caller's untouched.
    numpy_state, python_state = np.random.get_state(), random.getstate()
    try:
        generated = make_dataset(args)
    finally:
        np.random.set_state(numpy_state)
        random.setstate(python_state)
    x, y = generated["x"].astype("float32"), generated["y"].astype("int32")
    split = split_indices(len(x), validation=config.validation, test=0, seed=config.seed)
    inputs = {"train": x[split["train"]], "validation": x[split["validation"]],
              "test": generated["x_test"].astype("float32")}
    targets = {"train": y[split["train"]], "validation": y[split["validation"]],
               "test": generated["y_test"].astype("int32")}
    return RawData("mnist1d", CLASSIFICATION, inputs, targets, normalizer, [str(d) for d in range(10)],
                   {"source": f"mnist1d.make_dataset(num_samples={args.num_samples}, seed={args.seed})"})


def digits(config: DataOptions) -> RawData:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = bunch.images.astype("float32")[..., None]
    split = split_indices(len(x), config.validation, config.test, config.seed)
    return split_arrays("digits", CLASSIFICATION, x, bunch.target.astype("int32"), split,
                        lambda train: rescaler(train.shape[1:], 1 / 16), [str(d) for d in range(10)],
                        {"source": "sklearn.datasets.load_digits"})


def diabetes(config: DataOptions) -> RawData:
    from sklearn.datasets import load_diabetes

    bunch = load_diabetes()
    x, y = bunch.data.astype("float32"), bunch.target.astype("float32")
    split = split_indices(len(x), config.validation, config.test, config.seed)
    return split_arrays("diabetes", REGRESSION, x, y, split, normalizer, None,
                        {"source": "sklearn.datasets.load_diabetes", "columns": list(bunch.feature_names)})
