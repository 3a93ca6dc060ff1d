"""Ensembles: combine trained towers' recorded outputs, and score the combination honestly.

Every Keras trial uploads its outputs (logits, or regression outputs) on every split as an artifact;
an ensemble step combines its members' outputs without training anything:

- ``average``: the mean of the members' class probabilities (or regression outputs);
- ``weighted``: weights on the simplex that minimise the loss on validation data. Its score is
  cross-fitted: the weights fitted on one half of the validation split score the other half, and the
  other way round, so the ensemble's validation metric never comes from the data it was fitted on. The
  weights it keeps (for export) are fitted on the whole validation split.

Numpy only: an ensemble step needs no TensorFlow.

Example::

    >>> report = evaluate_ensemble([outputs_a, outputs_b], targets, "weighted", "classification", seed=3)
    >>> report.metrics["val_accuracy"], report.weights
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from blocks.tower import CLASSIFICATION

SPLITS = ("train", "validation", "test")
STEPS = 300


def outputs_bytes(outputs: dict[str, np.ndarray]) -> bytes:
    """A trial's outputs per split as an ``.npz`` artifact."""
    buffer = io.BytesIO()
    np.savez(buffer, **{split: np.asarray(values, dtype="float32") for split, values in outputs.items()})
    return buffer.getvalue()


def outputs_of(data: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        return {split: archive[split] for split in archive.files}


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def member_predictions(outputs: np.ndarray, task: str) -> np.ndarray:
    """What members contribute to a combination: probabilities, or regression outputs."""
    return _softmax(outputs) if task == CLASSIFICATION else outputs.reshape(len(outputs), -1)


def combine(predictions: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    return sum(w * p for w, p in zip(weights, predictions, strict=True))


def loss(prediction: np.ndarray, targets: np.ndarray, task: str) -> float:
    if task == CLASSIFICATION:
        return float(-np.mean(np.log(np.clip(prediction[np.arange(len(targets)), targets], 1e-12, 1.0))))
    return float(np.mean((prediction - targets.reshape(len(targets), -1)) ** 2))


def score(prediction: np.ndarray, targets: np.ndarray, task: str) -> float:
    """Accuracy (higher is better), or mean absolute error (lower is better)."""
    if task == CLASSIFICATION:
        return float(np.mean(prediction.argmax(axis=1) == targets))
    return float(np.mean(np.abs(prediction - targets.reshape(len(targets), -1))))


def _better(a: float, b: float, task: str) -> bool:
    return a > b if task == CLASSIFICATION else a < b


def fit_weights(predictions: Sequence[np.ndarray], targets: np.ndarray, task: str) -> list[float]:
    """Simplex weights minimising the loss on ``targets`` (exponentiated gradient, from the best member).

    Never worse than the best single member on this data, by its score: if the fitted mix scores
    below it, the best member's weights are returned instead.
    """
    n = len(predictions)
    single = [score(p, targets, task) for p in predictions]
    best = max(range(n), key=lambda i: single[i]) if task == CLASSIFICATION else min(range(n), key=lambda i: single[i])
    weights = np.full(n, 0.1 / max(n - 1, 1))
    weights[best] = 0.9 if n > 1 else 1.0
    weights /= weights.sum()
    current = loss(combine(predictions, weights), targets, task)
    rate = 1.0
    for _ in range(STEPS):
        gradient = np.array([_loss_gradient(predictions, weights, targets, task, i) for i in range(n)])
        trial = weights * np.exp(-rate * gradient / (np.abs(gradient).max() + 1e-12))
        trial /= trial.sum()
        value = loss(combine(predictions, trial), targets, task)
        if value < current:
            weights, current = trial, value
        else:
            rate /= 2
            if rate < 1e-4:
                break
    vertex = np.eye(n)[best]
    if _better(single[best], score(combine(predictions, weights), targets, task), task):
        weights = vertex
    return [float(w) for w in weights]


def _loss_gradient(predictions: Sequence[np.ndarray], weights: np.ndarray, targets: np.ndarray, task: str,
                   i: int) -> float:
    mixed = combine(predictions, weights)
    if task == CLASSIFICATION:
        rows = np.arange(len(targets))
        return float(-np.mean(predictions[i][rows, targets] / np.clip(mixed[rows, targets], 1e-12, None)))
    residual = mixed - targets.reshape(len(targets), -1)
    return float(2 * np.mean(residual * predictions[i]))


@dataclass
class EnsembleReport:
    metrics: dict[str, float]
    weights: list[float]
    outputs: dict[str, np.ndarray]


def evaluate_ensemble(members: Sequence[dict[str, np.ndarray]], targets: dict[str, np.ndarray], combiner: str,
                      task: str, seed: int) -> EnsembleReport:
    """Combine members' outputs; the validation metrics are honest (cross-fitted for ``weighted``)."""
    splits = [split for split in SPLITS if all(split in m for m in members)]  # an empty split is not recorded
    predictions = {split: [member_predictions(m[split], task) for m in members] for split in splits}
    validation, truth = predictions["validation"], targets["validation"]
    n = len(members)
    if combiner == "average":
        weights = [1.0 / n] * n
        honest = combine(validation, weights)
    else:
        halves = np.array_split(np.random.default_rng(seed).permutation(len(truth)), 2)
        honest = np.zeros_like(validation[0])
        for fit, held in (halves, halves[::-1]):
            fitted = fit_weights([p[fit] for p in validation], truth[fit], task)
            honest[held] = combine([p[held] for p in validation], fitted)
        weights = fit_weights(validation, truth, task)
    combined = {split: combine(predictions[split], weights) for split in splits}
    if task == CLASSIFICATION:
        # Log-probabilities centred per example: logits of the combined prediction, for students to match.
        logs = {split: np.log(np.clip(values, 1e-12, 1.0)) for split, values in combined.items()}
        combined = {split: values - values.mean(axis=1, keepdims=True) for split, values in logs.items()}
        metrics = {"val_accuracy": score(honest, truth, task), "val_loss": loss(honest, truth, task)}
    else:
        metrics = {"val_mae": score(honest, truth, task), "val_loss": loss(honest, truth, task)}
    metrics["members"] = float(n)
    return EnsembleReport(metrics, weights, combined)
