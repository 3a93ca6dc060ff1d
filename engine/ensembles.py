"""Ensemble steps: when the next candidate combines trained towers instead of training a new one.

A pure function of the state, like the searchers. An ensemble candidate's architecture is
``{"members": [trial ids], "combiner": "average" | "weighted"}``; a trainer combines the members'
recorded outputs and reports the ensemble's validation metric, and the fold keeps the best ensemble.

- ``adaptive``: the ensemble grows greedily. Each tower of the beam (top-K) is tried once as an addition
  to the best ensemble (one that beats every tower alone), or to the best tower when there is no such
  ensemble (to begin with, or since a new tower did as well alone); an addition that does not improve
  on its base is set aside, so members are only ever added when they help.
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
    return f"ensemble {'+'.join(map(str, sorted(architecture['members'])))} ({architecture['combiner']})"


def plan_ensemble(state: State, scheduled: bool = True) -> dict[str, Any] | None:
    """The next ensemble step, or None when the next candidate should be a new tower.

    ``scheduled=False`` ignores the intermixed schedule (when no new tower is left to try).
    """
    options = state.config["ensemble"]
    if options["strategy"] == "none":
        return None
    if scheduled and options["strategy"] == "intermixed" and (state.proposals + 1) % options["every"] != 0:
        return None
    towers = [t for t in state.leaderboard() if "outputs" in (t.artifacts or {})]  # what ensembles combine
    if len(towers) < 2:
        return None
    # The best ensemble beats every tower alone; without one, start from the best tower.
    best = state.best_ensemble()
    base = list(best.architecture["members"]) if best is not None else [towers[0].id]
    if len(base) >= options["width"]:
        return None
    pool = [t for t in towers if t.id in state.top] if options["strategy"] == "adaptive" else towers
    for candidate in pool:
        if candidate.id in base:
            continue
        architecture = {"members": base + [candidate.id], "combiner": options["combiner"]}
        if ensemble_key(architecture) not in state.keys:
            return architecture
    return None
