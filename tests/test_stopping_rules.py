"""Stopping rules (search.stopping): ASHA's rungs and promotions, the median rule, their decisions as events
before anyone is told, and ``replay --verify`` re-deriving them (and failing where the log was changed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import cutoff_changed, rewritten_run, tower_config

from engine import events as ev
from engine.log import EventLog
from engine.options import ConfigError
from engine.runs import create_run
from engine.scheduler import Scheduler
from engine.state import Epoch, State
from engine.stopping import rungs
from replay.verify import Mismatch, verify


def points(*values: float) -> list[Epoch]:
    return [Epoch(i + 1, {"val_accuracy": v}) for i, v in enumerate(values)]


def scheduler_for(rule: str, trials: int = 12, **overrides: object) -> Scheduler:
    config = tower_config(**{"evaluator__kind": "keras", "search__stopping": rule, "search__trials": trials,
                             "search__beam__initial": trials, "training__epochs": 20, **overrides})
    state = State()
    scheduler = Scheduler(state, now=0.0, clock=lambda: 1000.0)
    scheduler.emit(ev.SEARCH_STARTED, {"run_id": "r", "config": config.to_dict(), "lineage": "test", "bundle": None})
    return scheduler


@given(min_epochs=st.integers(1, 10), eta=st.integers(2, 5), epochs=st.integers(1, 400))
def test_rungs_grow_by_eta_from_min_epochs_and_stay_below_the_last_epoch(min_epochs: int, eta: int,
                                                                         epochs: int) -> None:
    found = list(rungs(min_epochs, eta, epochs))
    assert found == [min_epochs * eta**k for k in range(len(found))]
    assert all(r < epochs for r in found) and (not found or found[-1] * eta >= epochs)
    assert found or min_epochs >= epochs


@settings(max_examples=60, deadline=None)
@given(before=st.lists(st.sampled_from([0.1, 0.2, 0.3, 0.4, 0.5]), min_size=0, max_size=8),
       mine=st.sampled_from([0.1, 0.2, 0.3, 0.4, 0.5]), eta=st.integers(2, 4))
def test_asha_lets_a_trial_past_a_rung_only_in_the_top_1_over_eta_of_those_there(before: list[float], mine: float,
                                                                                 eta: int) -> None:
    scheduler = scheduler_for("asha", search__asha__min_epochs=2, search__asha__eta=eta)
    items = scheduler.assign("t1", len(before) + 1)
    for item, value in zip(items, before, strict=False):  # they reached the rung first (stopped there or not)
        scheduler.progress(item.lease, points(value, value))
    scheduler.take_stops()
    last = items[-1]
    scheduler.progress(last.lease, points(0.0, mine))
    values = sorted([*before, mine], reverse=True)
    promoted = len(values) // eta
    goes_on = mine >= values[promoted - 1] if promoted else mine >= values[0]
    stop = scheduler.state.trials[last.trial].stop
    assert (stop is None) == goes_on
    assert scheduler.take_stops() == ([] if goes_on else [last.lease])
    if stop is not None:
        assert (stop.epoch, stop.rule, stop.figures["rung"], stop.figures["trials"]) == (2, "asha", 2, len(values))


def test_asha_judges_each_rung_once_even_when_a_report_carries_several_epochs() -> None:
    scheduler = scheduler_for("asha", search__asha__min_epochs=1, search__asha__eta=2)
    leader, other = scheduler.assign("t1", 2)
    scheduler.progress(leader.lease, points(0.5, 0.6, 0.7, 0.8))  # rungs 1, 2, 4: alone, it is the best at each
    scheduler.progress(other.lease, points(0.6, 0.7, 0.6))  # better at 1 and 2, then behind at ... no rung 3
    assert scheduler.state.trials[other.trial].stop is None
    scheduler.progress(other.lease, points(0.6, 0.7, 0.6, 0.75))  # rung 4: 2 there, the best 1 goes on
    stop = scheduler.state.trials[other.trial].stop
    assert stop is not None and stop.figures == {"rung": 4, "value": 0.75, "cutoff": 0.8, "trials": 2, "promoted": 1}


def test_children_that_inherit_weights_compete_only_with_each_other() -> None:
    scheduler = scheduler_for("asha", search__asha__min_epochs=1, search__asha__eta=2)
    scratch, child = scheduler.assign("t1", 2)
    scheduler.state.trials[child.trial].inherit = {"mode": "parent", "sources": [scratch.trial], "weights": [1.0]}
    scheduler.progress(scratch.lease, points(0.9))
    scheduler.progress(child.lease, points(0.2))
    assert scheduler.state.trials[child.trial].stop is None, "a scratch trial's head start is not its rival's"


@pytest.mark.parametrize("children", ["parent", "population"])
def test_a_child_within_the_margin_of_its_parent_at_a_rung_goes_on_below_the_cutoff(children: str) -> None:
    scheduler = scheduler_for("asha", search__asha__min_epochs=2, search__asha__eta=2,
                              search__asha__children=children, search__asha__parent_margin=0.2)
    parent, fast, faster, adoptive, near, far, adopted = scheduler.assign("t1", 7)
    trials = scheduler.state.trials
    trials[adoptive.trial].inherit = {"mode": "parent", "sources": [fast.trial], "weights": [1.0]}
    for item, value in ((parent, 0.5), (fast, 0.8), (faster, 0.9), (adoptive, 0.5)):
        scheduler.progress(item.lease, points(value, value))
    for child, its_parent in ((near, parent), (far, parent), (adopted, adoptive)):
        trials[child.trial].parent = its_parent.trial
    scheduler.progress(near.lease, points(0.3, 0.41))  # within 20% of its parent's 0.5, far below the cutoff 0.8
    scheduler.progress(far.lease, points(0.3, 0.39))
    scheduler.progress(adopted.lease, points(0.3, 0.45))  # its parent started from weights: a head start, no measure
    assert (trials[near.trial].stop is None) == (children == "parent")
    far_stop = trials[far.trial].stop
    assert far_stop is not None and far_stop.figures["cutoff"] == 0.8
    assert far_stop.figures.get("parent") == (0.5 if children == "parent" else None)
    assert trials[adopted.trial].stop is not None


@pytest.mark.parametrize("children", ["beam", "population"])
def test_a_child_of_the_beam_goes_past_the_first_rung_and_is_judged_at_the_next(children: str) -> None:
    scheduler = scheduler_for("asha", search__asha__min_epochs=2, search__asha__eta=2,
                              search__asha__children=children, search__beam__k=1)
    best, other, child, cousin = scheduler.assign("t1", 4)
    trials = scheduler.state.trials
    for item, value in ((best, 0.9), (other, 0.8)):
        scheduler.progress(item.lease, points(value, value, value, value))
        scheduler.complete(item.lease, {"val_accuracy": value, "val_loss": 1.0, "epochs": 4}, {})
    assert scheduler.state.top == [best.trial]  # a beam of one: the other completed tower is not in it
    trials[child.trial].parent, trials[cousin.trial].parent = best.trial, other.trial
    scheduler.progress(child.lease, points(0.2, 0.3))  # far below the cutoff (0.9) at the first rung
    scheduler.progress(cousin.lease, points(0.2, 0.3))
    assert (trials[child.trial].stop is None) == (children == "beam")
    assert trials[cousin.trial].stop is not None and trials[cousin.trial].stop.epoch == 2
    if children == "beam":
        scheduler.progress(child.lease, points(0.2, 0.3, 0.4, 0.5))  # the next rung judges it like any trial
        stop = trials[child.trial].stop
        assert stop is not None and stop.figures == {"rung": 4, "value": 0.5, "cutoff": 0.9, "trials": 3,
                                                     "promoted": 1}


def test_the_median_rule_stops_a_trial_whose_best_so_far_is_below_the_others_median() -> None:
    scheduler = scheduler_for("median", search__median__warmup=1, search__median__min_trials=3)
    *others, slow, late = scheduler.assign("t1", 5)
    for item, value in zip(others, (0.5, 0.6, 0.7), strict=True):
        scheduler.progress(item.lease, points(value, value))
    scheduler.progress(slow.lease, points(0.9, 0.4))  # its best so far (0.9) is above the median (0.6)
    scheduler.progress(late.lease, points(0.3, 0.5))  # 0.5 is below the median of 0.5, 0.6, 0.7 and 0.4
    assert scheduler.state.trials[slow.trial].stop is None
    stop = scheduler.state.trials[late.trial].stop
    assert stop is not None and (stop.rule, stop.epoch) == ("median", 2)
    assert stop.figures == {"epoch": 2, "best": 0.5, "median": 0.55, "trials": 4}


def test_stopping_needs_trainers_that_report_epochs() -> None:
    with pytest.raises(ConfigError, match="search.stopping = 'asha' needs trained networks"):
        tower_config(search__stopping="asha")


def _asha_run(tmp_path: Path) -> Path:
    """A run whose trials report curves and are stopped by ASHA, written to a real log."""
    run = tmp_path / "run"
    config = tower_config(evaluator__kind="keras", search__stopping="asha", search__trials=8,
                          search__asha__min_epochs=1, search__asha__eta=2, training__epochs=8)
    log, state = create_run(run, config, sync=False)
    scheduler = Scheduler(state, now=0.0, clock=lambda: 1000.0)
    curves = [(0.5, 0.6, 0.7), (0.4, 0.5, 0.6), (0.6, 0.5, 0.8), (0.3, 0.3, 0.3), (0.7, 0.8, 0.9), (0.2, 0.1, 0.4)]
    for values in curves:
        [item] = scheduler.assign("t1", 1)
        scheduler.progress(item.lease, points(values[0]))
        scheduler.progress(item.lease, points(*values))
        scheduler.complete(item.lease, {"val_accuracy": values[-1], "val_loss": 1.0, "epochs": 3}, {})
        drafts = scheduler.take()
        log.append([raw for _, raw in drafts], expected_head=log.head)
    log.close()
    return run


def test_stop_decisions_reproduce_under_verify_and_a_changed_one_fails(tmp_path: Path) -> None:
    run = _asha_run(tmp_path)
    result = verify(run)
    assert result.stops >= 2 and result.proposals == 6
    with EventLog.open_reader(run) as log:
        events = list(log.read())
    first = next(e for e in events if e.type == ev.TRIAL_STOPPED)

    def dropped(raws: list[bytes]) -> list[bytes]:  # a stop nobody decided: the report before it, twice over
        return [*raws[: first.seq - 1], *raws[first.seq:]]

    with pytest.raises(Mismatch, match=f"stop at event {first.seq} does not reproduce: figures"):
        verify(rewritten_run(run, tmp_path / "changed", cutoff_changed(first.seq)))
    with pytest.raises(Mismatch, match=f"stop at event {first.seq - 1} does not reproduce"):
        verify(rewritten_run(run, tmp_path / "dropped", dropped))
