"""The fold: ``fold(log[:n])`` equals the live engine's state after event n, for every n.

Random command sequences (trainers asking for work, results, failures, silences, reconnects) drive
the real scheduler over a real LMDB log; the live state is copied after every event it drafts.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import commands, drive, nb201_config, tower_config

from engine import events as ev
from engine.fold import FoldError, fold_all, fold_records
from engine.log import EventLog
from engine.runs import create_run
from engine.state import COMPLETED, State

configs = st.builds(
    lambda kind, algorithm, trials, seed: (nb201_config if kind == "nb201" else tower_config)(
        search__algorithm=algorithm, search__trials=trials, search__seed=seed, engine__max_losses=2,
        search__beam__initial=2, search__evolution__population=3, search__evolution__sample=2),
    kind=st.sampled_from(["nb201", "tower"]),
    algorithm=st.sampled_from(["beam", "random", "evolution"]),
    trials=st.integers(1, 12),
    seed=st.integers(0, 1000),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(config=configs, script=commands)
def test_fold_of_every_log_prefix_equals_the_live_state(tmp_path_factory, config, script) -> None:
    run: Path = tmp_path_factory.mktemp("fold")
    log, state = create_run(run, config, sync=False)
    with log:
        scheduler = drive(log, state, script)
        events = list(log.read())
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert set(scheduler.snapshots) == set(range(1, len(events) + 1))
    replayed = State()
    for event in events:
        replayed = fold_all([event], replayed)
        assert replayed == scheduler.snapshots[event.seq], f"fold(log[:{event.seq}]) differs from the live state"
    assert fold_all(events) == state
    with EventLog.open_reader(run) as reader:
        assert fold_records(reader.records()) == state, "replay from stored bytes agrees too"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(config=configs, script=commands)
def test_the_same_seed_and_arrival_order_give_the_same_events(tmp_path_factory, config, script) -> None:
    runs = []
    for copy_ in ("a", "b"):
        log, state = create_run(tmp_path_factory.mktemp(copy_), config, sync=False)
        with log:
            drive(log, state, script)
            runs.append([(e.type, e.payload) for e in log.read() if e.type != ev.SEARCH_STARTED])
    assert runs[0] == runs[1]


def test_a_finished_search_has_every_candidate_completed_or_failed(tmp_path: Path) -> None:
    log, state = create_run(tmp_path, nb201_config(search__trials=6), sync=False)
    with log:
        steps = [("ready", 0, 2), ("complete", 0, 90.0), ("fail", 0), ("ready", 1, 3), ("expire", 1),
                 ("ready", 0, 3), ("complete", 0, 80.0), ("complete", 0, 81.0), ("complete", 0, 82.0),
                 ("complete", 0, 83.0), ("ready", 2, 3), ("complete", 0, 84.0), ("finish", 0)]
        script = [(name, index, slots[0] if slots else 1, slots[0] if slots else None, True)
                  for name, index, *slots in steps]
        drive(log, state, script)
    assert state.finished == "budget of 6 trials spent"
    assert len(state.completed) + len(state.failed) == 6
    lost = [t for t in state.trials.values() if t.losses]
    assert lost and all(t.status == COMPLETED for t in lost), "a lost candidate is re-run, not failed"


def test_replay_names_a_damaged_or_out_of_order_record(tmp_path: Path) -> None:
    log, state = create_run(tmp_path, nb201_config(), sync=False)
    with log:
        records = list(log.records())
    key = (2).to_bytes(8, "big")
    with pytest.raises(ev.EventError, match="event 2 is not a valid record"):
        fold_records(records + [(key, b"\x93\x01")])
    with pytest.raises(FoldError, match="event 3 does not follow event 1"):
        fold_records(records + [((3).to_bytes(8, "big"), records[0][1])])


def test_a_wall_clock_budget_stops_new_proposals_and_lets_running_ones_finish(tmp_path: Path) -> None:
    from engine.scheduler import Scheduler

    now = [1000.0]
    log, state = create_run(tmp_path, nb201_config(search__trials=50, search__minutes=1), sync=False)
    with log:
        scheduler = Scheduler(state, now=0.0, clock=lambda: now[0], started_at=1000.0)
        [running] = scheduler.assign("t", 1)
        now[0] += 61
        assert scheduler.assign("t", 1) == [], "no new candidate once the minutes are spent"
        assert not scheduler.finish_if_done(), "the candidate in flight still finishes"
        scheduler.complete(running.lease, {"val_acc": 80.0}, {})
        assert scheduler.finish_if_done()
    assert state.finished == "time budget of 1 minutes spent" and state.proposals == 1


@pytest.mark.parametrize(("tie_break", "best"), [("val_loss", 1), ("first", 0)])
def test_trials_with_the_same_score_are_ranked_by_the_tie_break(tmp_path: Path, tie_break: str, best: int) -> None:
    """A small validation split ties often on accuracy; the lower validation loss then ranks first."""
    from engine.scheduler import Scheduler

    config = tower_config(search__trials=3, search__beam__initial=3, search__tie_break=tie_break)
    log, state = create_run(tmp_path, config, sync=False)
    scheduler = Scheduler(state, now=0.0)
    with log:
        items = scheduler.assign("t", 3)
        for item, loss in zip(items, (0.5, 0.3, 0.9), strict=True):
            scheduler.complete(item.lease, {"val_accuracy": 0.9, "val_loss": loss}, {})
        log.append([raw for _, raw in scheduler.take()], expected_head=log.head)
        events = list(log.read())
    ids = [item.trial for item in items]
    assert len(ids) == 3 and state.best_trial().id == ids[best]
    assert [t.id for t in state.leaderboard()] == state.top
    assert fold_all(events) == state
