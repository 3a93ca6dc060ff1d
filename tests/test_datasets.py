"""Data providers: real files made by the tests, real preprocessing, one clear error for bad input."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from support import ROOT

from engine.config import DataOptions, resolve_config
from engine.options import read_section
from trainers.datasets import DataError, check_data, load_dataset

sys.path.insert(0, str(ROOT / "examples"))
from make_shapes import make_shapes  # noqa: E402

pytest.importorskip("keras")


def data_config(**values) -> DataOptions:
    """A ``data`` section: the defaults, with ``values`` read and checked as a ``[data]`` table is."""
    return read_section(DataOptions, values, "data")


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text.strip() + "\n")
    return path


CSV = """
age,plan,score,label
34,basic,1.5,yes
,pro,2.5,no
51,NA,0.5,yes
22,basic,,no
45,family,3.0,yes
29,pro,2.0,no
61,basic,1.0,yes
38,family,2.5,no
"""


def test_a_csv_with_text_columns_and_gaps_becomes_finite_features(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "t.csv", CSV)
    data = load_dataset(data_config(dataset="csv", path=str(path), label="label", validation=0.25, test=0.25))
    assert data.task == "classification" and data.classes == ["no", "yes"]
    assert data.describe["columns"] == {"age": "numeric", "plan": "categorical", "score": "numeric"}
    train = data.features["train"]
    assert train.shape[1] == 1 + 1 + 4  # age, score, and plan one-hot over {basic, family, pro} + unknown
    assert all(np.all(np.isfinite(f)) for f in data.features.values())
    assert sum(len(t) for t in data.targets.values()) == 8
    again = load_dataset(data_config(dataset="csv", path=str(path), label="label", validation=0.25, test=0.25))
    assert again is data, "a trainer loads its data once"


@pytest.mark.parametrize(("text", "options", "message"), [
    (CSV, {"label": "target"}, "data.label 'target' is not a column; columns are"),
    (CSV.replace("1.0,yes", "high,yes"), {}, "column 'score' is numeric, but row 8 has 'high'"),
    (CSV, {"missing": "refuse"}, "row 3 has no value in column 'age'"),
    (CSV.replace("38,family,2.5,no", "38,family,2.5,"), {}, "row 9 has no value in the label column 'label'"),
    ("", {}, "the file is empty"),
    ("a,b,label\n1,2", {}, "row 2 has 2 fields, the header has 3"),
    ("a,a,label\n1,2,3", {}, "the header must name every column once"),
])
def test_bad_csv_files_name_the_row_and_column(tmp_path: Path, text: str, options: dict, message: str) -> None:
    path = write_csv(tmp_path / "bad.csv", text) if text else tmp_path / "bad.csv"
    path.touch()
    with pytest.raises(DataError, match=message):
        load_dataset(data_config(**{"dataset": "csv", "path": str(path), "label": "label", **options}))


def test_an_image_folder_with_three_classes(tmp_path: Path) -> None:
    folder = make_shapes(tmp_path / "shapes", per_class=12)
    (folder / "notes.txt").write_text("not an image and not a class")
    data = load_dataset(data_config(dataset="images", path=str(folder), image_size=[16, 16]))
    assert data.classes == ["circle", "square", "triangle"]
    assert data.features["train"].shape[1:] == (16, 16, 3)
    assert data.features["train"].min() >= 0.0 and data.features["train"].max() <= 1.0
    assert sum(len(t) for t in data.targets.values()) == 36


def test_bad_image_folders_say_what_is_wrong(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no class folders"):
        load_dataset(data_config(dataset="images", path=str(tmp_path / "empty")))
    folder = make_shapes(tmp_path / "shapes", per_class=3)
    (folder / "hexagon").mkdir()
    with pytest.raises(DataError, match="the class folder 'hexagon' has no images"):
        load_dataset(data_config(dataset="images", path=str(folder)))
    (folder / "hexagon" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="broken.png: not a readable image"):
        load_dataset(data_config(dataset="images", path=str(folder)))


def test_npz_arrays_of_any_rank_and_regression(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 6, 5, 2)).astype("float32")
    np.savez(tmp_path / "cube.npz", x=x, y=rng.integers(0, 4, 40))
    data = load_dataset(data_config(dataset="npz", path=str(tmp_path / "cube.npz")))
    assert data.task == "classification" and data.features["train"].shape[1:] == (6, 5, 2)
    np.savez(tmp_path / "reg.npz", x=rng.normal(size=(40, 3)), y=rng.normal(size=40))
    npz = {"dataset": "npz", "path": str(tmp_path / "reg.npz")}
    assert check_data(resolve_config({"space": {"kind": "tower"}, "data": npz})).data.task == "regression"
    np.savez(tmp_path / "nolabel.npz", x=x)
    with pytest.raises(DataError, match="no array 'y'"):
        load_dataset(data_config(dataset="npz", path=str(tmp_path / "nolabel.npz")))


def test_the_built_in_datasets_and_their_splits() -> None:
    mnist = load_dataset(data_config(dataset="mnist1d", samples=500))
    assert mnist.spec.input_shape == (40,) and mnist.spec.outputs == 10
    assert len(mnist.targets["test"]) == 100, "mnist1d's own test split"
    digits = load_dataset(data_config(dataset="digits"))
    assert digits.spec.input_shape == (8, 8, 1)
    sizes = {split: len(t) for split, t in digits.targets.items()}
    assert sum(sizes.values()) == 1797 and abs(sizes["test"] - 270) <= 1
    diabetes = load_dataset(data_config(dataset="diabetes"))
    assert diabetes.task == "regression" and diabetes.spec.target_scale[0] > 10


def test_a_keras_config_freezes_the_task_and_checks_the_data(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "t.csv", CSV.replace("yes", "1.5").replace("no", "2.25"))
    data = {"dataset": "csv", "path": str(path), "label": "label"}
    config = resolve_config({"space": {"kind": "tower"}, "data": data})
    assert (config.data.task, config.search.metric) == ("auto", ""), "resolving never reads the data"
    checked = check_data(config)
    assert checked.data.task == "regression"
    assert (checked.search.metric, checked.search.mode) == ("val_mae", "min")
