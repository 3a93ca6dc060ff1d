"""Stopping rules: which trial in flight to stop early, decided from the state alone when its epochs arrive.

The scheduler asks :func:`decide` right after it records a trial's ``EpochsReported``; a decision becomes a
``TrialStopped`` event (its rule, the epoch, and the figures it compared) before the trainer is told, and
``engine replay --verify`` asks again at the same place and fails where the answer differs.

- ``asha``: asynchronous successive halving (Li et al., "A System for Massively Parallel Hyperparameter Tuning",
  MLSys 2020). Rungs sit at ``min_epochs * eta**k`` epochs, below ``training.epochs``. A trial that reaches a rung
  goes on only if its value there is among the best ``n // eta`` of the ``n`` trials that reached it (itself
  included); while fewer than ``eta`` have, only if it is the best of them (the rule Optuna's
  ``SuccessiveHalvingPruner`` documents for the first trials at a rung). With ``children = "parent"`` a mutated
  tower also goes on while its value is within ``parent_margin`` of its parent's at the same rung: a keyword
  search's best towers ranked near the cutoff after 2 epochs (Spearman -0.36 against their final values among the
  best 40), so the population alone stopped most of a good tower's children for noise. With ``children = "beam"``
  a child of one of the beam's towers (``State.top``) goes past the first rung whatever its value: in twelve
  budgeted speech searches, among each one's best 40 towers, the value after 2 epochs ranked their final values at
  a median Spearman 0.09, their parent's final value at 0.29, and their own value after 6 epochs at 0.34
  (``benchmarks/rank_signals.py``), so the first rung cannot judge a good lineage's children and later ones can.
- ``median``: after ``warmup`` epochs, a trial whose best value so far is below the median of the other trials'
  values at the same epoch stops, once at least ``min_trials`` others reached it (Optuna's ``MedianPruner``).

- ``asha-promote``: ASHA with pauses and promotions, as the paper's Algorithm 2 schedules it. No trial is stopped
  in flight: each lease trains up to the next rung (:func:`pause_epoch`) and its trainer returns a checkpoint there;
  the trial is kept like one stopped at that rung. Whenever a trainer asks for work, the best paused trial of the
  highest rung that is among the best ``n // eta`` of the ``n`` trials that reached it is promoted
  (:func:`promotion`, a ``TrialPromoted`` event) and resumes from its checkpoint, on any trainer; only when none
  is does a new candidate start. Ties at the cutoff all go on.

Trials compete only with trials that started the same way: from scratch, or from inherited weights (a child that
starts from its parent's weights is ahead at epoch 1 for a reason that says nothing of its architecture).

Example::

    >>> decide(state, state.trials[12], since=1)      # after trial 12 reported epochs 2 and 3
    Decision(epoch=2, rule='asha', reason='...', figures={'rung': 2, ...})
    >>> promotion(state)                               # asha-promote: which paused trial resumes next
    Promotion(trial=12, rung=2, reason='...', figures={'rung': 2, ...})
"""

from __future__ import annotations

import statistics
from collections.abc import Iterator
from typing import Any, NamedTuple

from engine.state import COMPLETED, PAUSE, TOWER, State, Trial, signed

PROMOTE = "asha-promote"


class Decision(NamedTuple):
    """A trial to stop: after which reported epoch, by which rule, why, and the figures compared."""

    epoch: int
    rule: str
    reason: str
    figures: dict[str, Any]


class Promotion(NamedTuple):
    """A paused trial to resume: which, from which rung, why, and the figures compared."""

    trial: int
    rung: int
    reason: str
    figures: dict[str, Any]


def rungs(min_epochs: int, eta: int, epochs: int) -> Iterator[int]:
    """The epochs at which ASHA compares trials: ``min_epochs * eta**k`` below ``epochs`` (a trial that trains
    them all has nothing left to stop)."""
    rung = min_epochs
    while rung < epochs:
        yield rung
        rung *= eta


def decide(state: State, trial: Trial, since: int) -> Decision | None:
    """Whether to stop ``trial`` now that it reported the epochs after ``since``; None to let it train on."""
    rule = state.config.search.stopping
    if rule not in _RULES or trial.stop is not None or trial.kind != TOWER or not trial.curve:
        return None
    return _RULES[rule](state, trial, since)


def _value(state: State, trial: Trial, epoch: int) -> float | None:
    """The search metric after ``epoch`` epochs, signed so larger is better (None where it was not reported)."""
    for point in trial.curve:
        if point.epoch == epoch:
            return signed(point.metrics.get(state.ranking.metric), state.ranking.sign)
    return None


def _inherits(trial: Trial) -> bool:
    return bool(trial.inherit) and trial.inherit["mode"] != "off"


def _peers(state: State, trial: Trial) -> Iterator[Trial]:
    """The other towers it is compared with: those that started the same way."""
    inherits = _inherits(trial)
    return (other for other in state.trials.values()
            if other.id != trial.id and other.kind == TOWER and other.curve and _inherits(other) == inherits)


def _shown(value: float, state: State) -> float:
    return value * state.ranking.sign  # back to the metric as reported


def _asha(state: State, trial: Trial, since: int) -> Decision | None:
    options = state.config.search.asha
    latest = trial.curve[-1].epoch
    metric = state.ranking.metric
    for rung in rungs(options.min_epochs, options.eta, state.config.training.epochs):
        if rung > latest:
            break
        if rung <= since:
            continue  # judged when it got there
        value = _value(state, trial, rung)
        if value is None:
            continue
        if rung == options.min_epochs and _beam_child(state, trial):
            continue
        parent = _parent_value(state, trial, rung)
        if parent is not None and value >= parent - options.parent_margin * abs(parent):
            continue
        others = [v for v in (_value(state, other, rung) for other in _peers(state, trial)) if v is not None]
        ranked = sorted([value, *others], reverse=True)
        promoted = len(ranked) // options.eta
        cutoff = ranked[max(promoted, 1) - 1]
        if value >= cutoff:
            continue
        figures = {"rung": rung, "value": _shown(value, state), "cutoff": _shown(cutoff, state),
                   "trials": len(ranked), "promoted": promoted}
        if promoted:
            reason = (f"{metric} {_shown(value, state):.4g} after {rung} epochs is not in the top {promoted} of the "
                      f"{len(ranked)} trials there (cutoff {_shown(cutoff, state):.4g})")
        else:
            reason = (f"{metric} {_shown(value, state):.4g} after {rung} epochs is below the best of the first "
                      f"{len(ranked)} trials there ({_shown(cutoff, state):.4g})")
        if parent is not None:
            figures["parent"] = _shown(parent, state)
            reason += f" and not within {options.parent_margin:.0%} of its parent's {_shown(parent, state):.4g}"
        return Decision(rung, "asha", reason, figures)
    return None


def _beam_child(state: State, trial: Trial) -> bool:
    """With ``children = "beam"``, whether ``trial`` mutated one of the beam's towers as the state stands now."""
    return state.config.search.asha.children == "beam" and trial.parent is not None and trial.parent in state.top


def _parent_value(state: State, trial: Trial, rung: int) -> float | None:
    """With ``children = "parent"``, the value at ``rung`` of the tower ``trial`` mutated (None: no such rule or
    parent, or a parent that started another way or never reached the rung, which says nothing of it)."""
    parent = state.trials.get(trial.parent) if trial.parent is not None else None
    if (state.config.search.asha.children != "parent" or parent is None or parent.kind != TOWER
            or _inherits(parent) != _inherits(trial)):
        return None
    return _value(state, parent, rung)


def _median(state: State, trial: Trial, since: int) -> Decision | None:
    options = state.config.search.median
    metric = state.ranking.metric
    for point in trial.curve:
        epoch = point.epoch
        if epoch <= max(since, options.warmup):
            continue
        others = [v for v in (_value(state, other, epoch) for other in _peers(state, trial)) if v is not None]
        mine = [v for v in (_value(state, trial, p.epoch) for p in trial.curve if p.epoch <= epoch) if v is not None]
        if len(others) < options.min_trials or not mine:
            continue
        best, median = max(mine), statistics.median(others)
        if best < median:
            figures = {"epoch": epoch, "best": _shown(best, state), "median": _shown(median, state),
                       "trials": len(others)}
            reason = (f"its best {metric} {_shown(best, state):.4g} after {epoch} epochs is below the median "
                      f"{_shown(median, state):.4g} of the {len(others)} other trials there")
            return Decision(epoch, "median", reason, figures)
    return None


_RULES = {"asha": _asha, "median": _median}
RULES = tuple(_RULES)


def pause_epoch(state: State, trial: Trial) -> int | None:
    """With asha-promote, the epoch a tower's next lease pauses after: the first rung beyond where it starts
    (None: it trains to the end, or no pausing rule is set)."""
    if state.config.search.stopping != PROMOTE or trial.kind != TOWER:
        return None
    start = trial.resume.epoch if trial.resume else 0
    options = state.config.search.asha
    return next((rung for rung in rungs(options.min_epochs, options.eta, state.config.training.epochs)
                 if rung > start), None)


def promotion(state: State) -> Promotion | None:
    """With asha-promote, the paused trial to resume now: at the highest rung where one qualifies, the best
    paused trial among the top ``n // eta`` of the ``n`` trials that reached that rung (trials that started the
    same way); None when none qualifies (a new candidate starts instead)."""
    if state.config.search.stopping != PROMOTE:
        return None
    paused = [t for t in state.trials.values() if t.status == COMPLETED and t.stop is not None
              and t.stop.rule == PAUSE]
    eta, metric = state.config.search.asha.eta, state.ranking.metric
    for rung in sorted({t.stop.epoch for t in paused}, reverse=True):
        arrived: dict[bool, list[float]] = {}  # started from inherited weights or not -> values at the rung
        for other in state.trials.values():
            value = _value(state, other, rung) if other.kind == TOWER else None
            if value is not None:
                arrived.setdefault(_inherits(other), []).append(value)
        best: tuple[float, int, dict[str, Any]] | None = None
        for trial in (t for t in paused if t.stop.epoch == rung):
            value = _value(state, trial, rung)
            ranked = sorted(arrived.get(_inherits(trial), []), reverse=True)
            promoted = len(ranked) // eta
            if value is None or not promoted or value < ranked[promoted - 1]:
                continue
            if best is None or (value, -trial.id) > (best[0], -best[1]):
                best = (value, trial.id, {"rung": rung, "value": _shown(value, state),
                                          "cutoff": _shown(ranked[promoted - 1], state), "trials": len(ranked),
                                          "promoted": promoted})
        if best is not None:
            value, trial_id, figures = best
            reason = (f"{metric} {figures['value']:.4g} after {rung} epochs is in the top {figures['promoted']} of "
                      f"the {figures['trials']} trials there (cutoff {figures['cutoff']:.4g})")
            return Promotion(trial_id, rung, reason, figures)
    return None
