"""Trials stopped early: at the deadline (search.at_deadline = "stop"), a trial in flight is told to stop after its
current epoch, the decision is an event before anyone is told, and a stopped trial never outranks a trial that ran
on and beat it at the epoch it was stopped after."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import stopping_search, tower_config, write_toml

from engine import events as ev
from engine.fold import fold_all
from engine.scheduler import Scheduler
from engine.state import Epoch, State, Status

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def keras_run(**overrides: object) -> tuple[Scheduler, Clock]:
    """A live state of a Keras search (no data is read: nothing trains here), its scheduler and its events."""
    config = tower_config(**{"evaluator__kind": "keras", "search__minutes": 1, "search__trials": 6, **overrides})
    clock, state = Clock(), State()
    scheduler = Scheduler(state, now=0.0, clock=clock, started_at=clock.now)
    scheduler.emit(ev.SEARCH_STARTED, {"run_id": "r", "config": config.to_dict(), "lineage": "test", "bundle": None})
    return scheduler, clock


def curve(*values: float) -> list[Epoch]:
    return [Epoch(i + 1, {"val_accuracy": v, "val_loss": 1.0}) for i, v in enumerate(values)]


def test_at_the_deadline_trials_in_flight_are_told_to_stop_once_and_the_search_ends_with_them() -> None:
    scheduler, clock = keras_run()
    state = scheduler.state
    first, second = scheduler.assign("t1", 2)
    scheduler.progress(first.lease, curve(0.5, 0.6))
    scheduler.stop_at_deadline()
    assert scheduler.take_stops() == [], "not before the deadline"
    clock.now += 61
    scheduler.stop_at_deadline()
    assert scheduler.take_stops() == [first.lease, second.lease]
    scheduler.stop_at_deadline()
    assert scheduler.take_stops() == [], "each lease is told once"
    assert [(s.epoch, s.rule) for s in (state.trials[first.trial].stop, state.trials[second.trial].stop)] == [
        (2, "deadline"), (0, "deadline")]
    scheduler.lose(second.lease, "no heartbeat")
    assert scheduler.assign("t2", 1) == [], "after the deadline nothing more is handed out, queued or new"
    scheduler.complete(first.lease, {"val_accuracy": 0.62, "val_loss": 1.0, "epochs": 3}, {})
    assert scheduler.finish_if_done()
    assert state.finished == "time budget of 1 minutes spent (1 queued candidates not evaluated)"
    assert state.trials[first.trial].status is Status.COMPLETED and state.stopped == [first.trial]
    assert state.trials[second.trial].status is Status.QUEUED


def test_with_at_deadline_finish_trials_in_flight_train_on_as_before() -> None:
    scheduler, clock = keras_run(search__at_deadline="finish")
    [item] = scheduler.assign("t1", 1)
    clock.now += 61
    scheduler.stop_at_deadline()
    assert scheduler.take_stops() == [] and scheduler.state.trials[item.trial].stop is None
    scheduler.lose(item.lease, "no heartbeat")
    assert [i.trial for i in scheduler.assign("t1", 1)] == [item.trial], "queued candidates still go out"


def test_a_stopped_trial_never_outranks_one_that_beat_it_where_it_stopped() -> None:
    scheduler, clock = keras_run(search__trials=4, search__minutes=0)
    state = scheduler.state
    stopped, full, slower, behind = scheduler.assign("t1", 4)
    scheduler.emit(ev.TRIAL_STOPPED, {"trial": stopped.trial, "lease": stopped.lease, "epoch": 1, "rule": "test",
                                      "reason": "test", "figures": {}})
    for item, points in ((stopped, curve(0.40, 0.95)), (full, curve(0.50, 0.70, 0.80)), (slower, curve(0.45, 0.9)),
                         (behind, curve(0.30, 0.99))):
        scheduler.progress(item.lease, points)
    # It completes first with the best figure of all; then a trial that beat it at epoch 1 completes lower.
    scheduler.complete(stopped.lease, {"val_accuracy": 0.95, "val_loss": 1.0}, {})
    assert state.best_trial().id == stopped.trial
    scheduler.complete(full.lease, {"val_accuracy": 0.80, "val_loss": 1.0}, {})
    assert [t.id for t in state.leaderboard()][:2] == [full.trial, stopped.trial]
    scheduler.complete(slower.lease, {"val_accuracy": 0.90, "val_loss": 1.0}, {})
    scheduler.complete(behind.lease, {"val_accuracy": 0.99, "val_loss": 1.0}, {})
    ranked = [t.id for t in state.leaderboard()]
    assert ranked.index(slower.trial) < ranked.index(stopped.trial) and ranked.index(full.trial) < ranked.index(
        stopped.trial), "both beat it at epoch 1"
    assert ranked[0] == behind.trial, "one that was behind at epoch 1 keeps its place"
    assert state.top == ranked[: state.ranking.k]
    assert state.trials[stopped.trial].metrics["val_accuracy"] == 0.95, "what it reached stays on the record"


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_the_ranking_rule_holds_in_any_completion_order(data) -> None:
    scheduler, _ = keras_run(search__trials=6, search__minutes=0)
    state = scheduler.state
    items = scheduler.assign("t1", 6)
    values = st.sampled_from([0.1, 0.3, 0.5, 0.7, 0.9])
    for item in items:
        points = data.draw(st.lists(values, min_size=1, max_size=4))
        scheduler.progress(item.lease, curve(*points))
        if data.draw(st.booleans()):
            scheduler.emit(ev.TRIAL_STOPPED, {"trial": item.trial, "lease": item.lease,
                                              "epoch": data.draw(st.integers(1, len(points))), "rule": "test",
                                              "reason": "test", "figures": {}})
    for item in data.draw(st.permutations(items)):
        scheduler.complete(item.lease, {"val_accuracy": data.draw(values), "val_loss": 1.0}, {})
    rank = {t.id: i for i, t in enumerate(state.leaderboard())}
    for s in (state.trials[t] for t in state.stopped):
        for full in (t for t in state.trials.values() if t.stop is None):
            at = {p.epoch: p.metrics["val_accuracy"] for p in full.curve}
            mine = {p.epoch: p.metrics["val_accuracy"] for p in s.curve}[s.stop.epoch]
            if at.get(s.stop.epoch, -1) > mine:
                assert rank[full.id] < rank[s.id]
    assert state.top == [t.id for t in state.leaderboard()[: state.ranking.k]]
    replayed = fold_all(event for event, _ in scheduler.take())
    assert [(t.id, t.score) for t in replayed.leaderboard()] == [(t.id, t.score) for t in state.leaderboard()]


def test_a_keras_trainer_told_to_stop_ends_after_that_epoch_and_reports_a_completed_trial() -> None:
    pytest.importorskip("keras")
    from support import tower_item

    from trainers.evaluator import make_evaluator

    config = tower_config(evaluator__kind="keras", data__samples=400, training__epochs=20, training__patience=0)
    evaluator = make_evaluator(config)
    reported: list[Epoch] = []

    def report(epoch: Epoch) -> bool:
        reported.append(epoch)
        return epoch.epoch < 2  # the engine's stop arrives during epoch 2

    item = tower_item(1, ["dense_32"], hyperparameters={"learning_rate": 0.003, "dropout": 0.0, "batch_size": 64,
                                                         "optimizer": "adam"})
    outcome = evaluator.evaluate(item, fetch=None, report=report)
    assert outcome.metrics["epochs"] == 2 and [e.epoch for e in reported] == [1, 2]
    assert 0 <= outcome.metrics["val_accuracy"] <= 1


def test_a_timed_search_ends_about_one_epoch_after_its_budget(tmp_path: Path, engine_cli, engine_here) -> None:
    pytest.importorskip("keras")
    config = write_toml(tmp_path / "timed.toml", """
[search]
trials = 1000
minutes = 0.3
[space]
kind = "tower"
blocks = ["conv1d_16_k3", "dense_64"]
max_depth = 2
[space.hparams]
batch_size = [16]
optimizer = ["adam"]
[data]
dataset = "mnist1d"
samples = 2000
[training]
epochs = 200
patience = 0
""")
    result = engine_cli("run", "--run", str(tmp_path / "run"), "--config", str(config), "--trainers", "1", "--json",
                        timeout=300)
    assert json.loads(result.stdout)["finished"].startswith("time budget of 0.3 minutes spent")
    from engine.log import EventLog
    from engine.runs import state_at

    state = state_at(tmp_path / "run")
    [stopped] = [state.trials[t] for t in state.stopped]
    assert stopped.stop.rule == "deadline" and stopped.status is Status.COMPLETED
    assert stopped.metrics["epochs"] > stopped.stop.epoch >= 1, "it trained on to the end of its current epoch"
    with EventLog.open_reader(tmp_path / "run") as log:
        events = list(log.read())
    deadline = events[0].at + 18
    told = next(e.at for e in events if e.type == ev.TRIAL_STOPPED)
    ended = next(e.at for e in events if e.type == ev.SEARCH_FINISHED)
    epoch_seconds = stopped.metrics["train_seconds"] / stopped.metrics["epochs"]
    assert deadline <= told < deadline + 1, "the engine stops trials as soon as the budget is spent"
    # What the trainer still trains is what it had not reported (reports go at most once a second) and the
    # epoch it was in; then it evaluates and uploads the trial.
    assert ended - deadline < 2 + 2 * epoch_seconds + 5, f"{ended - deadline:.1f}s after an 18s budget"
    assert "reproduce exactly" in engine_here("replay", "--run", str(tmp_path / "run"), "--verify").stdout


def test_a_search_with_asha_stops_trials_through_their_trainers_and_verifies(tmp_path: Path, engine_cli,
                                                                             engine_here) -> None:
    pytest.importorskip("keras")
    config = stopping_search(tmp_path / "asha.toml", "asha", trials=8, epochs=8, samples=1500)
    engine_cli("run", "--run", str(tmp_path / "run"), "--config", str(config), "--trainers", "1", "--quiet",
               timeout=300)
    from engine.runs import state_at

    state = state_at(tmp_path / "run")
    stopped = [state.trials[t] for t in state.stopped]
    assert stopped and all(t.stop.rule == "asha" for t in stopped)
    assert len(state.completed) == 8 and not state.failed, "a stopped trial is completed, not failed"
    from engine.log import EventLog

    with EventLog.open_reader(tmp_path / "run") as log:
        events = list(log.read())
    for trial in stopped:
        # Reports of a rung's epoch go out at once, so the engine judges a trial right after it gets there; told
        # so, its trainer stops at the end of the epoch it is in (one more may end while the stop is on its way).
        told = next(e for e in events if e.type == ev.TRIAL_STOPPED and e.payload["trial"] == trial.id)
        assert events[told.seq - 2].type == ev.EPOCHS_REPORTED, "decided on the report just before"
        assert trial.stop.epoch <= events[told.seq - 2].payload["epochs"][-1]["epoch"] <= trial.stop.epoch + 1
        assert trial.metrics["epochs"] <= trial.stop.epoch + 2
    full = [t for t in state.trials.values() if t.stop is None]
    assert all(t.metrics["epochs"] == 8 for t in full)
    result = engine_here("replay", "--run", str(tmp_path / "run"), "--verify").stdout
    assert f", {len(stopped)} stop decisions" in result and "reproduce exactly" in result
    assert "stop after epoch" in engine_here("log", "--run", str(tmp_path / "run")).stdout
