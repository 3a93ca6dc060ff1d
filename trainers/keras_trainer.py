"""The Keras trainer: builds a candidate's tower, trains it on the run's data and reports how it did.

It trains with the candidate's hyperparameters (optimizer, learning rate, batch size, dropout) for up
to ``training.epochs`` epochs, stops early when the search metric stops improving (keeping the best
epoch's weights), and reports validation metrics, the parameter count and the training time. The
trained weights are an artifact, uploaded by digest. A candidate over ``space.max_params`` fails
without training; a loss that turns NaN fails the trial with that reason.

Example::

    >>> evaluator = KerasEvaluator(config)             # loads and preprocesses the data once
    >>> outcome = evaluator.evaluate(work_item, fetch)
    >>> outcome.metrics["val_accuracy"], outcome.metrics["params"]
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from blocks.registry import use_paths
from blocks.tower import CLASSIFICATION, BuildError, build_tower
from engine.config import Config
from engine.state import ENSEMBLE, Artifact, Epoch, TowerInput
from engine.work import Teacher, WorkItem
from trainers import checkpoints
from trainers.datasets import load_dataset
from trainers.distillation import distillation_loss, pack_targets, packed_accuracy
from trainers.ensembles import evaluate_ensemble, outputs_bytes, outputs_of
from trainers.evaluator import EvaluationError, Evaluator, Fetch, Outcome, Report
from trainers.sharing import inherit_weights

COMBINER = "combiner"
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")


def configure_threads(threads: int) -> None:
    """Bound the threads TensorFlow uses in this process (call before any TensorFlow op)."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1 if threads == 1 else 2)
    except RuntimeError:  # already initialised in this process: the first setting stays
        pass


def learning_rate_of(hyperparameters: Mapping[str, Any]) -> float:
    """A trial's (initial) learning rate."""
    return hyperparameters.get("learning_rate", 1e-3)


def make_optimizer(hyperparameters: Mapping[str, Any]) -> Any:
    """The optimizer a trial's hyperparameters name, at its learning rate."""
    import keras

    name, learning_rate = hyperparameters.get("optimizer", "adam"), learning_rate_of(hyperparameters)
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate, momentum=0.9)
    factories = {"adam": keras.optimizers.Adam, "adamw": keras.optimizers.AdamW, "rmsprop": keras.optimizers.RMSprop}
    if name not in factories:
        raise EvaluationError(f"unknown optimizer {name!r}; use one of {list(OPTIMIZERS)}")
    return factories[name](learning_rate)


def cosine_rate(learning_rate: float, epochs: int, epoch: int) -> float:
    """The learning rate of epoch ``epoch`` (from 0) on a cosine from ``learning_rate`` down towards 0 at
    ``epochs``: ``cosine_rate(0.003, 20, 10) == 0.0015``."""
    return learning_rate * 0.5 * (1.0 + math.cos(math.pi * min(epoch, epochs) / epochs))


def compile_tower(model: Any, hyperparameters: Mapping[str, Any], task: str) -> None:
    optimizer = make_optimizer(hyperparameters)
    if task == CLASSIFICATION:
        model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    else:
        model.compile(optimizer=optimizer, loss="mse", metrics=["mae"])


def weights_bytes(model: Any) -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "tower.weights.h5"
        model.save_weights(path)
        return path.read_bytes()


def load_weights(model: Any, data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "tower.weights.h5"
        path.write_bytes(data)
        model.load_weights(path)


class KerasEvaluator(Evaluator):
    """Trains towers with Keras on the run's ``[data]``, with the run's ``[training]`` settings."""

    kind = "keras"

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        use_paths(list(config.space.block_paths))  # user blocks, imported in this process too
        self.training = config.training
        configure_threads(self.training.threads)
        self.data = load_dataset(config.data)
        self.max_params = config.space.max_params
        self.head = config.space.head
        self.metric, self.mode = config.search.metric, config.search.mode
        # The splits a tower's outputs are recorded on: ensembles combine validation outputs, students also
        # learn from their teacher's train outputs. Never the test split: a search does not look at it (and
        # predicting 10,000 test images took a tenth of every Fashion-MNIST tower's time).
        distils = config.distillation.teacher != "none"
        keeps = distils or config.ensemble.strategy != "none"
        self.recorded_splits = (("train", "validation") if distils else ("validation",)) if keeps else ()

    def describe(self) -> TowerInput:
        spec = self.data.spec
        return TowerInput(tuple(spec.input_shape), spec.outputs, spec.tokens, spec.task)

    def evaluate(self, work: WorkItem, fetch: Fetch, report: Report | None = None) -> Outcome:
        if work.kind == ENSEMBLE:
            return self._ensemble(work, fetch)
        import keras
        import numpy as np

        started = time.perf_counter()
        start = work.resume.epoch if work.resume else 0  # a promoted trial goes on from its checkpoint
        keras.utils.set_random_seed((work.seed + start) % 2**31)  # initial weights and shuffling follow the trial
        hyperparameters = work.hyperparameters
        model = self._build(work.architecture, hyperparameters, f"trial_{work.trial}")
        params = model.count_params()
        if self.max_params and params > self.max_params:
            raise EvaluationError(f"{params:,} parameters exceed space.max_params = {self.max_params:,}",
                                  {"params": float(params)})
        inherited = self._inherit(model, work, fetch) if work.inherit and not work.resume else []
        features, targets = self.data.features, self.data.targets
        student, train_targets, validation_targets = model, targets["train"], targets["validation"]
        if work.teacher:
            student, train_targets, validation_targets = self._distil(model, hyperparameters, work.teacher, fetch)
        else:
            compile_tower(model, hyperparameters, self.data.task)
        callbacks, stopper = self._callbacks(work.trial, learning_rate_of(hyperparameters), report,
                                             distilled=student is not model)
        restored = None
        if work.resume:
            restored = checkpoints.restore(student, fetch(work.resume.checkpoint))
            if restored.epoch != start:
                raise EvaluationError(f"the checkpoint was taken after epoch {restored.epoch}, not {start}")
        before, after, saver = checkpoints.callbacks(stopper, work.until, restored)
        fitting = time.perf_counter()
        history = student.fit(
            features["train"], train_targets, validation_data=(features["validation"], validation_targets),
            initial_epoch=start, epochs=work.until or self.training.epochs,
            batch_size=int(hyperparameters.get("batch_size", 64)), callbacks=[*before, *callbacks, *after], verbose=0,
        )
        losses = history.history["loss"]
        if not np.all(np.isfinite(losses)):
            raise EvaluationError(f"the training loss became NaN at epoch {len(losses)}")
        trained = time.perf_counter() - fitting
        if student is not model:
            compile_tower(model, hyperparameters, self.data.task)  # to score it like every other trial
        scores = model.evaluate(features["validation"], targets["validation"], batch_size=1024, verbose=0,
                                return_dict=True)
        metrics = {f"val_{name}": float(value) for name, value in scores.items()}
        if not all(np.isfinite(list(metrics.values()))):
            raise EvaluationError(f"validation metrics are not finite: {metrics}")
        metrics.update(params=float(params), epochs=float(start + len(losses)), train_seconds=trained,
                       inherited_layers=float(len(inherited)), trial_seconds=time.perf_counter() - started)
        artifacts = {Artifact.WEIGHTS: weights_bytes(model)}
        if saver.checkpoint is not None:  # paused at a rung: where a promotion resumes
            artifacts[Artifact.CHECKPOINT] = saver.checkpoint
        if self.recorded_splits:  # what ensembles combine and students learn from
            outputs = {split: raw_outputs(model, features[split]) for split in self.recorded_splits
                       if len(features[split])}
            artifacts[Artifact.OUTPUTS] = outputs_bytes(outputs)
        return Outcome(metrics, artifacts, inherited)

    def _build(self, architecture: Sequence[str], hyperparameters: Mapping[str, Any], name: str) -> Any:
        try:
            return build_tower(architecture, hyperparameters, self.data.spec, name=name, head=self.head)
        except BuildError as exc:
            raise EvaluationError(f"the tower cannot be built: {exc}") from None

    def _callbacks(self, trial: int, learning_rate: float, report: Report | None = None,
                   distilled: bool = False) -> tuple[list[Any], Any]:
        """The callbacks of ``fit``, and the early-stopping one among them (None without patience)."""
        import keras

        callbacks = [keras.callbacks.TerminateOnNaN()]
        if self.training.schedule == "cosine":
            # A function of the epoch alone, so a trial resumed at a rung goes on at the rate it paused with.
            epochs = self.training.epochs
            callbacks.append(keras.callbacks.LearningRateScheduler(
                lambda epoch, _rate: cosine_rate(learning_rate, epochs, epoch)))
        if report is not None:
            # A student's val_loss is its distillation loss: not comparable with other trials', so not reported.
            reported = {"val_accuracy", "val_mae"} if distilled else {"val_accuracy", "val_mae", "val_loss"}
            callbacks.append(epoch_reporter(report, reported))
        monitor = self.metric if self.metric.startswith("val_") else "val_loss"
        stopper = None
        if self.training.patience:
            stopper = keras.callbacks.EarlyStopping(
                monitor=monitor, mode=self.mode if monitor == self.metric else "min",
                patience=self.training.patience, restore_best_weights=True)
            callbacks.append(stopper)
        if self.training.tensorboard:
            callbacks.append(keras.callbacks.TensorBoard(log_dir=str(Path(self.training.tensorboard) /
                                                                     f"trial-{trial}")))
        return callbacks, stopper

    def _inherit(self, model: Any, work: WorkItem, fetch: Fetch) -> list[str]:
        """Start ``model`` from the weights of the trials its candidate inherits from."""
        sources = []
        for source in work.inherit.sources:
            tower = self._build(source.architecture, source.hyperparameters, f"source_{source.trial}")
            load_weights(tower, fetch(source.weights))
            sources.append((tower, source.weight))
        same = all(source.architecture == work.architecture for source in work.inherit.sources)
        return inherit_weights(model, sources, same_architecture=same)

    def _distil(self, model: Any, hyperparameters: Mapping[str, Any], teacher: Teacher,
                fetch: Fetch) -> tuple[Any, Any, Any]:
        """A student model (the tower up to its logits) compiled with the teacher's loss, and its targets."""
        import keras

        outputs = outputs_of(fetch(teacher.outputs))
        if "train" not in outputs:
            raise EvaluationError(f"the teacher, trial {teacher.trial}, has no recorded outputs on the train split "
                                  "(a search without distillation recorded it): distillation needs them")
        student = keras.Model(model.inputs, model.get_layer("head_logits").output)  # config: classification only
        optimizer = make_optimizer(hyperparameters)
        student.compile(optimizer=optimizer,
                        loss=distillation_loss(teacher.loss, teacher.temperature, teacher.weight),
                        metrics=[packed_accuracy()])
        targets = self.data.targets
        return (student, pack_targets(targets["train"], outputs["train"]),
                pack_targets(targets["validation"], outputs["validation"]))

    def _ensemble(self, work: WorkItem, fetch: Fetch) -> Outcome:
        """Combine the members' recorded outputs (no training) and score the combination honestly."""
        members = [outputs_of(fetch(member.outputs)) for member in work.members]
        report = evaluate_ensemble(members, self.data.targets, work.architecture.combiner, self.data.task,
                                   seed=work.seed)
        combiner = json.dumps({"members": [member.trial for member in work.members], "weights": report.weights})
        return Outcome(report.metrics, {Artifact.OUTPUTS: outputs_bytes(report.outputs), COMBINER: combiner.encode()})


def epoch_reporter(report: Report, reported: set[str]) -> Any:
    """A Keras callback that hands ``report`` each epoch's finite validation metrics named in ``reported``, and
    ends training after an epoch ``report`` answers False for."""
    import keras

    class Reporter(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            metrics = {name: float(value) for name, value in (logs or {}).items()
                       if name in reported and math.isfinite(float(value))}
            if metrics and report(Epoch(epoch + 1, metrics)) is False:
                self.model.stop_training = True  # the engine stopped it: the trial completes with these epochs

    return Reporter()


def raw_outputs(model: Any, features: Any) -> Any:
    """A tower's logits (classification) or outputs (regression) on ``features``."""
    import keras

    try:
        logits = keras.Model(model.inputs, model.get_layer("head_logits").output)
    except ValueError:
        logits = model
    return logits.predict(features, batch_size=1024, verbose=0)
