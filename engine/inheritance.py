"""What a new tower inherits from earlier trials: weights to start from, and a teacher to learn from.

Pure functions of the state, decided when the candidate is proposed and recorded in its
CandidateProposed event, so replay and forks see exactly what each trial was given.

- Weight sharing (``[sharing]``): ``parent`` copies the mutated parent's weights into the layers the
  child shares with it (same block, same position, same shapes); ``average`` averages every such layer
  over the best completed towers that have it, uniformly or weighted by validation loss (lower loss,
  more weight). The other layers start from a fresh initialisation.
- Distillation (``[distillation]``): the teacher is the best completed tower or the best ensemble;
  with ``adaptive``, the teacher's share of the loss ramps up as trials complete (early teachers are
  weak ones).

Example::

    >>> plan_inheritance(state, parent=12)   # {"mode": "parent", "sources": [12], "weights": [1.0]}
    >>> plan_teacher(state)                   # {"kind": "trial", "id": 30, "loss": "soft", ...} or None
"""

from __future__ import annotations

from typing import Any

from engine.events import NO_INHERITANCE
from engine.state import COMPLETED, Artifact, State


def plan_inheritance(state: State, parent: int | None) -> dict[str, Any]:
    options = state.config.sharing
    if options.mode == "parent":
        source = state.trials.get(parent) if parent is not None else None
        if source is None or source.status != COMPLETED or Artifact.WEIGHTS not in (source.artifacts or {}):
            return dict(NO_INHERITANCE)
        return {"mode": "parent", "sources": [source.id], "weights": [1.0]}
    if options.mode == "average":
        sources = [t for t in state.leaderboard() if Artifact.WEIGHTS in (t.artifacts or {})][: options.sources]
        if not sources:
            return dict(NO_INHERITANCE)
        losses = [t.metrics.get("val_loss") for t in sources]
        if options.weighting == "loss" and all(isinstance(v, int | float) and v > 0 for v in losses):
            raw = [1.0 / v for v in losses]
        else:
            raw = [1.0] * len(sources)
        return {"mode": "average", "sources": [t.id for t in sources], "weights": [w / sum(raw) for w in raw]}
    return dict(NO_INHERITANCE)


def plan_teacher(state: State) -> dict[str, Any] | None:
    options = state.config.distillation
    if options.teacher == "none":
        return None
    if options.teacher == "ensemble" and state.best_ensemble() is not None:  # it beats every tower alone
        kind, source = "ensemble", state.best_ensemble()
    else:
        kind, source = "trial", state.best_trial()
    if source is None or Artifact.OUTPUTS not in (source.artifacts or {}):
        return None
    weight = options.weight
    if options.adaptive:
        weight *= min(1.0, len(state.leaderboard()) / options.ramp)
    return {"kind": kind, "id": source.id, "loss": options.loss, "temperature": options.temperature,
            "weight": weight}
