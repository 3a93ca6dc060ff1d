"""What a Lineage search found within its first trials: Model Search's claim is about what a search finds
"within 200 trials" (issue 15), so each race reports the best tower among a run's first 200 finished trials, and
the best of those under a parameter budget (a small-model target, read from the Pareto front).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

from engine import events as ev
from engine.state import Kind

#: The trials the claim counts.
TRIAL_LIMIT = 200


def first_trials(events: list[Any], launched: float, limit: int = TRIAL_LIMIT) -> tuple[float, int]:
    """(seconds after launch when the ``limit``-th tower trial finished, or the last one did; how many finished
    by then): failed towers count, ensembles (combined, not trained) do not."""
    ended, count, ensembles = 0.0, 0, set()
    for event in events:
        if event.type == ev.CANDIDATE_PROPOSED and event.payload["kind"] == Kind.ENSEMBLE:
            ensembles.add(event.seq)  # a candidate's trial id is its proposal's seq
        if event.type in (ev.TRIAL_COMPLETED, ev.TRIAL_FAILED) and event.payload["trial"] not in ensembles:
            ended, count = event.at - launched, count + 1
            if count == limit:
                break
    return ended, count


def best_tower(results: list[dict[str, Any]], launched: float, until: float, max_params: float = float("inf"),
               test_of: Callable[[Hashable], float] | None = None) -> dict[str, Any] | None:
    """The tower with the best validation accuracy that finished by ``until`` with at most ``max_params``
    parameters, with its test accuracy."""
    fits = [r for r in results if r["ended"] - launched <= until and r["params"] <= max_params]
    top = max(fits, key=lambda r: r["val_accuracy"], default=None)
    if top is None:
        return None
    return {"trial": top["trial"], "params": top["params"], "val_accuracy": top["val_accuracy"],
            "test_accuracy": test_of(top["trial"]) if test_of else None,
            "minutes": (top["ended"] - launched) / 60}
