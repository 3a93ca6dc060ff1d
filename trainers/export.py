"""Exported models: rebuild a trial from its architecture and weights, use it, score it.

``export_model`` writes a folder with ``model.keras`` (Keras), ``saved_model/`` (TensorFlow
SavedModel, for serving) and ``lineage.json`` (where it came from and how to feed it). The model
takes raw inputs, as the run's data provider reads them: the preprocessing fitted on the training
split (scaling, category encoding, imputation) sits in front of the trained tower.

Example::

    >>> export_model("runs/m1d", "best_model")                 # what the search hands back
    >>> export_model("runs/m1d", "tower_model", pick=Pick.TOWER)   # its best single tower
    >>> predict(load_model("best_model"), "new_rows.csv")
    >>> evaluate_model("best_model", "runs/m1d")["accuracy"]
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np

from blocks.registry import use_paths
from blocks.tower import CLASSIFICATION, build_tower
from engine.artifacts import ARTIFACTS_DIR, ArtifactError, ArtifactStore
from engine.config import DataOptions
from engine.options import as_dict, read_section
from engine.runs import state_at
from engine.state import COMPLETED, ENSEMBLE, Artifact, State, Trial
from trainers.datasets import DataError, Dataset, load_dataset
from trainers.datasets.audio import read_clips
from trainers.datasets.base import apply_model
from trainers.datasets.csv_file import column_inputs, read_table
from trainers.datasets.images import EXTENSIONS, read_image
from trainers.keras_trainer import COMBINER, load_weights

MODEL_FILE = "model.keras"
SAVED_MODEL = "saved_model"
METADATA = "lineage.json"


class Pick(StrEnum):
    """Which model ``export_model`` writes when no trial is named."""

    BEST = "best"  # what the search hands back: its best ensemble if it has one, else its best tower
    TOWER = "tower"  # the best single tower, even where an ensemble beats it
    ENSEMBLE = "ensemble"  # the best ensemble; an error where the run has none


class ExportError(ValueError):
    """A model that cannot be exported, loaded or used as asked."""


@dataclass
class ExportedModel:
    model: Any
    metadata: dict[str, Any]
    path: Path


def choose_trial(state: State, trial: int | None, pick: Pick) -> Trial:
    if trial is None:
        best = {Pick.BEST: state.best_model, Pick.TOWER: state.best_trial, Pick.ENSEMBLE: state.best_ensemble}[pick]()
        if best is None and pick == Pick.ENSEMBLE:
            raise ExportError("the run has no ensemble that beats its best single tower on validation, so there "
                              "is none to export (see ensemble.strategy); export the best tower with --tower")
        if best is None:
            raise ExportError("the run has no completed trial to export yet")
        return best
    chosen = state.trials.get(trial)
    if chosen is None or chosen.status != COMPLETED:
        status = chosen.status if chosen else "not a trial of this run"
        raise ExportError(f"trial {trial} cannot be exported: it is {status}")
    return chosen


def rebuild(run_dir: Path | str, trial: Trial, data: Dataset, head: str) -> Any:
    """The trained tower of a trial: its architecture and the run's ``space.head``, built again, with its
    stored weights."""
    digest = (trial.artifacts or {}).get(Artifact.WEIGHTS)
    if digest is None:
        raise ExportError(f"trial {trial.id} has no weights artifact")
    tower = build_tower(trial.architecture, trial.hyperparameters, data.spec, name=f"trial_{trial.id}", head=head)
    try:
        load_weights(tower, ArtifactStore(Path(run_dir) / ARTIFACTS_DIR).read(digest))
    except ArtifactError as exc:
        raise ExportError(f"trial {trial.id}'s weights are missing from {run_dir}: {exc}") from None
    return tower


def end_to_end(preprocessing: Any, tower: Any, name: str) -> Any:
    """One model from raw inputs to outputs: the preprocessing, then the tower."""
    import keras

    return keras.Model(preprocessing.input, tower(preprocessing.output), name=name)


def export_model(run_dir: Path | str, out: Path | str, trial: int | None = None, pick: Pick = Pick.BEST) -> Path:
    """Write ``trial``, or without one the model ``pick`` names (by default what the search hands back: its
    best ensemble if it has one, else its best tower), as a Keras model and a SavedModel under ``out``."""
    state = state_at(run_dir)
    config = state.config
    if config.evaluator.kind != "keras":
        raise ExportError(f"{run_dir} was not trained with Keras (evaluator.kind = "
                          f"{config.evaluator.kind!r}); there is no model to export")
    chosen = choose_trial(state, trial, Pick(pick))
    out = Path(out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / METADATA).exists())):
        raise ExportError(f"{out} exists and is not an exported model; export into a new folder")
    use_paths(list(config.space.block_paths))
    data = load_dataset(config.data)
    if chosen.kind == ENSEMBLE:
        model, members = ensemble_model(run_dir, state, chosen, data)
    else:
        tower = rebuild(run_dir, chosen, data, config.space.head)
        model, members = end_to_end(data.preprocessing, tower, name="lineage"), None
    # Written beside its destination, then moved into place: a failed export leaves nothing half-written.
    staging = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        model.save(staging / MODEL_FILE)
        model.export(str(staging / SAVED_MODEL), verbose=False)
        metric = config.search.metric
        metadata = {
            "run_id": state.run_id, "run": str(Path(run_dir).resolve()), "trial": chosen.id,
            "candidate": chosen.key, "architecture": chosen.architecture, "hyperparameters": chosen.hyperparameters,
            "metric": metric, "value": chosen.metrics.get(metric), "params": chosen.metrics.get("params"),
            "task": data.task, "classes": data.classes, "data": as_dict(config.data), "describe": data.describe,
            "kind": chosen.kind, "members": members,
        }
        (staging / METADATA).write_text(json.dumps(metadata, indent=2, default=str))
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def ensemble_model(run_dir: Path | str, state: State, chosen: Trial, data: Dataset) -> tuple[Any, list[dict]]:
    """One Keras model of an ensemble: the preprocessing, every member's tower, their weighted sum."""
    import keras

    from trainers.layers import WeightedSum

    store = ArtifactStore(Path(run_dir) / ARTIFACTS_DIR)
    try:
        combiner = json.loads(store.read(chosen.artifacts[COMBINER]))
    except (ArtifactError, KeyError) as exc:
        raise ExportError(f"ensemble {chosen.id} has no combiner artifact: {exc}") from None
    features = data.preprocessing.output
    members = [state.trials[m] for m in combiner["members"]]
    outputs = [rebuild(run_dir, member, data, state.config.space.head)(features) for member in members]
    combined = WeightedSum(combiner["weights"], name="ensemble")(outputs)
    model = keras.Model(data.preprocessing.input, combined, name="lineage_ensemble")
    described = [{"trial": m.id, "candidate": m.key, "weight": w, "value": m.score}
                 for m, w in zip(members, combiner["weights"], strict=True)]
    return model, described


def load_model(path: Path | str) -> ExportedModel:
    """An exported model folder (``model.keras`` and ``lineage.json``)."""
    import keras

    import trainers.layers  # noqa: F401 - registers Lineage's own layers

    path = Path(path)
    try:
        metadata = json.loads((path / METADATA).read_text())
        model = keras.saving.load_model(path / MODEL_FILE)
    except FileNotFoundError as exc:
        raise ExportError(f"{path} is not an exported model ({exc.filename} is missing)") from None
    return ExportedModel(model, metadata, path)


def input_files(exported: ExportedModel, source: Path) -> list[Path]:
    """The files an image or audio model predicts for: ``source`` itself, or those in it and its sub-folders."""
    data = read_section(DataOptions, exported.metadata["data"], "data")
    wanted = EXTENSIONS if data.dataset == "images" else {".wav"}
    if source.is_dir():
        files = sorted(p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in wanted)
    else:
        files = [source] if source.suffix.lower() in wanted else []
    if not files:
        kind = "images" if data.dataset == "images" else ".wav clips"
        raise ExportError(f"{source}: no {kind} to predict")
    return files


def read_inputs(exported: ExportedModel, source: Path | str) -> Any:
    """Raw inputs for a model from a file: CSV rows, an .npy/.npz array ``x``, images or WAV clips."""
    source = Path(source)
    data = read_section(DataOptions, exported.metadata["data"], "data")
    if data.dataset == "csv":
        header, body = read_table(source)
        return column_inputs(source, header, body, exported.metadata["describe"]["columns"])
    if data.dataset == "images":
        size = exported.metadata["describe"]["image_size"]
        return np.stack([read_image(f, size) for f in input_files(exported, source)]).astype("float32")
    if data.dataset == "audio":
        return read_clips(input_files(exported, source), data.audio)
    if source.suffix not in (".npy", ".npz"):
        raise ExportError(f"{source}: give an .npy or .npz file with the examples in array 'x'")
    try:
        if source.suffix == ".npy":  # one array, not an archive to open and close
            return np.load(source, allow_pickle=False).astype("float32")
        with np.load(source, allow_pickle=False) as loaded:
            if "x" not in loaded.files:
                raise ExportError(f"{source}: no array 'x' (it holds {loaded.files})")
            return loaded["x"].astype("float32")
    except FileNotFoundError:
        raise ExportError(f"{source}: no such file") from None
    except (ValueError, OSError) as exc:
        raise ExportError(f"{source}: not a readable numeric array ({exc})") from None


def predict(exported: ExportedModel, source: Path | str) -> list[dict[str, Any]]:
    """One prediction per example: the class and its probabilities, or the regression output; for images and
    clips, also the ``file`` it is for."""
    source = Path(source)
    outputs = apply_model(exported.model, read_inputs(exported, source))
    if exported.metadata["task"] == CLASSIFICATION:
        classes = exported.metadata["classes"]
        rows = [{"class": classes[int(row.argmax())], "probabilities": dict(zip(classes, map(float, row),
                                                                                    strict=True))}
                for row in outputs]
    else:
        rows = [{"value": float(row[0]) if len(row) == 1 else [float(v) for v in row]} for row in outputs]
    if exported.metadata["data"]["dataset"] in ("images", "audio"):
        rows = [{"file": str(path), **row} for path, row in zip(input_files(exported, source), rows, strict=True)]
    return rows


def evaluate_model(path: Path | str, run_dir: Path | str | None = None) -> dict[str, Any]:
    """Score an exported model on the held-out test split of its run's data."""
    exported = load_model(path)
    data_options = read_section(DataOptions, exported.metadata["data"], "data")
    if run_dir is not None:
        data_options = state_at(run_dir).config.data
    try:
        data = load_dataset(data_options)
    except DataError as exc:
        raise ExportError(f"cannot load the run's data to evaluate on: {exc}") from None
    raw, targets = data.raw["test"], data.targets["test"]
    if not len(targets):
        raise ExportError("the run's data has no test split to evaluate on (data.test = 0)")
    report = {"examples": int(len(targets)), "trial": exported.metadata["trial"],
              "candidate": exported.metadata["candidate"],
              **_scores(apply_model(exported.model, raw), targets, exported.metadata["task"])}
    members = exported.metadata.get("members")
    if members:
        # Beside the ensemble, the member that did best on validation, as a single model.
        import keras

        best = max(members, key=lambda m: m["value"] if m["value"] is not None else float("-inf"))
        # The combiner's inputs are the members' outputs in the exported graph, in member order.
        member_outputs = exported.model.get_layer("ensemble").input
        single = keras.Model(exported.model.input, member_outputs[members.index(best)])
        report["best_single"] = {"trial": best["trial"], "candidate": best["candidate"],
                                 **_scores(apply_model(single, raw), targets, exported.metadata["task"])}
    return report


def _scores(outputs: np.ndarray, targets: np.ndarray, task: str) -> dict[str, float]:
    if task == CLASSIFICATION:
        return {"accuracy": float(np.mean(outputs.argmax(axis=1) == targets))}
    errors = outputs.reshape(len(targets), -1) - targets.reshape(len(targets), -1)
    return {"mae": float(np.mean(np.abs(errors))), "rmse": float(np.sqrt(np.mean(errors**2)))}
