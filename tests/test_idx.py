"""The idx provider: MNIST-format files written by the tests, plain and gzipped; one clear error for each bad file."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
from support import tower_item

from engine.config import DataOptions, resolve_config
from engine.options import read_section
from trainers.datasets import DataError, check_data, load_dataset
from trainers.datasets.idx import FILES, TYPES, idx_files, read_idx, stratified_subset

CODES = {np.dtype(dtype.str[1:]): code for code, dtype in TYPES.items()}


def idx_bytes(array: np.ndarray) -> bytes:
    """``array`` in the IDX format: the magic number, one big-endian size per dimension, big-endian values."""
    code = CODES[array.dtype]
    header = struct.pack(">HBB", 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, array: np.ndarray) -> Path:
    """An IDX file, gzipped when ``path`` ends in ``.gz``."""
    content = idx_bytes(array)
    path.write_bytes(gzip.compress(content) if path.suffix == ".gz" else content)
    return path


def images_for(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Byte images a small network can tell apart: a bright band whose row is the class, over noise."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 60, (len(labels), size, size)).astype("uint8")
    for i, label in enumerate(labels):
        images[i, 2 * label % size] = 250
    return images


def write_folder(folder: Path, train_labels: np.ndarray, test_labels: np.ndarray, *, size: int = 8,
                 gz: bool = False) -> Path:
    """The four standard files of an idx folder."""
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    for split, labels, seed in (("train", train_labels, 1), ("test", test_labels, 2)):
        images_name, labels_name = FILES[split]
        write_idx(folder / f"{images_name}{suffix}", images_for(labels, size, seed))
        write_idx(folder / f"{labels_name}{suffix}", labels.astype("uint8"))
    return folder


def skewed_labels(n: int) -> np.ndarray:
    """``n`` labels of 3 classes, in shares 50% / 30% / 20%, interleaved."""
    labels = np.array([0] * (n // 2) + [1] * (3 * n // 10) + [2] * (n - n // 2 - 3 * n // 10))
    return np.random.default_rng(0).permutation(labels)


def idx_options(folder: Path, **values) -> DataOptions:
    return read_section(DataOptions, {"dataset": "idx", "path": str(folder), **values}, "data")


def test_plain_and_gzipped_folders_give_the_same_splits(tmp_path: Path) -> None:
    train, test = skewed_labels(200), skewed_labels(30)
    plain = idx_files(idx_options(write_folder(tmp_path / "plain", train, test), validation=0.2))
    packed = idx_files(idx_options(write_folder(tmp_path / "packed", train, test, gz=True), validation=0.2))
    assert plain.task == "classification" and plain.classes == ["0", "1", "2"]
    assert {s: plain.inputs[s].shape for s in plain.inputs} == {
        "train": (160, 8, 8, 1), "validation": (40, 8, 8, 1), "test": (30, 8, 8, 1)}, "test: all of t10k"
    assert all(plain.inputs[s].dtype == np.float32 and plain.targets[s].dtype == np.int32 for s in plain.inputs)
    np.testing.assert_array_equal(plain.targets["test"], test)
    for split in plain.inputs:
        np.testing.assert_array_equal(plain.inputs[split], packed.inputs[split])
        np.testing.assert_array_equal(plain.targets[split], packed.targets[split])


def test_byte_pixels_are_scaled_to_the_unit_interval(tmp_path: Path) -> None:
    pytest.importorskip("keras")
    folder = write_folder(tmp_path / "f", skewed_labels(60), skewed_labels(20))
    data = load_dataset(idx_options(folder, validation=0.2))
    assert data.spec.input_shape == (8, 8, 1) and data.outputs == 3
    np.testing.assert_allclose(data.features["test"][..., 0], images_for(skewed_labels(20), 8, 2) / 255, atol=1e-6)


def test_other_element_types_read_in_native_byte_order(tmp_path: Path) -> None:
    values = np.arange(24, dtype="float32").reshape(2, 3, 4) / 7
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "f.idx", values)), values)
    shorts = np.array([-2, 300, 7], dtype="int16")
    read = read_idx(write_idx(tmp_path / "s.idx.gz", shorts))
    assert read.dtype == np.int16 and read.dtype.isnative and read.tolist() == [-2, 300, 7]


def test_samples_draws_a_stratified_subset_fixed_by_the_seed(tmp_path: Path) -> None:
    labels = skewed_labels(600)
    chosen = stratified_subset(labels, 100, seed=0)
    assert len(chosen) == len(set(chosen)) == 100 and np.bincount(labels[chosen]).tolist() == [50, 30, 20]
    np.testing.assert_array_equal(chosen, stratified_subset(labels, 100, seed=0))
    assert not np.array_equal(chosen, stratified_subset(labels, 100, seed=1))
    assert np.bincount(labels[stratified_subset(labels, 7, seed=0)]).tolist() == [4, 2, 1], "largest remainders"
    assert len(stratified_subset(labels, 5000, seed=0)) == 600, "more than there are: all of them"

    folder = write_folder(tmp_path / "f", labels, skewed_labels(30))
    raw = idx_files(idx_options(folder, samples=100, validation=0.2))
    used = np.concatenate([raw.targets["train"], raw.targets["validation"]])
    assert len(raw.targets["train"]) == 80 and np.bincount(used).tolist() == [50, 30, 20]
    assert len(raw.targets["test"]) == 30, "samples caps the training files only"
    again = idx_files(idx_options(folder, samples=100, validation=0.2))
    np.testing.assert_array_equal(raw.inputs["train"], again.inputs["train"])
    other = idx_files(idx_options(folder, samples=100, validation=0.2, seed=1))
    assert not np.array_equal(raw.inputs["train"], other.inputs["train"])


TRAIN_IMAGES, TRAIN_LABELS = FILES["train"]


def _wrong_magic(folder: Path) -> Path:
    path = folder / TRAIN_IMAGES
    path.write_bytes(b"\x01\x02" + path.read_bytes()[2:])
    return path


def _unknown_type(folder: Path) -> Path:
    path = folder / TRAIN_IMAGES
    path.write_bytes(b"\x00\x00\x07" + path.read_bytes()[3:])
    return path


def _gzipped_without_gz(folder: Path) -> Path:
    path = folder / TRAIN_IMAGES
    path.write_bytes(gzip.compress(path.read_bytes()))
    return path


def _truncated(folder: Path) -> Path:
    path = folder / TRAIN_IMAGES
    path.write_bytes(path.read_bytes()[:-5])
    return path


def _truncated_header(folder: Path) -> Path:
    path = folder / TRAIN_LABELS
    path.write_bytes(path.read_bytes()[:6])
    return path


def _count_mismatch(folder: Path) -> Path:
    write_idx(folder / TRAIN_LABELS, skewed_labels(40).astype("uint8"))
    return folder / TRAIN_LABELS


def _missing(folder: Path) -> Path:
    (folder / FILES["test"][1]).unlink()
    return folder / FILES["test"][1]


def _bad_gzip(folder: Path) -> Path:
    (folder / TRAIN_LABELS).unlink()
    path = folder / f"{TRAIN_LABELS}.gz"
    path.write_bytes(b"these bytes are not gzip")
    return path


def _cut_gzip(folder: Path) -> Path:
    (folder / TRAIN_LABELS).unlink()
    path = folder / f"{TRAIN_LABELS}.gz"
    path.write_bytes(gzip.compress(idx_bytes(skewed_labels(60).astype("uint8")))[:-12])
    return path


@pytest.mark.parametrize(("damage", "message"), [
    (_wrong_magic, r"not an IDX file: the magic number 0x01020803 does not start with two zero bytes$"),
    (_unknown_type, r"unknown IDX type code 0x07"),
    (_gzipped_without_gz, r"does not start with two zero bytes \(it is gzip-compressed: name it .gz\)"),
    (_truncated, r"truncated: the header declares 60 x 8 x 8 values \(3856 bytes in all\), the file has 3851 bytes"),
    (_truncated_header, r"truncated: 6 bytes, shorter than the 8-byte header of 1 dimensions"),
    (_count_mismatch, r"holds 60 images but .*train-labels-idx1-ubyte holds 40 labels"),
    (_missing, r"no file t10k-labels-idx1-ubyte \(or t10k-labels-idx1-ubyte.gz\)"),
    (_bad_gzip, r"not a valid gzip file"),
    (_cut_gzip, r"not a valid gzip file"),
])
def test_a_bad_file_is_refused_with_its_name_and_the_problem(tmp_path: Path, damage, message) -> None:
    folder = write_folder(tmp_path / "f", skewed_labels(60), skewed_labels(20))
    named = damage(folder)
    with pytest.raises(DataError, match=message) as refused:
        idx_files(idx_options(folder))
    text = str(refused.value)
    assert str(named) in text or (str(folder) in text and named.name in text), text


def test_a_folder_that_is_not_there_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=f"{tmp_path / 'nowhere'}: no such folder"):
        idx_files(idx_options(tmp_path / "nowhere"))


def test_a_search_on_idx_files_is_classification_and_trains_a_2d_tower(tmp_path: Path) -> None:
    pytest.importorskip("keras")
    from trainers.evaluator import make_evaluator

    folder = write_folder(tmp_path / "f", np.arange(200) % 4, np.arange(40) % 4, size=8, gz=True)
    config = check_data(resolve_config({
        "space": {"kind": "tower", "blocks": ["conv2d_16", "maxpool2d", "global_avg_pool2d", "dense_32"]},
        "data": {"dataset": "idx", "path": str(folder)}, "training": {"epochs": 1}}))
    assert config.evaluator.kind == "keras" and config.data.task == "classification"
    assert config.search.metric == "val_accuracy" and config.search.mode == "max"
    hyperparameters = {"learning_rate": 0.003, "dropout": 0.0, "batch_size": 32, "optimizer": "adam"}
    outcome = make_evaluator(config).evaluate(
        tower_item(1, ["conv2d_16", "maxpool2d", "dense_32"], hyperparameters=hyperparameters), fetch=None)
    assert 0.0 <= outcome.metrics["val_accuracy"] <= 1.0 and outcome.metrics["epochs"] == 1
