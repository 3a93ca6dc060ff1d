"""What a trainer may report: the metrics each evaluator declares, with their bounds.

A result crosses a process boundary, so the engine checks it against the run before it can become
an event: every value a finite number, every name one that the run's evaluator declares (its
validation metrics and a few bookkeeping figures such as parameters and seconds), every value within
its metric's bounds. The evaluators in ``trainers/`` report these names (their tests check it).

Example::

    >>> problem_with("table", {"val_acc": 91.2, "train_time": 600.0}) is None    # an nb201 run
    True
    >>> problem_with("table", {"val_acc": 7777.1})
    'val_acc is outside [0, 100]'
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Bounds:
    """The values a metric can take; a value outside them is a trainer's bug or a lie."""

    low: float = 0.0
    high: float = math.inf

    def __contains__(self, value: float) -> bool:
        return self.low <= value <= self.high

    def __str__(self) -> str:
        return f"[{self.low:g}, {self.high:g}]"


FRACTION = Bounds(0.0, 1.0)
PERCENT = Bounds(0.0, 100.0)
AMOUNT = Bounds()  # a loss, an error, a count, seconds, bytes: 0 or more

#: Every metric each evaluator kind (``evaluator.kind``) reports, by name.
METRICS: dict[str, dict[str, Bounds]] = {
    "keras": {
        "val_accuracy": FRACTION, "val_loss": AMOUNT, "val_mae": AMOUNT,
        "params": AMOUNT, "epochs": AMOUNT, "train_seconds": AMOUNT, "trial_seconds": AMOUNT,
        "inherited_layers": AMOUNT, "members": AMOUNT,
    },
    "synthetic": {
        "val_accuracy": FRACTION, "val_loss": AMOUNT, "params": AMOUNT, "inherited_bytes": AMOUNT,
        "train_seconds": AMOUNT,
    },
    "table": {"val_acc": PERCENT, "train_time": AMOUNT, "latency": AMOUNT, "model_size": AMOUNT},
}


#: What an ensemble step reports, so the metrics an ensemble search may be scored by.
ENSEMBLE_METRICS = frozenset({"val_accuracy", "val_loss", "val_mae"})


def seconds_per_epoch(metrics: Mapping[str, float]) -> float | None:
    """What one epoch of a candidate's training cost in seconds, as its result reports it (None where it
    does not). NAS-Bench-201's tables give one training time for the whole schedule, which serves as well:
    a searcher only compares candidates of one run."""
    seconds = metrics.get("train_seconds", metrics.get("train_time"))
    if seconds is None:
        return None
    epochs = metrics.get("epochs") or 1.0
    return seconds / epochs


def problem_with(evaluator: str, metrics: Mapping[str, Any]) -> str | None:
    """What is wrong with a result's metrics for a run whose trainers are of kind ``evaluator``
    (``config.evaluator.kind``), in one line (None when nothing is).

    The line names the metric and the rule it breaks, never more of the value than "not finite".
    """
    known = METRICS[evaluator]
    for name, value in metrics.items():
        if not isinstance(value, int | float) or isinstance(value, bool):
            return f"{name} is not a number"
        if not math.isfinite(value):
            return f"{name} is not finite ({value})"
        bounds = known.get(name)
        if bounds is None:
            return f"{name} is not a metric this run's {evaluator!r} trainers report " \
                   f"(they report {', '.join(sorted(known))})"
        if value not in bounds:
            return f"{name} is outside {bounds}"
    return None
