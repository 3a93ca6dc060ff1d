"""IDX files, the format of MNIST, Fashion-MNIST, KMNIST and EMNIST: a folder holding the standard four.

``data.path`` is a folder with ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``, each plain or gzipped (``.gz``). The search
reads ``data.samples`` examples of the training files (a stratified subset: the class proportions
kept, drawn with ``data.seed``) and takes ``data.validation`` of them for validation; the test split
is the whole official ``t10k`` set. Images become (height, width, 1) arrays; the preprocessing model
scales byte pixels to [0, 1], as for an image folder (other element types are standardised).

An IDX file is a magic number (two zero bytes, a type code, the number of dimensions), one big-endian
uint32 size per dimension, then the values, big-endian, in row-major order.

Example::

    >>> images, labels = read_idx(Path("train-images-idx3-ubyte.gz")), read_idx(Path("train-labels-idx1-ubyte.gz"))
    >>> images.shape, images.dtype, labels.shape
    ((60000, 28, 28), dtype('uint8'), (60000,))
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from blocks.tower import CLASSIFICATION
from engine.config import DataOptions
from trainers.datasets.base import DataError, RawData, normalizer, rescaler, split_indices

#: The standard element types by their type code (the third byte of the magic number).
TYPES = {0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
         0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def find_file(folder: Path, name: str) -> Path:
    """``folder/name``, or ``folder/name.gz`` where only that exists."""
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise DataError(f"{folder}: no file {name} (or {name}.gz); an idx folder holds "
                    f"{', '.join(n for pair in FILES.values() for n in pair)}")


def read_idx(path: Path) -> np.ndarray:
    """The array an IDX file holds (plain, or gzipped when its name ends in ``.gz``), in native byte order."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as handle:
                content = handle.read()
        else:
            content = path.read_bytes()
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: not a valid gzip file ({exc})") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc})") from None
    if len(content) < 4:
        raise DataError(f"{path}: truncated: {len(content)} bytes, shorter than the 4-byte magic number")
    zeros, code, ndim = struct.unpack(">HBB", content[:4])
    if zeros != 0:
        hint = " (it is gzip-compressed: name it .gz)" if content[:2] == b"\x1f\x8b" else ""
        raise DataError(f"{path}: not an IDX file: the magic number 0x{content[:4].hex()} does not start with "
                        f"two zero bytes{hint}")
    if code not in TYPES:
        raise DataError(f"{path}: unknown IDX type code 0x{code:02x} in the magic number 0x{content[:4].hex()} "
                        f"(known: {', '.join(f'0x{c:02x}' for c in TYPES)})")
    if ndim == 0:
        raise DataError(f"{path}: the magic number 0x{content[:4].hex()} declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(content) < header:
        raise DataError(f"{path}: truncated: {len(content)} bytes, shorter than the {header}-byte header "
                        f"of {ndim} dimensions")
    shape = struct.unpack(f">{ndim}I", content[4:header])
    dtype = TYPES[code]
    expected = int(np.prod(shape, dtype="int64")) * dtype.itemsize
    if len(content) - header != expected:
        problem = "truncated" if len(content) - header < expected else "longer than its header says"
        raise DataError(f"{path}: {problem}: the header declares {' x '.join(map(str, shape))} values "
                        f"({header + expected} bytes in all), the file has {len(content)} bytes")
    values = np.frombuffer(content, dtype=dtype, offset=header).reshape(shape)
    return values.astype(dtype.newbyteorder("="))


def read_pair(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray, Path]:
    """One split's images, as (n, height, width, channels), and labels; and the labels file (named in errors)."""
    image_path, label_path = (find_file(folder, name) for name in FILES[split])
    images, labels = read_idx(image_path), read_idx(label_path)
    if images.ndim not in (3, 4):
        raise DataError(f"{image_path}: images must have 3 dimensions (count, height, width) or 4 (and "
                        f"channels), not {images.ndim} {list(images.shape)}")
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise DataError(f"{label_path}: labels must be one integer per image, not {labels.dtype} "
                        f"{list(labels.shape)}")
    if len(images) != len(labels):
        raise DataError(f"{image_path} holds {len(images)} images but {label_path} holds {len(labels)} labels")
    return (images[..., None] if images.ndim == 3 else images), labels, label_path


def stratified_subset(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Sorted indices of ``size`` examples drawn with ``seed``, each class's share of them as in ``labels``
    (shares rounded by largest remainder); all of them when ``size`` is not smaller."""
    if size >= len(labels):
        return np.arange(len(labels))
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * size / len(labels)
    quota = np.floor(exact).astype("int64")
    quota[np.argsort(quota - exact, kind="stable")[:size - quota.sum()]] += 1
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(np.flatnonzero(labels == c), n, replace=False) for c, n in zip(classes, quota, strict=True)]
    return np.sort(np.concatenate(chosen))


def idx_files(config: DataOptions) -> RawData:
    folder = Path(config.path)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder (an idx dataset is a folder of IDX files)")
    x, y, train_labels = read_pair(folder, "train")
    x_test, y_test, test_labels = read_pair(folder, "test")
    if x.shape[1:] != x_test.shape[1:]:
        raise DataError(f"{folder}: training images are {list(x.shape[1:])}, test images {list(x_test.shape[1:])}")
    values = np.unique(y)
    if len(values) < 2:
        raise DataError(f"{train_labels} has {len(values)} class(es); classification needs at least 2")
    unknown = np.setdiff1d(np.unique(y_test), values)
    if unknown.size:
        raise DataError(f"{test_labels} has labels the training labels lack: {unknown.tolist()[:10]}")
    subset = stratified_subset(y, config.samples, config.seed)
    describe = {"source": str(folder), "image_shape": list(x.shape[1:]),
                "examples": f"{len(subset)} of the {len(y)} in the training files, and the {len(y_test)} test ones"}
    x, y = x[subset], np.searchsorted(values, y[subset]).astype("int32")
    split = split_indices(len(x), validation=config.validation, test=0, seed=config.seed)
    preprocessor = (lambda train: rescaler(train.shape[1:], 1 / 255)) if x.dtype == np.uint8 else normalizer
    inputs = {"train": x[split["train"]], "validation": x[split["validation"]], "test": x_test}
    inputs = {name: array.astype("float32") for name, array in inputs.items()}
    targets = {"train": y[split["train"]], "validation": y[split["validation"]],
               "test": np.searchsorted(values, y_test).astype("int32")}
    return RawData(folder.name, CLASSIFICATION, inputs, targets, preprocessor, [str(v) for v in values.tolist()],
                   describe)
