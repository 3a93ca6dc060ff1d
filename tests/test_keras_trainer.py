"""The Keras trainer, export and use, end to end: real TensorFlow on tiny models and data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from support import ROOT, status_json, tower_item, write_toml

from engine import events as ev
from engine.config import Config, apply_overrides, resolve_config
from engine.metrics import problem_with
from engine.work import WorkItem
from trainers.evaluator import EvaluationError, make_evaluator

keras = pytest.importorskip("keras")

HP = {"learning_rate": 0.003, "dropout": 0.0, "batch_size": 32, "optimizer": "adam"}


def keras_config(**overrides) -> Config:
    raw = {"space": {"kind": "tower", "max_depth": 3}, "data": {"dataset": "mnist1d", "samples": 400},
           "training": {"epochs": 2, "patience": 1}}
    return resolve_config(apply_overrides(raw, {k.replace("__", "."): v for k, v in overrides.items()}))


def work(architecture, trial=1, **hp) -> WorkItem:
    return tower_item(trial, architecture, seed=11, hyperparameters={**HP, **hp})


def test_a_candidate_trains_and_reports_metrics_and_weights() -> None:
    config = keras_config()
    evaluator = make_evaluator(config)
    epochs = []
    outcome = evaluator.evaluate(work(["conv1d_16_k3", "maxpool1d", "dense_32"]), fetch=None, report=epochs.append)
    metrics = outcome.metrics
    assert problem_with(config.evaluator.kind, metrics) is None, "what the engine accepts (engine/metrics.py)"
    assert 0.0 <= metrics["val_accuracy"] <= 1.0 and np.isfinite(metrics["val_loss"])
    assert metrics["params"] > 1000 and 1 <= metrics["epochs"] <= 2 and metrics["train_seconds"] > 0
    assert outcome.artifacts["weights"][:4] == b"\x89HDF", "weights travel as an HDF5 file"
    assert [epoch.epoch for epoch in epochs] == list(range(1, int(metrics["epochs"]) + 1)), "one report an epoch"
    assert all(set(epoch.metrics) == {"val_accuracy", "val_loss"} for epoch in epochs)
    assert all(problem_with(config.evaluator.kind, epoch.metrics) is None for epoch in epochs)
    again = evaluator.evaluate(work(["conv1d_16_k3", "maxpool1d", "dense_32"]), fetch=None)
    assert again.metrics["val_accuracy"] == metrics["val_accuracy"], "the trial's seed fixes the training"


def test_a_batch_normalised_tower_scores_above_chance_on_validation_from_its_first_epochs() -> None:
    """Its running statistics follow training within an epoch (blocks.registry.BATCH_NORM_MOMENTUM): with Keras'
    default momentum the same tower scored chance (0.10) on validation for its first four epochs, and early
    stopping and the stopping rules cut it there."""
    evaluator = make_evaluator(keras_config(data__samples=2000, training__epochs=4, training__patience=0))
    curve = []
    evaluator.evaluate(work(["residual_conv1d_32", "conv1d_32_k3"], learning_rate=0.003, batch_size=64),
                       fetch=None, report=curve.append)
    assert [point.epoch for point in curve] == [1, 2, 3, 4]
    assert min(point.metrics["val_accuracy"] for point in curve[1:]) > 0.3, curve


def test_tensorboard_logs_are_written_per_trial(tmp_path: Path) -> None:
    evaluator = make_evaluator(keras_config(training__tensorboard=str(tmp_path / "tb"), training__epochs=1))
    evaluator.evaluate(work(["dense_32"], trial=42), fetch=None)
    assert any((tmp_path / "tb" / "trial-42").rglob("events.out.tfevents.*"))


def test_over_budget_and_diverging_candidates_fail_with_a_reason() -> None:
    evaluator = make_evaluator(keras_config(space__max_params=500))
    with pytest.raises(EvaluationError, match=r"parameters exceed space.max_params = 500") as over:
        evaluator.evaluate(work(["dense_128"]), fetch=None)
    assert over.value.metrics["params"] > 500, "the size goes with the failure, for the beam's budget model"
    diverging = make_evaluator(keras_config())
    with pytest.raises(EvaluationError, match="loss became NaN"):
        diverging.evaluate(work(["dense_32"], learning_rate=1e12, optimizer="sgd"), fetch=None)
    with pytest.raises(EvaluationError, match="cannot be built: block 0 .conv2d_16. takes an image"):
        diverging.evaluate(work(["conv2d_16"]), fetch=None)


def test_regression_reports_mean_absolute_error() -> None:
    config = resolve_config({"space": {"kind": "tower"}, "data": {"dataset": "diabetes"},
                             "training": {"epochs": 3}})
    outcome = make_evaluator(config).evaluate(work(["dense_32"], batch_size=16), fetch=None)
    assert config.search.metric == "val_mae" and 0 < outcome.metrics["val_mae"] < 200
    assert problem_with(config.evaluator.kind, outcome.metrics) is None


CHURN = """
[search]
trials = 3
seed = 4
[space]
kind = "tower"
blocks = ["dense_32", "residual_dense_64"]
max_depth = 2
[space.hparams]
learning_rate = [0.003]
batch_size = [32]
dropout = [0.0]
optimizer = ["adam"]
[data]
dataset = "csv"
path = "{path}"
label = "churned"
[training]
epochs = 3
"""


@pytest.fixture(scope="module")
def churn_run(tmp_path_factory) -> Path:
    """A finished search on the example CSV (2 local trainer processes), shared by the export tests."""
    import subprocess
    import sys

    folder = tmp_path_factory.mktemp("churn")
    config = write_toml(folder / "churn.toml", CHURN.format(path=ROOT / "examples" / "data" / "customers.csv"))
    subprocess.run([sys.executable, "-m", "engine", "run", "--run", str(folder / "run"), "--config", str(config),
                    "--quiet"], check=True, capture_output=True, timeout=300, cwd=folder)
    return folder / "run"


def test_export_then_predict_gives_what_the_trained_model_gives(churn_run: Path, tmp_path: Path) -> None:
    from engine.fold import fold_records
    from engine.log import EventLog
    from trainers.datasets import load_dataset
    from trainers.datasets.base import apply_model
    from trainers.export import export_model, load_model, predict, rebuild

    out = export_model(churn_run, tmp_path / "model")
    assert {p.name for p in out.iterdir()} == {"model.keras", "saved_model", "lineage.json"}
    exported = load_model(out)
    with EventLog.open_reader(churn_run) as log:
        state = fold_records(log.records())
    best = state.best_trial()
    assert exported.metadata["trial"] == best.id and exported.metadata["classes"] == ["no", "yes"]

    data = load_dataset(state.config.data)
    tower = rebuild(churn_run, best, data, "flatten")
    expected = tower.predict(data.features["test"], verbose=0)
    assert np.allclose(apply_model(exported.model, data.raw["test"]), expected, atol=1e-5)

    rows = tmp_path / "rows.csv"
    source = (ROOT / "examples" / "data" / "customers.csv").read_text().splitlines()
    rows.write_text("\n".join(source[:6]) + "\n")
    predictions = predict(exported, rows)
    assert len(predictions) == 5 and all(p["class"] in ("no", "yes") for p in predictions)
    assert all(abs(sum(p["probabilities"].values()) - 1) < 1e-4 for p in predictions)


def test_array_inputs_to_predict_read_from_npy_and_npz(tmp_path: Path) -> None:
    """``engine predict --input`` takes an .npy array, or an .npz archive's array ``x``."""
    from trainers.export import ExportedModel, ExportError, read_inputs

    exported = ExportedModel(model=None, metadata={"data": {"dataset": "npz"}}, path=tmp_path)
    rows = np.arange(12, dtype="float64").reshape(3, 4)
    np.save(tmp_path / "rows.npy", rows)
    np.savez(tmp_path / "rows.npz", x=rows)
    np.savez(tmp_path / "other.npz", y=rows)
    for name in ("rows.npy", "rows.npz"):
        read = read_inputs(exported, tmp_path / name)
        assert read.dtype == np.float32 and np.array_equal(read, rows)
    with pytest.raises(ExportError, match="no array 'x'"):
        read_inputs(exported, tmp_path / "other.npz")


def test_the_cli_exports_predicts_and_evaluates(churn_run: Path, tmp_path: Path, engine_cli, engine_here) -> None:
    """The commands themselves export (``engine_cli``: a child process); the rest runs their ``main`` here."""
    engine_cli("export", "--run", str(churn_run), "--out", str(tmp_path / "m"), "--trial",
               str(status_json(engine_cli, churn_run)["leaderboard"][-1]["trial"]))
    lines = engine_here("predict", "--model", str(tmp_path / "m"), "--input",
                        str(ROOT / "examples" / "data" / "customers.csv")).stdout.splitlines()
    assert len(lines) == 600 and set(lines) <= {"no", "yes"}
    report = json.loads(engine_here("evaluate", "--model", str(tmp_path / "m"), "--json").stdout)
    assert report["examples"] == 90 and 0.5 <= report["accuracy"] <= 1.0
    status = engine_here("status", "--run", str(churn_run)).stdout
    assert "pareto front (val_accuracy against parameters):" in status

    broken = tmp_path / "broken.csv"
    broken.write_text("tenure_months,plan\n3,basic\n")
    bad = engine_here("predict", "--model", str(tmp_path / "m"), "--input", str(broken), check=False)
    assert bad.returncode == 1 and "columns ['region', 'support_calls', 'monthly_charge'] are missing" in bad.stderr
    nothing = engine_here("export", "--run", str(churn_run), "--out", str(tmp_path / "x"), "--trial", "1",
                          check=False)
    assert nothing.returncode == 1 and "trial 1 cannot be exported" in nothing.stderr


def test_a_user_block_takes_part_in_a_search(tmp_path: Path, engine_cli) -> None:
    shutil.copy(ROOT / "examples" / "my_blocks.py", tmp_path / "my_blocks.py")
    config = write_toml(tmp_path / "mine.toml", """
[search]
trials = 3
[space]
kind = "tower"
block_paths = ["."]
blocks = ["my_blocks:SqueezeExcite", "my_blocks:dilated_conv"]
max_depth = 2
[data]
dataset = "mnist1d"
samples = 300
[training]
epochs = 1
""")
    engine_cli("run", "--run", str(tmp_path / "run"), "--config", str(config), "--trainers", "1", "--quiet",
               timeout=300)
    status = status_json(engine_cli, tmp_path / "run")
    assert status["completed"] == 3 and status["failed"] == 0
    used = {block for trial in status["leaderboard"] for block in trial["architecture"]}
    assert used <= {"my_blocks:SqueezeExcite", "my_blocks:dilated_conv"} and used


def test_engine_run_with_no_config_searches_mnist1d(tmp_path: Path, engine_cli, engine_here) -> None:
    result = engine_cli("run", "--set", "search.trials=2", "--set", "training.epochs=1", "--set", "data.samples=300",
                        "--trainers", "1", "--quiet", timeout=300)
    assert "runs/mnist1d-" in result.stderr
    [run] = list((tmp_path / "runs").iterdir())
    status = status_json(engine_cli, run)
    assert status["completed"] == 2 and status["space"] == "tower"
    assert ev.SEARCH_FINISHED in engine_here("log", "--run", str(run)).stdout


def test_engine_run_stops_with_the_reason_when_its_trainers_cannot_load_the_data(tmp_path: Path, spawn) -> None:
    import time

    from engine.log import EventLog

    data = tmp_path / "rows.csv"
    data.write_text((ROOT / "examples" / "data" / "customers.csv").read_text())
    config = write_toml(tmp_path / "c.toml", CHURN.format(path=data))
    run = tmp_path / "run"
    process = spawn("run", "--run", str(run), "--config", str(config), "--quiet", "--no-ship")
    deadline = time.monotonic() + 60
    while not (run / "events.lmdb" / "data.mdb").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    data.unlink()  # gone before the trainers (still importing TensorFlow) read it
    assert process.wait(timeout=120) == 1
    message = process.log_path.read_text()
    assert "all 2 local trainers exited" in message and "no such file" in message
    with EventLog.open_reader(run) as log:
        assert not [e for e in log.read() if e.type == ev.TRIAL_COMPLETED]


def test_a_keras_trainer_describes_the_data_and_the_engine_proposes_no_tower_over_max_params(
        tmp_path: Path, engine_cli, engine_here) -> None:
    """The trainer tells the engine what towers are built on once it has read the data (a DataDescribed event,
    before the first proposal); the engine counts each candidate's weights from its blocks, and no tower is
    built only to fail over ``space.max_params``. Replay re-derives the proposals from the log alone."""
    config = write_toml(tmp_path / "budget.toml", """
[search]
trials = 6
[space]
kind = "tower"
blocks = ["conv1d_64_k5", "dense_256", "dense_32", "maxpool1d"]
max_depth = 3
max_params = 15000
[data]
dataset = "mnist1d"
samples = 600
[training]
epochs = 1
""")
    engine_cli("run", "--run", str(tmp_path / "run"), "--config", str(config), "--trainers", "1", "--quiet",
               timeout=300)
    from blocks.tower import DataSpec, count_params
    from engine.log import EventLog
    from engine.runs import state_at
    from engine.state import TowerInput

    with EventLog.open_reader(tmp_path / "run") as log:
        kinds = [event.type for event in log.read()]
    assert kinds.index(ev.DATA_DESCRIBED) < kinds.index(ev.CANDIDATE_PROPOSED) and kinds.count(ev.DATA_DESCRIBED) == 1
    state = state_at(tmp_path / "run")
    assert state.tower_input == TowerInput((40,), 10, 0, "classification")
    assert len(state.completed) == 6 and not state.failed
    data = DataSpec((40,), "classification", 10)
    for trial in state.trials.values():
        assert trial.metrics["params"] == count_params(trial.architecture, data) <= 15_000
    assert "reproduce exactly" in engine_here("replay", "--run", str(tmp_path / "run"), "--verify").stdout
    described = engine_here("log", "--run", str(tmp_path / "run"), "--type", ev.DATA_DESCRIBED).stdout
    assert "towers are built on 40 in, 10 outputs, classification" in described
