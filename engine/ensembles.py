"""Ensemble steps: when the next candidate combines trained towers instead of training a new one.

A pure function of the state, like the searchers. An ensemble candidate's architecture is
``{"members": [trial ids], "combiner": "average" | "weighted"}``; a trainer combines the members'
recorded outputs and reports the ensemble's validation metric, and the fold keeps the best ensemble.

- ``adaptive``: the ensemble grows greedily. Each tower of the beam (top-K) is tried once as an addition
  to the best ensemble so far (the best tower alone to begin with, and again whenever a new tower
  alone beats the best ensemble); an addition that does not improve the ensemble's validation metric
  is set aside, so members are only ever added when they help.
- ``intermixed``: every n-th proposal is such a step (with the best tower not yet tried), the others
  train new architectures: exploration and exploitation interleaved on a fixed schedule.

Example::

    >>> plan_ensemble(state)      # None, or {"members": [12, 30], "combiner": "average"}
"""

from __future__ import annotations

from typing import Any

from engine.fold import State


def ensemble_key(architecture: dict[str, Any]) -> str:
    """The stable name of an ensemble candidate (the dedupe key)."""
    return f"ensemble {'+'.join(map(str, architecture['members']))} ({architecture['combiner']})"


def plan_ensemble(state: State) -> dict[str, Any] | None:
    """The next ensemble step, or None when the next candidate should be a new tower."""
    options = state.config["ensemble"]
    if options["strategy"] == "none":
        return None
    towers = state.leaderboard()
    if len(towers) < 2:
        return None
    if options["strategy"] == "intermixed" and (state.proposals + 1) % options["every"] != 0:
        return None
    best = state.best_ensemble()
    # Grow the best ensemble, unless a tower trained since scores at least as well alone: then start
    # again from that tower, so the ensemble never trails the best single model for long.
    if best is not None and best.score > towers[0].score:
        base = list(best.architecture["members"])
    else:
        base = [towers[0].id]
    if len(base) >= options["width"]:
        return None
    pool = [state.trials[t] for t in state.top] if options["strategy"] == "adaptive" else towers
    for candidate in pool:
        if candidate.id in base:
            continue
        architecture = {"members": base + [candidate.id], "combiner": options["combiner"]}
        if ensemble_key(architecture) not in state.keys:
            return architecture
    return None
