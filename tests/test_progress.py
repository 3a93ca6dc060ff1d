"""Per-epoch reports: a trainer's epochs become EpochsReported events, the trial's learning curve in the log."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import Peer, nb201_config, wait_for

from engine import events as ev
from engine import protocol
from engine.fold import FoldError, fold_records
from engine.log import EventLog
from engine.runs import create_run, state_at
from engine.scheduler import Scheduler
from engine.state import Epoch, State


def epochs(*values: float, start: int = 1) -> list[Epoch]:
    return [Epoch(start + i, {"val_acc": value}) for i, value in enumerate(values)]


@pytest.fixture
def run(tmp_path: Path) -> tuple[EventLog, State, Scheduler]:
    log, state = create_run(tmp_path / "run", nb201_config(), sync=False)
    yield log, state, Scheduler(state, now=0.0, clock=lambda: 1000.0)
    log.close()


def commit(log: EventLog, scheduler: Scheduler) -> None:
    drafts = scheduler.take()
    if drafts:
        log.append([raw for _, raw in drafts], expected_head=drafts[0][0].seq - 1)


def test_reports_become_the_trials_curve_and_repeats_are_recorded_once(run, tmp_path: Path) -> None:
    log, state, scheduler = run
    [item] = scheduler.assign("t1", 1)
    assert scheduler.progress(item.lease, epochs(40.0, 55.5)) is None
    assert scheduler.progress(item.lease, epochs(40.0, 55.5, 61.0)) is None, "sent again after a reconnect"
    commit(log, scheduler)
    trial = state.trials[item.trial]
    assert trial.curve == epochs(40.0, 55.5, 61.0)
    reported = [e for e in log.read() if e.type == ev.EPOCHS_REPORTED]
    assert [[d["epoch"] for d in e.payload["epochs"]] for e in reported] == [[1, 2], [3]]
    scheduler.complete(item.lease, {"val_acc": 61.0}, {})
    assert scheduler.progress(item.lease, epochs(1.0, start=4)) is None, "a late report is no error"
    drafts = scheduler.take()
    assert [event.type for event, _ in drafts] == [ev.TRIAL_COMPLETED], "and records nothing"
    log.append([raw for _, raw in drafts], expected_head=log.head)
    assert state_at(tmp_path / "run").trials[item.trial].curve == trial.curve, "replay rebuilds the curve"


@pytest.mark.parametrize(("report", "problem"), [
    ([Epoch(1, {"val_accuracy": 0.5})], "epoch 1: val_accuracy is not a metric this run's 'table' trainers report"),
    ([Epoch(1, {"val_acc": 140.0})], "epoch 1: val_acc is outside [0, 100]"),
    ([Epoch(2, {"val_acc": 1.0}), Epoch(1, {"val_acc": 2.0})], "epoch 1 follows epoch 2"),
    ([Epoch(1, {"val_acc": float("nan")})], "not finite"),
])
def test_a_bad_report_is_refused_whole(run, report: list[Epoch], problem: str) -> None:
    _, state, scheduler = run
    [item] = scheduler.assign("t1", 1)
    assert problem in scheduler.progress(item.lease, report)
    assert state.trials[item.trial].curve == [] and all(e.type != ev.EPOCHS_REPORTED for e, _ in scheduler.take())


def test_a_lost_lease_leaves_the_next_one_a_fresh_curve(run) -> None:
    log, state, scheduler = run
    [first] = scheduler.assign("t1", 1)
    scheduler.progress(first.lease, epochs(30.0, 35.0))
    scheduler.lose(first.lease, "no heartbeat")
    [again] = scheduler.assign("t2", 1)
    assert again.trial == first.trial and state.trials[again.trial].curve == []
    scheduler.progress(again.lease, epochs(20.0))
    commit(log, scheduler)
    assert state.trials[again.trial].curve == epochs(20.0)
    assert fold_records(log.records()).trials[again.trial].curve == epochs(20.0)


def test_a_tampered_curve_does_not_replay(run) -> None:
    log, state, scheduler = run
    [item] = scheduler.assign("t1", 1)
    scheduler.progress(item.lease, epochs(30.0, 35.0))
    commit(log, scheduler)
    backwards = ev.TYPES.encode(ev.EPOCHS_REPORTED, {"trial": item.trial, "lease": item.lease,
                                                      "epochs": [{"epoch": 1, "metrics": {"val_acc": 99.0}}]}, at=0)
    elsewhere = ev.TYPES.encode(ev.EPOCHS_REPORTED, {"trial": item.trial, "lease": item.lease + 99,
                                                      "epochs": [{"epoch": 3, "metrics": {"val_acc": 99.0}}]}, at=0)
    for raw, message in ((backwards, "epoch 1 of trial .* comes after epoch 2"), (elsewhere, "KeyError")):
        records = [*log.records(), ((log.head + 1).to_bytes(8, "big"), raw)]
        with pytest.raises(FoldError, match=message):
            fold_records(records)


def test_reports_over_real_sockets_renew_the_lease_and_only_its_holder_may_send_them(serve, tmp_path: Path) -> None:
    served = serve(nb201_config())
    owner, other = Peer(served.endpoint), Peer(served.endpoint)
    try:
        owner.hello("owner")
        other.hello("other")
        owner.send("ready", slots=1)
        [item] = owner.expect("work")["items"]
        other.send("progress", lease=item.lease, epochs=[{"epoch": 1, "metrics": {"val_acc": 10.0}}])
        owner.send("progress", lease=item.lease, epochs=[e.as_dict() for e in epochs(40.0, 50.0)])
        wait_for(lambda: served.state.trials[item.trial].curve == epochs(40.0, 50.0))
        assert served.server.watch.counts["sessions"] == 1, "another session's report is refused and counted"
        owner.send("progress", lease=item.lease, epochs=[{"epoch": 3, "metrics": {"val_acc": 900.0}}])
        wait_for(lambda: served.server.watch.counts["reports"] == 1)
        assert len(served.state.trials[item.trial].curve) == 2
    finally:
        owner.close()
        other.close()
        served.stop()


def test_progress_frames_are_checked_field_by_field() -> None:
    frame = protocol.encode("progress", lease=3, epochs=[{"epoch": 1, "metrics": {"val_acc": 1.0}}])
    assert protocol.decode(frame, protocol.TRAINER_MESSAGES) == ("progress", {"lease": 3, "epochs": epochs(1.0)})
    for bad, message in (([{"epoch": 0, "metrics": {}}], r"progress.epochs\[0\].epoch must be an integer"),
                         ([{"epoch": 1}], r"progress.epochs\[0\].metrics is missing"),
                         ([{"epoch": 1, "metrics": {"x": "y"}}], r"progress.epochs\[0\].metrics.x must be a number"),
                         ([{"epoch": 1, "metrics": {}}] * 1001, "at most 1000 epochs")):
        with pytest.raises(protocol.ProtocolError, match=message):
            protocol.decode(protocol.encode("progress", lease=3, epochs=bad), protocol.TRAINER_MESSAGES)
