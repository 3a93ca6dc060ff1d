"""Pause and promote (search.stopping = "asha-promote"): each lease trains up to the next rung and returns a
checkpoint there; the best paused trials of a rung are promoted (an event, re-derived by ``replay --verify``) and
resume from their checkpoints on any trainer; resumed training matches uninterrupted training closely."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from support import assert_nothing_is_lost, cutoff_changed, rewritten_run, stopping_search, tower_config, tower_item

from engine import events as ev
from engine import protocol
from engine.fold import fold_all
from engine.log import EventLog
from engine.runs import create_run
from engine.scheduler import Scheduler
from engine.state import Artifact, Epoch, Resume, State, Status
from engine.stopping import promotion
from replay.verify import Mismatch, verify


def points(*values: float, start: int = 0) -> list[Epoch]:
    return [Epoch(start + i + 1, {"val_accuracy": v, "val_loss": 1.0}) for i, v in enumerate(values)]


def digest(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def scheduler_for(trials: int = 8, eta: int = 2, **overrides: object) -> Scheduler:
    """A live Keras search with rungs at 1, eta, eta**2... below 8 epochs (nothing trains here)."""
    config = tower_config(**{"evaluator__kind": "keras", "search__stopping": "asha-promote", "search__trials": trials,
                             "search__beam__initial": trials, "search__asha__min_epochs": 1, "search__asha__eta": eta,
                             "training__epochs": 8, **overrides})
    scheduler = Scheduler(State(), now=0.0, clock=lambda: 1000.0)
    scheduler.emit(ev.SEARCH_STARTED, {"run_id": "r", "config": config.to_dict(), "lineage": "test", "bundle": None})
    return scheduler


def pause(scheduler: Scheduler, lease: int, *values: float, start: int = 0) -> None:
    """A trainer that reports its epochs and returns a checkpoint at its lease's rung."""
    trial = scheduler.state.leases[lease].trial
    scheduler.progress(lease, points(*values, start=start))
    artifacts = {Artifact.WEIGHTS: digest(f"w{lease}"), Artifact.CHECKPOINT: digest(f"c{lease}")}
    scheduler.complete(lease, {"val_accuracy": values[-1], "val_loss": 1.0, "epochs": start + len(values)}, artifacts)
    assert scheduler.state.trials[trial].stop.rule == "pause"


def test_each_lease_pauses_at_the_next_rung_and_the_best_paused_trials_resume_from_their_checkpoints() -> None:
    scheduler = scheduler_for()
    state = scheduler.state
    items = scheduler.assign("t1", 4)
    assert [(item.until, item.resume) for item in items] == [(1, None)] * 4, "rungs at 1, 2 and 4 of 8 epochs"
    for item, value in zip(items, (0.5, 0.7, 0.6, 0.2), strict=True):
        pause(scheduler, item.lease, value)
    paused = state.trials[items[1].trial]
    assert paused.status is Status.COMPLETED and items[1].trial in state.stopped, "kept like a trial stopped there"
    [resumed] = scheduler.assign("t2", 1)  # the top 4 // 2 of rung 1: the 0.7 first, then the 0.6
    assert resumed.trial == items[1].trial and resumed.until == 2
    assert resumed.resume == Resume(1, digest(f"c{items[1].lease}")) and resumed.resume.checkpoint in resumed.needs
    assert protocol.decode(protocol.encode("work", items=[resumed.to_message()], retry=1.0, done=False),
                           protocol.ENGINE_MESSAGES)[1]["items"] == [resumed]
    assert paused.status is Status.RUNNING and paused.curve == points(0.7), "its curve up to the rung stays"
    assert items[1].trial not in state.completed and items[1].trial not in state.top
    [second] = scheduler.assign("t1", 1)
    assert second.trial == items[2].trial and second.resume.epoch == 1
    [new] = scheduler.assign("t1", 1)
    assert new.resume is None and new.until == 1, "the third of four is not in the top half: something new"
    scheduler.progress(resumed.lease, points(0.7, 0.75))  # a reconnected trainer repeats epoch 1
    scheduler.complete(resumed.lease, {"val_accuracy": 0.75, "val_loss": 0.9, "epochs": 2},
                       {Artifact.WEIGHTS: digest("w2"), Artifact.CHECKPOINT: digest("c2")})
    assert [e.epoch for e in paused.curve] == [1, 2] and paused.stop.epoch == 2 and paused.resume is None
    events = [event for event, _ in scheduler.take()]
    promoted = [e.payload for e in events if e.type == ev.TRIAL_PROMOTED]
    assert [(p["trial"], p["rung"], p["figures"]["promoted"]) for p in promoted] == [
        (items[1].trial, 1, 2), (items[2].trial, 1, 2)]
    replayed = fold_all(events)
    assert [(t.id, t.status, t.score) for t in replayed.trials.values()] == [
        (t.id, t.status, t.score) for t in state.trials.values()]
    assert replayed.promotions == state.promotions == 2


def test_a_trial_without_a_checkpoint_is_complete_not_paused() -> None:
    scheduler = scheduler_for(trials=1, search__asha__min_epochs=2)
    [item] = scheduler.assign("t1", 1)
    assert item.until == 2
    scheduler.progress(item.lease, points(0.4))  # its own early stopping ended it before the rung
    scheduler.complete(item.lease, {"val_accuracy": 0.4, "val_loss": 1.0, "epochs": 1},
                       {Artifact.WEIGHTS: digest("w")})
    trial = scheduler.state.trials[item.trial]
    assert trial.stop is None and trial.status is Status.COMPLETED and scheduler.finish_if_done()


def test_a_checkpoint_from_a_lease_that_was_not_to_pause_there_is_refused() -> None:
    scheduler = scheduler_for()
    [item] = scheduler.assign("t1", 1)
    scheduler.progress(item.lease, points(0.4, 0.5, start=0))  # past its rung at epoch 1
    scheduler.complete(item.lease, {"val_accuracy": 0.5, "val_loss": 1.0, "epochs": 2},
                       {Artifact.CHECKPOINT: digest("c")})
    trial = scheduler.state.trials[item.trial]
    assert trial.status is Status.FAILED and "checkpoint after epoch 2" in trial.reason
    assert trial.blame == "infrastructure"


def test_no_promotion_while_a_rung_has_fewer_than_eta_trials_and_the_search_waits_for_them() -> None:
    scheduler = scheduler_for(trials=3, eta=3)
    first, second, third = scheduler.assign("t1", 3)
    pause(scheduler, first.lease, 0.9)
    pause(scheduler, second.lease, 0.5)
    assert scheduler.assign("t1", 1) == [] and not scheduler.finish_if_done(), "the third is still in flight"
    pause(scheduler, third.lease, 0.6)
    assert not scheduler.finish_if_done(), "3 // 3 = 1 goes on"
    [resumed] = scheduler.assign("t1", 1)
    assert resumed.trial == first.trial and resumed.until == 3
    pause(scheduler, resumed.lease, 0.91, 0.92, start=1)
    assert scheduler.assign("t1", 1) == [] and scheduler.finish_if_done(), "one at rung 3 of 3 needed: done"


@settings(max_examples=80, deadline=None)
@given(values=st.lists(st.sampled_from([0.1, 0.2, 0.3, 0.4]), min_size=1, max_size=9), eta=st.integers(2, 4),
       promoted_before=st.integers(0, 3))
def test_promotion_takes_the_best_paused_trial_in_the_top_n_over_eta_earliest_first_on_ties(
        values: list[float], eta: int, promoted_before: int) -> None:
    scheduler = scheduler_for(trials=len(values), eta=eta)
    items = scheduler.assign("t1", len(values))
    for item, value in zip(items, values, strict=True):
        pause(scheduler, item.lease, value)
    state = scheduler.state
    for _ in range(promoted_before):  # some went on already: they still count at the rung, but are not paused
        [item] = scheduler.assign("t2", 1) or [None]
        if item is None or item.resume is None:
            break
    ranked = sorted(values, reverse=True)
    cutoff = ranked[len(values) // eta - 1] if len(values) // eta else None
    paused = {t.id: t.curve[0].metrics["val_accuracy"] for t in state.trials.values()
              if t.status is Status.COMPLETED and t.stop is not None}
    qualified = {trial: v for trial, v in paused.items() if cutoff is not None and v >= cutoff}
    decision = promotion(state)
    if not qualified:
        assert decision is None
    else:
        best = max(qualified.values())
        assert decision.trial == min(t for t, v in qualified.items() if v == best) and decision.rung == 1
        assert decision.figures == {"rung": 1, "value": best, "cutoff": cutoff, "trials": len(values),
                                    "promoted": len(values) // eta}


def test_the_highest_rung_goes_first() -> None:
    scheduler = scheduler_for(trials=4)
    items = scheduler.assign("t1", 4)
    for item, value in zip(items, (0.9, 0.8, 0.3, 0.2), strict=True):
        pause(scheduler, item.lease, value)
    [up] = scheduler.assign("t1", 1)
    pause(scheduler, up.lease, 0.95, start=1)  # alone at rung 2: 1 // 2 = 0 go on from there yet
    [other] = scheduler.assign("t1", 1)
    assert other.trial == items[1].trial and other.resume.epoch == 1
    pause(scheduler, other.lease, 0.85, start=1)
    [top] = scheduler.assign("t1", 1)
    assert (top.trial, top.resume.epoch, top.until) == (items[0].trial, 2, 4)


# -- a real run: trainers pause, the engine promotes, replay verifies -----------------------------------------


def _promote_run(tmp_path: Path) -> Path:
    """A run with pauses and promotions written to a real log (no training)."""
    run = tmp_path / "run"
    config = tower_config(evaluator__kind="keras", search__stopping="asha-promote", search__trials=6,
                          search__beam__initial=6, search__asha__min_epochs=1, search__asha__eta=2,
                          training__epochs=4)
    log, state = create_run(run, config, sync=False)
    scheduler = Scheduler(state, now=0.0, clock=lambda: 1000.0)
    values = iter([0.5, 0.6, 0.4, 0.7, 0.3, 0.8, 0.65, 0.75, 0.85, 0.9, 0.95, 0.99, 0.5, 0.6])
    while (work := scheduler.assign("t1", 1)):
        [item] = work
        start = item.resume.epoch if item.resume else 0
        end = item.until or 4
        curve = [next(values, 0.5) for _ in range(end - start)]
        scheduler.progress(item.lease, points(*curve, start=start))
        artifacts = {Artifact.WEIGHTS: digest(f"w{item.lease}")}
        if item.until:
            artifacts[Artifact.CHECKPOINT] = digest(f"c{item.lease}")
        scheduler.complete(item.lease, {"val_accuracy": curve[-1], "val_loss": 1.0, "epochs": end}, artifacts)
        log.append([raw for _, raw in scheduler.take()], expected_head=log.head)
    assert scheduler.finish_if_done()
    log.append([raw for _, raw in scheduler.take()], expected_head=log.head)
    log.close()
    return run


def test_promotions_reproduce_under_verify_and_a_changed_or_skipped_one_fails(tmp_path: Path) -> None:
    run = _promote_run(tmp_path)
    result = verify(run)
    assert result.proposals == 6 and result.promotions >= 3
    with EventLog.open_reader(run) as log:
        events = list(log.read())
    first = next(e for e in events if e.type == ev.TRIAL_PROMOTED)

    with pytest.raises(Mismatch, match=f"promotion at event {first.seq} does not reproduce: figures"):
        verify(rewritten_run(run, tmp_path / "changed", cutoff_changed(first.seq)))
    # A log where a new candidate came where a promotion was due: the same run with promotions off at that point.
    proposed = next(e for e in events if e.type == ev.CANDIDATE_PROPOSED and e.seq > first.seq)

    def skipped(raws: list[bytes]) -> list[bytes]:
        return raws[: first.seq - 1] + [raws[proposed.seq - 1]]

    with pytest.raises(Mismatch, match="promotion at event .*a new candidate.*promote trial"):
        verify(rewritten_run(run, tmp_path / "skipped", skipped))


def test_a_keras_tower_paused_and_resumed_trains_like_one_that_was_not(tmp_path: Path) -> None:
    pytest.importorskip("keras")
    from trainers.evaluator import EvaluationError, make_evaluator

    config = tower_config(evaluator__kind="keras", data__samples=600, training__epochs=4, training__patience=3,
                          search__stopping="asha-promote", search__asha__min_epochs=2)
    evaluator = make_evaluator(config)
    hyperparameters = {"learning_rate": 0.003, "dropout": 0.0, "batch_size": 32, "optimizer": "adam"}
    steps = -(-len(evaluator.data.targets["train"]) // 32)

    def item(lease: int, **fields: object):
        return tower_item(lease, ["conv1d_16_k3", "dense_32"], trial=1, hyperparameters=hyperparameters, **fields)

    whole = evaluator.evaluate(item(1, until=3), fetch=None)  # 3 epochs in one go, checkpointed after the third
    first = evaluator.evaluate(item(2, until=2), fetch=None)
    assert first.metrics["epochs"] == 2 and Artifact.CHECKPOINT in first.artifacts
    blobs = {digest("c"): first.artifacts[Artifact.CHECKPOINT]}
    resumed = evaluator.evaluate(item(3, until=3, resume=Resume(2, digest("c"))), fetch=blobs.__getitem__)
    assert resumed.metrics["epochs"] == 3

    def saved(outcome) -> dict[str, np.ndarray]:
        return dict(np.load(io.BytesIO(outcome.artifacts[Artifact.CHECKPOINT])))

    a, b = saved(whole), saved(resumed)
    assert a["optimizer/0"] == b["optimizer/0"] == 3 * steps, "the optimizer's step count carried over"
    assert sorted(a) == sorted(b), "the same weights, optimizer moments and early-stopping state"
    # The batches after the pause come in another order: close, not equal.
    assert abs(whole.metrics["val_accuracy"] - resumed.metrics["val_accuracy"]) < 0.15
    with pytest.raises(EvaluationError, match="checkpoint cannot be restored"):
        evaluator.evaluate(item(4, resume=Resume(2, digest("c"))), fetch=lambda _: b"not a checkpoint")


def test_a_cosine_schedule_lowers_the_rate_each_epoch_and_a_resumed_trial_goes_on_down_it() -> None:
    pytest.importorskip("keras")
    from trainers.evaluator import make_evaluator
    from trainers.keras_trainer import cosine_rate

    config = tower_config(evaluator__kind="keras", data__samples=600, training__epochs=4, training__patience=3,
                          training__schedule="cosine", search__stopping="asha-promote", search__asha__min_epochs=2)
    evaluator = make_evaluator(config)
    hyperparameters = {"learning_rate": 0.003, "dropout": 0.0, "batch_size": 32, "optimizer": "adam"}

    def item(lease: int, **fields: object):
        return tower_item(lease, ["conv1d_16_k3", "dense_32"], trial=1, hyperparameters=hyperparameters, **fields)

    def rate(outcome) -> float:  # the optimizer's learning rate as the checkpoint holds it
        return float(np.load(io.BytesIO(outcome.artifacts[Artifact.CHECKPOINT]))["optimizer/1"])

    first = evaluator.evaluate(item(1, until=2), fetch=None)
    resumed = evaluator.evaluate(item(2, until=3, resume=Resume(2, digest("c"))),
                                 fetch={digest("c"): first.artifacts[Artifact.CHECKPOINT]}.__getitem__)
    whole = evaluator.evaluate(item(3, until=3), fetch=None)
    assert [cosine_rate(0.003, 4, epoch) for epoch in range(4)] == pytest.approx([0.003, 0.00256, 0.0015, 0.00044],
                                                                                 abs=1e-5)
    assert rate(first) == pytest.approx(cosine_rate(0.003, 4, 1))  # the second epoch's rate
    assert rate(resumed) == rate(whole) == pytest.approx(cosine_rate(0.003, 4, 2))


def test_a_search_with_asha_promote_pauses_and_resumes_real_trainings(tmp_path: Path, engine_cli, engine_here) -> None:
    pytest.importorskip("keras")
    config = stopping_search(tmp_path / "promote.toml", "asha-promote", trials=6, epochs=4, samples=1200)
    engine_cli("run", "--run", str(tmp_path / "run"), "--config", str(config), "--trainers", "1", "--quiet",
               timeout=300)
    from engine.runs import state_at

    state = state_at(tmp_path / "run")
    assert state.promotions >= 3 and len(state.completed) == 6 and not state.failed
    finished = [t for t in state.trials.values() if t.metrics["epochs"] == 4]
    assert finished and all(t.stop is None for t in finished), "a trial promoted to the end trained all 4 epochs"
    assert all([e.epoch for e in t.curve] == [1, 2, 3, 4] for t in finished), "its curve spans its leases"
    assert all(t.stop.rule == "pause" for t in state.trials.values() if t.metrics["epochs"] < 4)
    result = engine_here("replay", "--run", str(tmp_path / "run"), "--verify").stdout
    assert f", {state.promotions} promotions" in result and "reproduce exactly" in result
    assert "resumes from its checkpoint after epoch 1" in engine_here("log", "--run", str(tmp_path / "run")).stdout


# -- any interleaving -----------------------------------------------------------------------------------------

steps = st.lists(st.tuples(st.sampled_from(["ready"] * 4 + ["train"] * 8 + ["early", "lose", "fail"]),
                           st.integers(0, 20), st.floats(0.05, 0.95)), min_size=30, max_size=150)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(script=steps, eta=st.integers(2, 3))
def test_any_interleaving_keeps_every_trial_somewhere_and_replays_and_verifies(tmp_path_factory, script,
                                                                             eta) -> None:
    run = tmp_path_factory.mktemp("promote") / "run"
    config = tower_config(evaluator__kind="keras", search__stopping="asha-promote", search__trials=6,
                          search__beam__initial=3, search__asha__min_epochs=1, search__asha__eta=eta,
                          training__epochs=6)
    log, state = create_run(run, config, sync=False)
    scheduler = Scheduler(state, now=0.0, clock=lambda: 1000.0)
    held: dict[int, object] = {}
    with log:
        for name, index, value in script:
            leases = sorted(held)
            lease = leases[index % len(leases)] if leases else None
            if name == "ready":
                held.update((item.lease, item) for item in scheduler.assign(f"t{index % 3}", 1 + index % 2))
            elif name in ("train", "early") and lease is not None:
                item = held.pop(lease)
                start = item.resume.epoch if item.resume else 0
                end = item.until or 6
                if name == "early":  # its own early stopping ends it before the rung: no checkpoint
                    end = start + 1 if start + 1 < end else end
                curve = [Epoch(e, {"val_accuracy": value * e / 6, "val_loss": 1.0}) for e in range(start + 1, end + 1)]
                scheduler.progress(lease, curve)
                artifacts = {Artifact.WEIGHTS: digest(f"w{lease}")}
                if end == item.until and name == "train":
                    artifacts[Artifact.CHECKPOINT] = digest(f"c{lease}")
                scheduler.complete(lease, {"val_accuracy": curve[-1].metrics["val_accuracy"], "val_loss": 1.0,
                                           "epochs": end}, artifacts)
            elif name == "lose" and lease is not None:
                held.pop(lease)
                scheduler.lose(lease, "no heartbeat")
            elif name == "fail" and lease is not None:
                held.pop(lease)
                scheduler.fail(lease, "it broke")
            scheduler.finish_if_done()
            drafts = scheduler.take()
            if drafts:
                log.append([raw for _, raw in drafts], expected_head=log.head)
            assert_nothing_is_lost(state)
            assert set(held) == set(state.leases)
    replayed = fold_all(event for event in EventLog.open_reader(run).read())
    assert [(t.id, t.status, t.score, t.stop, t.resume) for t in replayed.trials.values()] == [
        (t.id, t.status, t.score, t.stop, t.resume) for t in state.trials.values()]
    assert replayed.top == state.top and replayed.promotions == state.promotions
    assert verify(run).promotions == state.promotions
    event(f"promotions: {min(state.promotions, 3)}+, finished: {state.finished is not None}")
