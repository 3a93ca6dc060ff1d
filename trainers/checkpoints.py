"""Checkpoints: a tower paused at a rung (``search.stopping = "asha-promote"``), to resume on any trainer.

A checkpoint holds what training needs to go on as if it had not stopped: the latest weights (not the
best, which early stopping puts back at the end of ``fit``), the optimizer's variables (its step count
and moments), and the early-stopping state (the best value so far, the epochs without improvement, the
best epoch and its weights). Resumed training runs the same epochs with the same optimizer state; what
differs from uninterrupted training is the order of the batches (and dropout's random draws) after the
pause: they are seeded from the trial's seed and the epoch it resumes at, not carried over.

It is one ``.npz`` file (no pickles): ``weights/i``, ``optimizer/i``, ``best/i`` arrays and a ``state``
entry of JSON text.

Example::

    >>> before, after, saver = callbacks(stopper, pause_after=2)
    >>> model.fit(x, y, epochs=2, callbacks=[*before, stopper, *after])
    >>> data = saver.checkpoint                            # bytes, after epoch 2
    >>> restored = restore(other_model, data)               # restored.epoch == 2
    >>> before, after, _ = callbacks(other_stopper, pause_after=None, restored=restored)
    >>> other_model.fit(x, y, initial_epoch=2, epochs=6, callbacks=[*before, other_stopper, *after])
"""

from __future__ import annotations

import io
import json
import math
from typing import Any, NamedTuple

import numpy as np

from trainers.evaluator import EvaluationError


def _arrays(data: Any, prefix: str) -> list[np.ndarray]:
    count = sum(1 for name in data.files if name.startswith(prefix + "/"))
    return [data[f"{prefix}/{index}"] for index in range(count)]


def save(model: Any, epoch: int, stopper: Any | None) -> bytes:
    """``model``'s training state after ``epoch`` epochs (``stopper``: its EarlyStopping callback, if any)."""
    arrays: dict[str, np.ndarray] = {}
    for index, value in enumerate(model.get_weights()):
        arrays[f"weights/{index}"] = value
    for index, variable in enumerate(model.optimizer.variables):
        arrays[f"optimizer/{index}"] = np.asarray(variable.numpy())
    state: dict[str, Any] = {"epoch": epoch, "stopping": None}
    if stopper is not None:
        best = stopper.best
        state["stopping"] = {"wait": stopper.wait, "best_epoch": stopper.best_epoch,
                             "best": None if best is None else float(best)}
        for index, value in enumerate(stopper.best_weights or []):
            arrays[f"best/{index}"] = value
    arrays["state"] = np.frombuffer(json.dumps(state).encode(), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


class Restored(NamedTuple):
    """What :func:`restore` read besides the weights: the epoch the checkpoint was taken after, and the
    early-stopping state then (None when training had no early stopping)."""

    epoch: int
    stopping: dict[str, Any] | None
    best_weights: list[np.ndarray] | None


def restore(model: Any, checkpoint: bytes) -> Restored:
    """Put a checkpoint's weights and optimizer state into ``model`` (compiled, of the same architecture);
    the early-stopping state it returns goes to :func:`callbacks`, as ``fit`` resets it when it begins."""
    try:
        data = np.load(io.BytesIO(checkpoint), allow_pickle=False)
        state = json.loads(bytes(data["state"]).decode())
        weights, optimizer, best = _arrays(data, "weights"), _arrays(data, "optimizer"), _arrays(data, "best")
        model.set_weights(weights)
        model.optimizer.build(model.trainable_variables)
        variables = model.optimizer.variables
        if len(variables) != len(optimizer):
            raise ValueError(f"{len(optimizer)} optimizer variables, the model's optimizer has {len(variables)}")
        for variable, value in zip(variables, optimizer, strict=True):
            variable.assign(value)
    except (OSError, KeyError, ValueError, json.JSONDecodeError) as exc:
        raise EvaluationError(f"the checkpoint cannot be restored: {exc}") from None
    return Restored(int(state["epoch"]), state["stopping"], best or None)


def callbacks(stopper: Any | None, pause_after: int | None,
              restored: Restored | None = None) -> tuple[list[Any], list[Any], Any]:
    """(callbacks to go before ``stopper``, callbacks to go after it, the saver) for a lease that pauses after
    epoch ``pause_after`` (None: no checkpoint is taken) and resumes from ``restored`` (None: from the start).
    The saver's ``checkpoint`` holds the bytes once ``fit`` ended at ``pause_after`` with no early stop."""
    import keras

    class Saver(keras.callbacks.Callback):
        checkpoint: bytes | None = None
        epochs = restored.epoch if restored else 0

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            self.epochs = epoch + 1

        def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
            early = stopper is not None and stopper.stopped_epoch > 0
            if pause_after is not None and self.epochs == pause_after and not early:
                self.checkpoint = save(self.model, self.epochs, stopper)

    class Restorer(keras.callbacks.Callback):
        def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
            if stopper is not None and restored is not None and restored.stopping is not None:
                best = restored.stopping["best"]
                stopper.wait, stopper.best_epoch = restored.stopping["wait"], restored.stopping["best_epoch"]
                stopper.best = None if best is None or not math.isfinite(best) else best
                stopper.best_weights = restored.best_weights

    saver = Saver()
    return [saver], [Restorer()], saver
