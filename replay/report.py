"""Reports on a state: the status page, the leaderboard, one line per event, and JSON forms of each.

Example::

    >>> print(render_status(state_at("runs/nb")))
    >>> print(strict_json(status_dict(state)))
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

from engine import events as ev
from engine.config import Config
from engine.state import ENSEMBLE, PAUSE, State, TowerInput, Trial


def _trial_dict(trial: Trial) -> dict[str, Any]:
    return {
        "trial": trial.id, "status": trial.status, "key": trial.key, "architecture": trial.architecture,
        "hyperparameters": trial.hyperparameters, "parent": trial.parent, "mutation": trial.mutation,
        "metrics": trial.metrics, "score": trial.score, "artifacts": trial.artifacts, "losses": trial.losses,
        "reason": trial.reason, "blame": trial.blame,
    }


def pareto_front(state: State, cost: str = "params") -> list[Trial]:
    """Completed trials no other trial beats on both score and ``cost`` (fewer is better), best first."""
    trials = [t for t in state.leaderboard() if isinstance((t.metrics or {}).get(cost), int | float)]
    front, cheapest = [], float("inf")
    for trial in sorted(trials, key=lambda t: (-t.score, t.metrics[cost], t.id)):
        if trial.metrics[cost] < cheapest:
            front.append(trial)
            cheapest = trial.metrics[cost]
    return front


def status_dict(state: State, top: int = 10) -> dict[str, Any]:
    """What ``engine status --json`` prints: progress, best, beam, leaderboard, queue and leases."""
    config = state.config
    best = state.best_trial()
    return {
        "run_id": state.run_id,
        "seq": state.seq,
        "space": config.space.kind if config else None,
        "algorithm": config.search.algorithm if config else None,
        "metric": config.search.metric if config else None,
        "mode": config.search.mode if config else None,
        "budget": state.budget,
        "proposed": state.proposals,
        "completed": len(state.completed),
        "failed": len(state.failed),
        "stopped": len(state.stopped),
        "queued": list(state.queue),
        "running": len(state.leases),
        "finished": state.finished,
        "forked_from": state.forked_from,
        "best": _trial_dict(best) if best else None,
        "ensemble": _trial_dict(state.best_ensemble()) if state.best_ensemble() else None,
        "beam": [_trial_dict(state.trials[t]) for t in state.top],
        "leaderboard": [_trial_dict(t) for t in state.leaderboard()[:top]],
        "pareto": [_trial_dict(t) for t in pareto_front(state)],
        "leases": [
            {"lease": lease.id, "trial": lease.trial, "trainer": lease.trainer, "deadline": lease.deadline}
            for lease in state.leases.values()
        ],
    }


def _stopped(state: State) -> str:
    paused = sum(state.trials[t].stop.rule == PAUSE for t in state.stopped)
    stopped = len(state.stopped) - paused
    return ((f", {stopped} of them stopped early" if stopped else "")
            + (f", {paused} paused at a rung" if paused else "")
            + (f", {state.promotions} promotions" if state.promotions else ""))


def state_dict(state: State) -> dict[str, Any]:
    """The whole state (every trial) as JSON-ready data, for ``engine replay --json``."""
    return {**status_dict(state, top=len(state.completed)),
            "config": state.config.to_dict(),
            "trials": [{**_trial_dict(t), "curve": [epoch.as_dict() for epoch in t.curve],
                        "stop": t.stop.as_dict() if t.stop else None}
                       for t in state.trials.values()]}


def _metric(trial: Trial, name: str) -> str:
    value = (trial.metrics or {}).get(name)
    return f"{value:.4g}" if isinstance(value, int | float) else "-"


def render_leaderboard(state: State, top: int = 10) -> str:
    metric = state.config.search.metric
    rows = state.leaderboard()[:top]
    if not rows:
        return "  (no completed trials yet)"
    lines = [f"  {'rank':>4}  {'trial':>6}  {metric:>12}  {'parent':>6}  candidate"]
    for rank, trial in enumerate(rows, start=1):
        parent = str(trial.parent) if trial.parent is not None else "-"
        lines.append(f"  {rank:>4}  {trial.id:>6}  {_metric(trial, metric):>12}  {parent:>6}  {trial.key}")
    return "\n".join(lines)


def render_status(state: State, top: int = 10) -> str:
    """The human-readable status page of a run."""
    config = state.config
    search = config.search
    space = config.space
    where = getattr(space, "dataset", "")
    lines = [
        f"run {state.run_id}  space {space.kind}{'/' + where if where else ''}  search {search.algorithm} "
        f"(seed {search.seed})  at event {state.seq}",
    ]
    if state.forked_from:
        origin = state.forked_from
        lines.append(f"forked from {origin['path']} at event {origin['seq']} with {origin['overrides']}")
    if state.bundle is not None:
        lines.append(f"files shipped to trainers: bundle {state.bundle}")
    done = len(state.completed) + len(state.failed)
    lines.append(
        f"trials: {done}/{state.budget} done ({len(state.completed)} completed"
        + _stopped(state)
        + f", {len(state.failed)} failed), "
        f"{len(state.queue)} queued, {len(state.leases)} running"
        + (f"  finished: {state.finished}" if state.finished else "")
    )
    best = state.best_trial()
    if best is not None:
        lines.append(f"best: trial {best.id}  {search.metric} {_metric(best, search.metric)}  {best.key}")
    ensemble = state.best_ensemble()
    if ensemble is not None:
        lines.append(f"best ensemble: trial {ensemble.id}  {search.metric} {_metric(ensemble, search.metric)}  "
                     f"members {ensemble.architecture['members']} ({ensemble.architecture['combiner']})")
    elif state.config.ensemble.strategy != "none":
        tried = len(state.leaderboard(ENSEMBLE))
        lines.append(f"best ensemble: none beats the best tower alone yet ({tried} tried)")
    lines.append(f"leaderboard ({search.metric}, {search.mode}):")
    lines.append(render_leaderboard(state, top))
    lines.append(f"beam (top-{search.beam.k}): {', '.join(map(str, state.top)) or '-'}")
    front = pareto_front(state)
    if front:
        lines.append(f"pareto front ({search.metric} against parameters):")
        for trial in front:
            lines.append(f"  trial {trial.id:>6}  {_metric(trial, search.metric):>10}  "
                         f"{int(trial.metrics['params']):>10,} params  {trial.key}")
    if state.leases:
        lines.append("leases in flight:")
        now = time.time()
        timeout = config.engine.lease_timeout
        for lease in state.leases.values():
            # The recorded deadline is the first one; heartbeats renew it without events, so show the age.
            lines.append(f"  lease {lease.id}  trial {lease.trial}  trainer {lease.trainer}  "
                         f"assigned {now - (lease.deadline - timeout):.0f}s ago")
    return "\n".join(lines)


def render_event(event: ev.Event) -> str:
    """One line per event for ``engine log``: seq, time, type and the payload's gist."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(event.at))
    p = event.payload
    if event.type == ev.CANDIDATE_PROPOSED:
        if p["kind"] == "ensemble":
            origin = "ensemble step"
        else:
            origin = f"parent {p['parent']} {p['mutation']}" if p["parent"] is not None else "random"
            if p["inherit"]["mode"] != "off":
                origin += f", weights from {p['inherit']['sources']}"
            if p["teacher"]:
                origin += f", taught by {p['teacher']['kind']} {p['teacher']['id']}"
        gist = f"trial {event.seq}: {p['key']}  ({origin})"
    elif event.type == ev.TRIAL_ASSIGNED:
        gist = f"lease {event.seq}: trial {p['trial']} -> {p['trainer']}"
    elif event.type == ev.TRIAL_COMPLETED:
        metrics = " ".join(f"{k}={v:.4g}" for k, v in sorted(p["metrics"].items()))
        gist = f"trial {p['trial']} (lease {p['lease']}): {metrics}"
    elif event.type == ev.EPOCHS_REPORTED:
        epochs = p["epochs"]
        span = f"epoch {epochs[0]['epoch']}" if len(epochs) == 1 else \
            f"epochs {epochs[0]['epoch']}-{epochs[-1]['epoch']}"
        last = " ".join(f"{k}={v:.4g}" for k, v in sorted(epochs[-1]["metrics"].items()))
        gist = f"trial {p['trial']} (lease {p['lease']}): {span}, then {last}"
    elif event.type == ev.TRIAL_STOPPED:
        gist = f"trial {p['trial']} (lease {p['lease']}): stop after epoch {p['epoch']} ({p['rule']}: {p['reason']})"
    elif event.type == ev.TRIAL_PROMOTED:
        gist = f"trial {p['trial']}: resumes from its checkpoint after epoch {p['rung']} ({p['reason']})"
    elif event.type in (ev.TRIAL_FAILED, ev.TRIAL_LOST):
        gist = f"trial {p['trial']} (lease {p['lease']}): {p['reason']}"
    elif event.type == ev.SEARCH_STARTED:
        config = Config.from_dict(p["config"])
        gist = f"run {p['run_id']}: {config.space.kind}, {config.search.algorithm}, {config.search.trials} trials"
    elif event.type == ev.SEARCH_FORKED:
        gist = f"run {p['run_id']} forked from {p['parent_path']} at {p['parent_seq']}: {p['overrides']}"
    elif event.type == ev.SEARCH_RESUMED:
        gist = f"resumed {p['overrides'] or ''}".rstrip()
    elif event.type == ev.DATA_DESCRIBED:
        gist = f"towers are built on {TowerInput.from_dict(p)}"
    else:
        gist = json.dumps(p, sort_keys=True)
    return f"{event.seq:>8}  {stamp}  {event.type:<17} {gist}"


def event_dict(event: ev.Event) -> dict[str, Any]:
    return {"seq": event.seq, "type": event.type, "v": event.v, "at": event.at, "payload": event.payload}


def strict_json(value: Any) -> str:
    """``value`` as strict JSON text, the form of every ``--json`` output: floats that are not finite (metrics
    older engines stored) become the strings "NaN", "Infinity" and "-Infinity"; anything else JSON cannot
    hold still raises.

    Example::

        >>> strict_json({"val_loss": float("nan"), "range": (0, float("-inf"))})
        '{"val_loss": "NaN", "range": [0, "-Infinity"]}'
    """
    return json.dumps(_finite(value), allow_nan=False)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else "Infinity" if value > 0 else "-Infinity"
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value
