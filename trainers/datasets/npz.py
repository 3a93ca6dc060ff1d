"""``.npz`` files: an array ``x`` of examples (any rank) and an array ``y`` of targets.

Class targets may be integers, booleans or text; fractional targets mean regression (``data.task``
overrides the guess). Features are standardised per channel (their last axis) with training statistics.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from blocks.tower import CLASSIFICATION
from engine.config import DataOptions
from trainers.datasets.base import (
    DataError,
    RawData,
    encode_labels,
    infer_task,
    normalizer,
    split_arrays,
    split_indices,
)


def npz_arrays(config: DataOptions) -> RawData:
    path = Path(config.path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (ValueError, OSError) as exc:
        raise DataError(f"{path}: not a readable .npz file ({exc})") from None
    for key in ("x", "y"):
        if key not in arrays:
            raise DataError(f"{path}: no array {key!r} (it holds {sorted(arrays) or 'nothing'})")
    x, y = arrays["x"], arrays["y"]
    if x.ndim < 1 or len(x) != len(y):
        raise DataError(f"{path}: x has {len(x)} examples but y has {len(y)}")
    if x.dtype.kind not in "biuf":
        raise DataError(f"{path}: x must be numeric, not {x.dtype}")
    x = x.astype("float32")
    if x.ndim == 1:
        x = x[:, None]
    if not np.all(np.isfinite(x)):
        row = int(np.argwhere(~np.isfinite(x.reshape(len(x), -1)))[0][0])
        raise DataError(f"{path}: x[{row}] has a value that is not finite")
    task = infer_task(y, config.task)
    if task == CLASSIFICATION:
        y, classes = encode_labels(y, f"{path}: y")
    else:
        if y.dtype.kind not in "biuf":
            raise DataError(f"{path}: regression needs numeric y, not {y.dtype}")
        y, classes = y.astype("float32"), None
    split = split_indices(len(x), config.validation, config.test, config.seed)
    return split_arrays(path.stem, task, x, y, split, normalizer, classes, {"source": str(path), "shape": x.shape[1:]})
