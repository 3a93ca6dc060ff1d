"""Every tower a run proposed, as plain records a race result keeps (``budget_race.py``'s ``towers``).

Example::

    >>> rows = towers(state_at("runs/kws"))
    >>> max(rows, key=lambda r: r["val_accuracy"] or 0)["architecture"]
"""

from __future__ import annotations

from typing import Any

from engine.state import Kind, State


def towers(state: State) -> list[dict[str, Any]]:
    """Every tower the run proposed, in order, with what became of it: what a look at a search's choices needs
    once its run folder is gone."""
    rows = []
    for trial in state.trials.values():
        if trial.kind != Kind.TOWER:
            continue
        metrics = trial.metrics or {}
        rows.append({"trial": trial.id, "architecture": list(trial.architecture), "hp": trial.hyperparameters,
                     "parent": trial.parent, "mutation": trial.mutation, "status": str(trial.status),
                     "params": metrics.get("params"), "val_accuracy": metrics.get("val_accuracy"),
                     "epochs": metrics.get("epochs"), "train_seconds": metrics.get("train_seconds"),
                     "stop": trial.stop.rule if trial.stop else None, "reason": trial.reason,
                     # validation accuracy after each epoch: how well a rung's ranking foretold the end
                     "curve": [point.metrics.get("val_accuracy") for point in trial.curve]})
    return rows
