"""The fold: the search's state (``engine/state.py``), rebuilt from events and from nothing else.

``fold(state, event)`` applies one event and returns the state. For speed it updates ``state`` in
place (the caller owns it); it reads nothing but its two arguments, never the clock or any global.
The live engine and replay call the same function on the same decoded events, which is why
``fold(log[:n])`` equals the engine's state after event ``n``.

Example::

    >>> state = State()
    >>> for event in log.read():
    ...     fold(state, event)
    >>> state.best_trial().key
"""

from __future__ import annotations

import gc
import math
from collections.abc import Iterable
from typing import Any

from engine import events as ev
from engine.config import Config
from engine.log import decoded
from engine.state import (
    COMPLETED,
    ENSEMBLE,
    FAILED,
    PAUSE,
    QUEUED,
    RUNNING,
    TOWER,
    Artifact,
    Blame,
    Epoch,
    Kind,
    Lease,
    Resume,
    State,
    Stop,
    TowerInput,
    Trial,
    ensemble_merit,
    keeps_ensemble,
    ranking_of,
    score,
    signed,
)


class FoldError(ValueError):
    """An event that does not follow from the state before it (a corrupt or foreign log)."""


def fold(state: State, event: ev.Event) -> State:
    """Apply one event to the state (in place) and return it."""
    _apply(state, event[0], event[1], event[4])
    return state


def _apply(state: State, seq: int, kind: str, payload: dict[str, Any]) -> None:
    if seq != state.seq + 1:
        raise FoldError(f"event {seq} does not follow event {state.seq}: the log has a gap")
    handler = _HANDLERS.get(kind)
    if handler is None:
        raise FoldError(f"event {seq} has a type the fold does not know: {kind}")
    if state.config is None and kind != ev.SEARCH_STARTED:
        raise FoldError(f"event {seq} ({kind}) comes before SearchStarted")
    try:
        handler(state, payload, seq)
    except (KeyError, IndexError, ValueError, TypeError) as exc:
        raise FoldError(f"event {seq} ({kind}) does not follow from the state: {exc!r}") from None
    state.seq = seq


class _Paused:
    """Pauses the cyclic garbage collector while a state is rebuilt (and restores it after).

    Replay allocates many small, long-lived objects without reference cycles; the collector would
    rescan them over and over for nothing.
    """

    def __enter__(self) -> None:
        self.collecting = gc.isenabled()
        gc.disable()

    def __exit__(self, *exc: object) -> None:
        if self.collecting:
            gc.enable()


def fold_all(events: Iterable[ev.Event], state: State | None = None) -> State:
    """The state after a sequence of events (from an empty state unless one is given)."""
    state = State() if state is None else state
    with _Paused():
        for event in events:
            _apply(state, event[0], event[1], event[4])
    return state


def fold_records(records: Iterable[tuple[bytes, bytes]], state: State | None = None,
                 types: ev.EventTypes = ev.TYPES) -> State:
    """``fold_all`` over stored records (big-endian key, msgpack value), as ``EventLog.records`` yields them,
    decoded by the log (:func:`engine.log.decoded`). The same checks and handlers as :func:`fold`."""
    state = State() if state is None else state
    with _Paused():
        for seq, kind, payload in decoded(records, types):
            _apply(state, seq, kind, payload)
    return state


# -- handlers ---------------------------------------------------------------------------------------


def _started(state: State, p: dict[str, Any], seq: int) -> None:
    if seq != 1:
        raise ValueError("SearchStarted must be the first event")
    state.run_id = p["run_id"]
    state.config = Config.from_dict(p["config"])
    state.bundle = p["bundle"]
    state.ranking = ranking_of(state.config)


def _forked(state: State, p: dict[str, Any], seq: int) -> None:
    state.forked_from = {"run": p["parent_run"], "path": p["parent_path"], "seq": p["parent_seq"],
                         "overrides": p["overrides"]}
    state.run_id = p["run_id"]
    # Candidates in flight at the fork point go back to the queue, front first, in trial order.
    for lease in sorted(state.leases.values(), key=lambda lease: lease.trial, reverse=True):
        trial = state.trials[lease.trial]
        trial.status, trial.lease = QUEUED, None
        state.queue.appendleft(trial.id)
    state.leases.clear()
    _reconfigure(state, Config.from_dict(p["config"]))


def _resumed(state: State, p: dict[str, Any], seq: int) -> None:
    state.resumes += 1
    _reconfigure(state, Config.from_dict(p["config"]))


def _reconfigure(state: State, config: Config) -> None:
    old = state.config
    state.config = config
    state.ranking = ranking_of(config)
    state.finished = None
    if old is not None and old.data != config.data:  # a fork onto other data: its trainers describe it anew
        state.tower_input = None
    if old is None or (old.search.metric, old.search.mode) != (config.search.metric, config.search.mode):
        for trial_id in state.completed:
            trial = state.trials[trial_id]
            trial.score = score(config, trial.metrics)
        for trial_id in state.stopped:  # by the new metric, whom they are kept below may change
            if state.trials[trial_id].score is not None:
                _cap(state, state.trials[trial_id])
    state.top = [trial.id for trial in state.leaderboard()[: config.search.beam.k]]
    state.ensemble = None
    for ensemble in sorted(state.leaderboard(ENSEMBLE), key=lambda e: e.id):  # as they completed, ties to the first
        if keeps_ensemble(state, ensemble, state.best_ensemble()):
            state.ensemble = ensemble.id


def _proposed(state: State, p: dict[str, Any], seq: int) -> None:
    state.trials[seq] = Trial(seq, p["architecture"], p["hyperparameters"], p["key"], p["parent"], p["mutation"],
                              p["position"], p["seed"], Kind(p["kind"]), p["inherit"], p["teacher"])
    state.keys.setdefault(p["key"], seq)
    state.queue.append(seq)
    state.proposals += 1


def _assigned(state: State, p: dict[str, Any], seq: int) -> None:
    trial = state.trials[p["trial"]]
    if trial.status != QUEUED:
        raise ValueError(f"trial {trial.id} is {trial.status}, not queued")
    queue = state.queue
    if queue[0] == trial.id:  # the scheduler assigns from the front
        queue.popleft()
    else:
        queue.remove(trial.id)
    # A lease trains from the start, or a promoted trial's from its checkpoint (its curve up to there stays).
    trial.curve = [point for point in trial.curve if point.epoch <= trial.resume.epoch] if trial.resume else []
    trial.status, trial.lease, trial.stop = RUNNING, seq, None
    state.leases[seq] = Lease(seq, trial.id, p["trainer"], p["deadline"], p["holder"])


def _release(state: State, p: dict[str, Any]) -> Trial:
    trial = state.trials[p["trial"]]
    lease = p["lease"]
    if lease is not None:
        if state.leases.pop(lease).trial != trial.id:
            raise ValueError(f"lease {lease} is not trial {trial.id}'s")
    elif trial.status == QUEUED:
        state.queue.remove(trial.id)
    trial.lease = None
    return trial


def _epochs_reported(state: State, p: dict[str, Any], seq: int) -> None:
    lease = state.leases[p["lease"]]
    trial = state.trials[p["trial"]]
    if lease.trial != trial.id:
        raise ValueError(f"lease {lease.id} is trial {lease.trial}'s, not trial {trial.id}'s")
    for reported in p["epochs"]:
        epoch = Epoch(reported["epoch"], reported["metrics"])
        if trial.curve and epoch.epoch <= trial.curve[-1].epoch:
            raise ValueError(f"epoch {epoch.epoch} of trial {trial.id} comes after epoch {trial.curve[-1].epoch}")
        trial.curve.append(epoch)


def _trial_stopped(state: State, p: dict[str, Any], seq: int) -> None:
    lease = state.leases[p["lease"]]
    trial = state.trials[p["trial"]]
    if lease.trial != trial.id or trial.stop is not None:
        raise ValueError(f"lease {lease.id} cannot stop trial {trial.id} (its trial: {lease.trial}; "
                         f"stopped already: {trial.stop is not None})")
    trial.stop = Stop(p["epoch"], p["rule"], p["reason"], p["figures"])


def _completed(state: State, p: dict[str, Any], seq: int) -> None:
    trial = _release(state, p)
    trial.status, trial.metrics, trial.artifacts = COMPLETED, p["metrics"], p["artifacts"]
    if trial.resume is None:  # a resumed lease copies no layers: what the trial inherited at its start stays
        trial.inherited = p["inherited"]
    trial.resume = None
    if Artifact.CHECKPOINT in trial.artifacts and trial.stop is None and trial.kind == TOWER and trial.curve:
        # Paused at a rung (search.stopping = asha-promote): ranked like a trial stopped there until promoted.
        epoch = trial.curve[-1].epoch
        trial.stop = Stop(epoch, PAUSE, f"paused after {epoch} epochs, at a rung", {"rung": epoch})
    metric, sign, k = state.ranking.metric, state.ranking.sign, state.ranking.k
    value = trial.score = signed(p["metrics"].get(metric), sign)
    state.completed.append(trial.id)
    if value is None:
        return
    if trial.kind == ENSEMBLE:
        if keeps_ensemble(state, trial, state.best_ensemble()):
            state.ensemble = trial.id
        return
    if trial.stop is not None:
        state.stopped.append(trial.id)
    if state.stopped and _cap(state, trial):
        state.top = [t.id for t in state.leaderboard()[:k]]  # a stopped trial in it may have dropped
    top = state.top
    # Most trials do not enter the top-k: one comparison with its last member says so.
    entered = trial.id in top or len(top) < k or state.rank(trial) > state.rank(state.trials[top[-1]])
    if entered and trial.id not in top:
        _enter_top(state, trial, k)
    # By score only a tower entering the top can match the ensemble; by loss any tower can.
    if (state.ensemble is not None and (entered or state.ranking.ensembles_by_loss)
            and ensemble_merit(state, trial) >= ensemble_merit(state, state.trials[state.ensemble])):
        state.ensemble = None  # a tower alone does as well: no ensemble is worth its cost now


def _promoted(state: State, p: dict[str, Any], seq: int) -> None:
    trial = state.trials[p["trial"]]
    stop = trial.stop
    if trial.status != COMPLETED or stop is None or stop.rule != PAUSE or stop.epoch != p["rung"]:
        raise ValueError(f"trial {trial.id} is not paused at rung {p['rung']}")
    state.completed.remove(trial.id)
    state.stopped.remove(trial.id)
    if trial.id in state.top:
        state.top = [t.id for t in state.leaderboard()[:state.ranking.k]]
    trial.status, trial.score, trial.stop = QUEUED, None, None
    trial.resume = Resume(stop.epoch, trial.artifacts[Artifact.CHECKPOINT])
    state.queue.appendleft(trial.id)  # next to be assigned, before anything queued
    state.promotions += 1


def _failed(state: State, p: dict[str, Any], seq: int) -> None:
    trial = _release(state, p)
    trial.status, trial.reason, trial.blame = FAILED, p["reason"], Blame(p["blame"])
    if p["metrics"]:  # what was measured before it failed (a tower over space.max_params: its size)
        trial.metrics = p["metrics"]
    state.failed.append(trial.id)


def _lost(state: State, p: dict[str, Any], seq: int) -> None:
    trial = _release(state, p)
    trial.status, trial.reason = QUEUED, p["reason"]
    trial.losses += 1
    state.queue.appendleft(trial.id)


def _described(state: State, p: dict[str, Any], seq: int) -> None:
    if state.tower_input is None:  # the first description stands: every trainer reads the same data
        state.tower_input = TowerInput.from_dict(p)


def _finished(state: State, p: dict[str, Any], seq: int) -> None:
    state.finished = p["reason"]


def _value_at(state: State, trial: Trial, epoch: int) -> float | None:
    """A trial's search metric after ``epoch`` epochs, signed (larger is better), from its learning curve."""
    for point in trial.curve:
        if point.epoch == epoch:
            return signed(point.metrics.get(state.ranking.metric), state.ranking.sign)
    return None


def _beat(state: State, full: Trial, stopped: Trial) -> bool:
    """Whether a trial that was not stopped did better than a stopped one at the epoch it was stopped after."""
    epoch = stopped.stop.epoch
    theirs, its = _value_at(state, full, epoch), _value_at(state, stopped, epoch)
    return theirs is not None and its is not None and theirs > its


def _cap(state: State, trial: Trial) -> bool:
    """Keep every stopped trial below each trial that ran on and beat it at the epoch it was stopped after: its
    score becomes at most just below theirs, whatever it reached later. Returns whether a score other than
    ``trial``'s was lowered (the top-k must then be rebuilt)."""
    trials = state.trials
    if trial.stop is not None:
        for other in state.completed_towers():
            if other.stop is None and other.score is not None and _beat(state, other, trial):
                trial.score = min(trial.score, math.nextafter(other.score, -math.inf))
        return False
    lowered = False
    for stopped in (trials[t] for t in state.stopped):
        if stopped.score is not None and stopped.score >= trial.score and _beat(state, trial, stopped):
            stopped.score, lowered = math.nextafter(trial.score, -math.inf), True
    return lowered


def _enter_top(state: State, trial: Trial, k: int) -> None:
    top, trials = state.top, state.trials
    place, rank = len(top), state.rank(trial)
    while place > 0 and state.rank(trials[top[place - 1]]) < rank:
        place -= 1
    if place < k:
        top.insert(place, trial.id)
        del top[k:]


_HANDLERS = {
    ev.SEARCH_STARTED: _started,
    ev.SEARCH_FORKED: _forked,
    ev.SEARCH_RESUMED: _resumed,
    ev.CANDIDATE_PROPOSED: _proposed,
    ev.TRIAL_ASSIGNED: _assigned,
    ev.EPOCHS_REPORTED: _epochs_reported,
    ev.TRIAL_STOPPED: _trial_stopped,
    ev.TRIAL_PROMOTED: _promoted,
    ev.TRIAL_COMPLETED: _completed,
    ev.TRIAL_FAILED: _failed,
    ev.TRIAL_LOST: _lost,
    ev.DATA_DESCRIBED: _described,
    ev.SEARCH_FINISHED: _finished,
}
