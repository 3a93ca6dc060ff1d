"""The fold: the search's state, rebuilt from events and from nothing else.

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
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from engine import events as ev

_NUMBERS = (int, float)

TOWER = "tower"
ENSEMBLE = "ensemble"

QUEUED = "queued"
RUNNING = "running"
COMPLETED = "completed"
FAILED = "failed"


class FoldError(ValueError):
    """An event that does not follow from the state before it (a corrupt or foreign log)."""


@dataclass(slots=True)
class Trial:
    """One candidate and what became of it. Its id is the seq of its CandidateProposed event.

    A tower's ``architecture`` is its block names; an ensemble's is ``{"members": [...], "combiner": ...}``.
    """

    id: int
    architecture: Any
    hyperparameters: dict[str, Any]
    key: str
    parent: int | None
    mutation: str | None
    position: int
    seed: int
    kind: str = TOWER
    inherit: dict[str, Any] | None = None
    teacher: dict[str, Any] | None = None
    inherited: list[str] | None = None
    status: str = QUEUED
    lease: int | None = None
    losses: int = 0
    metrics: dict[str, float] | None = None
    score: float | None = None
    artifacts: dict[str, str] | None = None
    reason: str | None = None
    blame: str | None = None


@dataclass(slots=True)
class Lease:
    """One assignment of a trial to a trainer. Its id is the seq of its TrialAssigned event.

    ``holder`` is the hash of the trainer's secret: only a session proving it may report on the lease
    (None for leases recorded before holders were, where the trainer's name decides).
    """

    id: int
    trial: int
    trainer: str
    deadline: float
    holder: str | None = None

    def held_by(self, name: str, holder: str | None) -> bool:
        return self.holder == holder if self.holder is not None else self.trainer == name


@dataclass
class State:
    """Everything derived from a run's log: trials, queue, leases, the beam (top-K) and progress."""

    seq: int = 0
    run_id: str | None = None
    config: dict[str, Any] | None = None
    trials: dict[int, Trial] = field(default_factory=dict)
    queue: deque[int] = field(default_factory=deque)
    leases: dict[int, Lease] = field(default_factory=dict)
    completed: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    top: list[int] = field(default_factory=list)
    keys: dict[str, int] = field(default_factory=dict)
    proposals: int = 0
    finished: str | None = None
    forked_from: dict[str, Any] | None = None
    resumes: int = 0
    ranking: Ranking | None = None  # how trials compare, from the config
    ensemble: int | None = None  # the best completed ensemble

    @property
    def budget(self) -> int:
        return self.config["search"]["trials"] if self.config else 0

    def best_trial(self) -> Trial | None:
        return self.trials[self.top[0]] if self.top else None

    def leaderboard(self, kind: str = TOWER) -> list[Trial]:
        """Completed trials of a kind (towers, or ensembles) with a score, best first (ties broken by
        ``search.tie_break``, then the earlier trial first)."""
        scored = [self.trials[t] for t in self.completed
                  if self.trials[t].score is not None and self.trials[t].kind == kind]
        return sorted(scored, key=self.rank, reverse=True)

    def rank(self, trial: Trial) -> tuple[float, float, int]:
        """A completed trial's place on the leaderboard, larger is better: its score, then (with
        ``search.tie_break = "val_loss"``) the lower validation loss, then the earlier trial."""
        return trial.score, _neg_loss(trial) if self.ranking.ties_by_loss else 0.0, -trial.id

    def best_ensemble(self) -> Trial | None:
        return self.trials[self.ensemble] if self.ensemble is not None else None

    def strongest_tower(self) -> Trial | None:
        """The tower every ensemble must beat (``ensemble.criterion``): the completed tower with the lowest
        validation loss, or by score the best of the leaderboard. By loss it need not be ``best_trial()``."""
        towers = (t for t in self.completed if self.trials[t].kind == TOWER) if self.ranking.ensembles_by_loss \
            else self.top
        return max((self.trials[t] for t in towers), key=lambda t: (_ensemble_merit(self, t), -t.id), default=None)


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
    """``fold_all`` over stored records (big-endian key, msgpack value), as ``EventLog.records`` yields them.

    The same checks and handlers as :func:`fold`; it only skips building an Event per record, which
    is most of what replaying a long log costs beyond decoding it. Old versions are upcast as usual.
    """
    state = State() if state is None else state
    current, unpack, seq_of = types.current_versions, ev.unpack_record, int.from_bytes
    with _Paused():
        for key, raw in records:
            seq = seq_of(key, "big")
            try:
                record = unpack(raw)
                kind, payload = record["type"], record["payload"]
                fast = current.get(kind) == record["v"]
            except Exception:  # decode() below names what is wrong with the record
                fast = False
            if fast:
                _apply(state, seq, kind, payload)
            else:
                event = types.decode(seq, raw)
                _apply(state, seq, event.type, event.payload)
    return state


# -- handlers ---------------------------------------------------------------------------------------


def _started(state: State, p: dict[str, Any], seq: int) -> None:
    if seq != 1:
        raise ValueError("SearchStarted must be the first event")
    state.run_id = p["run_id"]
    state.config = p["config"]
    state.ranking = _ranking(p["config"])


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
    _reconfigure(state, p["config"])


def _resumed(state: State, p: dict[str, Any], seq: int) -> None:
    state.resumes += 1
    _reconfigure(state, p["config"])


def _reconfigure(state: State, config: dict[str, Any]) -> None:
    old = state.config
    state.config = config
    state.ranking = _ranking(config)
    state.finished = None
    if old is None or (old["search"]["metric"], old["search"]["mode"]) != (
        config["search"]["metric"], config["search"]["mode"]
    ):
        for trial_id in state.completed:
            trial = state.trials[trial_id]
            trial.score = score(config, trial.metrics)
    state.top = [trial.id for trial in state.leaderboard()[: config["search"]["beam"]["k"]]]
    best = max(state.leaderboard(ENSEMBLE), key=lambda e: (_ensemble_merit(state, e), -e.id), default=None)
    state.ensemble = best.id if best is not None and _ensemble_merit(state, best) > _best_tower_merit(state) else None


def _proposed(state: State, p: dict[str, Any], seq: int) -> None:
    state.trials[seq] = Trial(seq, p["architecture"], p["hyperparameters"], p["key"], p["parent"], p["mutation"],
                              p["position"], p["seed"], p["kind"], p["inherit"], p["teacher"])
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
    trial.status, trial.lease = RUNNING, seq
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


def _completed(state: State, p: dict[str, Any], seq: int) -> None:
    trial = _release(state, p)
    trial.status, trial.metrics, trial.artifacts = COMPLETED, p["metrics"], p["artifacts"]
    trial.inherited = p["inherited"]
    metric, sign, k = state.ranking.metric, state.ranking.sign, state.ranking.k
    value = trial.score = _signed(p["metrics"].get(metric), sign)
    state.completed.append(trial.id)
    if value is None:
        return
    if trial.kind == ENSEMBLE:
        # The best ensemble is one that beats every tower alone and every ensemble before it; one that
        # does not is tried and set aside.
        best = state.best_ensemble()
        merit = _ensemble_merit(state, trial)
        if (best is None or merit > _ensemble_merit(state, best)) and merit > _best_tower_merit(state):
            state.ensemble = trial.id
        return
    top = state.top
    # Most trials do not enter the top-k: one comparison with its last member says so.
    entered = len(top) < k or state.rank(trial) > state.rank(state.trials[top[-1]])
    if entered:
        _enter_top(state, trial, k)
    # By score only a tower entering the top can match the ensemble; by loss any tower can.
    if (state.ensemble is not None and (entered or state.ranking.ensembles_by_loss)
            and _ensemble_merit(state, trial) >= _ensemble_merit(state, state.trials[state.ensemble])):
        state.ensemble = None  # a tower alone does as well: no ensemble is worth its cost now


def _failed(state: State, p: dict[str, Any], seq: int) -> None:
    trial = _release(state, p)
    trial.status, trial.reason, trial.blame = FAILED, p["reason"], p["blame"]
    state.failed.append(trial.id)


def _lost(state: State, p: dict[str, Any], seq: int) -> None:
    trial = _release(state, p)
    trial.status, trial.reason = QUEUED, p["reason"]
    trial.losses += 1
    state.queue.appendleft(trial.id)


def _finished(state: State, p: dict[str, Any], seq: int) -> None:
    state.finished = p["reason"]


class Ranking(NamedTuple):
    """How trials compare, from the config."""

    metric: str
    sign: float  # +1 when larger is better, -1 when smaller is
    k: int  # beam width
    ties_by_loss: bool  # search.tie_break = "val_loss"
    ensembles_by_loss: bool  # ensemble.criterion = "val_loss"


def _ranking(config: dict[str, Any]) -> Ranking:
    search = config["search"]
    return Ranking(search["metric"], 1.0 if search["mode"] == "max" else -1.0, search["beam"]["k"],
                   search["tie_break"] == "val_loss", config["ensemble"]["criterion"] == "val_loss")


def _signed(value: Any, sign: float) -> float | None:
    if isinstance(value, bool) or not isinstance(value, _NUMBERS) or not math.isfinite(value):
        return None
    return sign * float(value)


def score(config: dict[str, Any], metrics: dict[str, float] | None) -> float | None:
    """The search metric as a number where larger is better (None when absent or not finite)."""
    ranking = _ranking(config)
    return _signed((metrics or {}).get(ranking.metric), ranking.sign)


def _neg_loss(trial: Trial) -> float:
    """Minus the validation loss (larger is better; -inf when there is none)."""
    loss = (trial.metrics or {}).get("val_loss")
    return -loss if isinstance(loss, (int, float)) and math.isfinite(loss) else -math.inf


def _ensemble_merit(state: State, trial: Trial) -> tuple[float, ...]:
    """How ensembles and towers compare (``ensemble.criterion``): by validation loss alone, or by the
    search's score with ties broken by the lower validation loss."""
    return (_neg_loss(trial),) if state.ranking.ensembles_by_loss else (trial.score, _neg_loss(trial))


def _best_tower_merit(state: State) -> tuple[float, ...]:
    strongest = state.strongest_tower()
    return _ensemble_merit(state, strongest) if strongest is not None else (-math.inf, -math.inf)


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
    ev.TRIAL_COMPLETED: _completed,
    ev.TRIAL_FAILED: _failed,
    ev.TRIAL_LOST: _lost,
    ev.SEARCH_FINISHED: _finished,
}
