"""Trainer daemons against a real engine: evaluate, upload and download blobs, survive outages."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from support import ServedRun, free_port, nb201_config, tower_config, wait_for

from engine import events as ev
from trainers.daemon import TrainerDaemon
from trainers.synthetic import SyntheticEvaluator
from trainers.table import load_table


def test_two_trainers_finish_a_search(serve, trainer_thread) -> None:
    served = serve(nb201_config(search__trials=30))
    threads = [trainer_thread(served.endpoint, name=f"t{i}", prefetch=2)[1] for i in range(2)]
    for thread in threads:
        thread.join(timeout=60)
    assert served.state.finished == "budget of 30 trials spent"
    assert len(served.state.completed) == 30
    trainers = {e.payload["trainer"] for e in served.log.read() if e.type == ev.TRIAL_ASSIGNED}
    assert trainers == {"t0", "t1"}


def test_trainers_upload_weights_and_children_download_their_parents(serve, trainer_thread, tmp_path) -> None:
    served = serve(tower_config(search__trials=25))
    _, thread = trainer_thread(served.endpoint, name="solo", cache_dir=tmp_path / "fresh-cache")
    thread.join(timeout=60)
    state = served.state
    assert state.finished
    children = [state.trials[t] for t in state.completed if state.trials[t].parent is not None]
    assert children
    for child in children:
        parent = state.trials[child.parent]
        assert child.metrics["inherited_bytes"] == len(served.server.store.read(parent.artifacts["weights"]))
        assert child.metrics["inherited_bytes"] == 256 * len(parent.architecture)


def test_a_trainer_waits_for_an_engine_that_is_not_up_yet(tmp_path: Path, trainer_thread) -> None:
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    daemon, thread = trainer_thread(endpoint, name="early")
    threading.Event().wait(1.0)
    served = ServedRun(tmp_path / "late", nb201_config(search__trials=5), bind=endpoint)
    try:
        thread.join(timeout=60)
        assert not thread.is_alive()
        assert served.state.finished and len(served.state.completed) == 5
    finally:
        served.stop()


def test_a_crashing_candidate_fails_its_trial_not_the_trainer(serve, trainer_thread, monkeypatch) -> None:
    real = SyntheticEvaluator.evaluate

    def flaky(self, work, fetch, report=None):
        if work.trial % 2 == 0:  # trial ids are seqs, 3 apart with one trainer: every other one
            raise MemoryError("out of memory building the tower")
        return real(self, work, fetch, report)

    monkeypatch.setattr(SyntheticEvaluator, "evaluate", flaky)
    served = serve(tower_config(search__trials=12))
    _, thread = trainer_thread(served.endpoint, name="t")
    thread.join(timeout=60)
    state = served.state
    assert state.finished and len(state.completed) + len(state.failed) == 12
    assert state.failed and all(state.trials[t].reason == "MemoryError: out of memory building the tower"
                                for t in state.failed)


def test_a_trainer_stops_after_max_trials(serve, trainer_thread) -> None:
    served = serve(nb201_config(search__trials=20))
    daemon, thread = trainer_thread(served.endpoint, name="brief", max_trials=4)
    thread.join(timeout=30)
    assert not thread.is_alive() and daemon.evaluated == 4
    wait_for(lambda: len(served.state.completed) == 4)
    assert not served.state.leases, "a leaving trainer holds nothing"


def test_the_table_reports_a_recorded_seed_chosen_by_the_run_seed() -> None:
    table = load_table("cifar100")
    arch = ["nor_conv_3x3", "nor_conv_3x3", "skip_connect", "skip_connect", "nor_conv_1x1", "avg_pool_3x3"]
    recorded = table.row(arch)["val_acc"]
    seen = {table.observe(arch, seed)["val_acc"] for seed in range(40)}
    assert seen == set(recorded), "every recorded seed gets used, and nothing else"
    assert table.observe(arch, 3) == table.observe(arch, 3)
    with pytest.raises(Exception, match="not a NAS-Bench-201 cell"):
        table.row(["conv"] * 6)


def test_daemon_names_default_to_host_pid_and_a_random_suffix() -> None:
    first, second = TrainerDaemon("tcp://127.0.0.1:1"), TrainerDaemon("tcp://127.0.0.1:1")
    assert f"-{__import__('os').getpid()}-" in first.name
    assert first.name != second.name, "two daemons of one process never share a name"


def test_a_trainer_process_downloads_its_parents_weights(serve, spawn) -> None:
    served = serve(tower_config(search__trials=12))
    trainer = spawn("trainer", "--connect", served.endpoint, "--name", "remote", "--once")
    assert trainer.wait(timeout=60) == 0
    wait_for(lambda: served.state.finished)
    children = [served.state.trials[t] for t in served.state.completed if served.state.trials[t].parent]
    assert children and all(child.metrics["inherited_bytes"] > 0 for child in children)


def test_a_result_finished_while_the_engine_was_down_is_delivered_after_it_restarts(tmp_path, trainer_thread) -> None:
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    run = tmp_path / "run"
    first = ServedRun(run, tower_config(search__trials=4, evaluator__delay=1.0), bind=endpoint)
    daemon, thread = trainer_thread(endpoint, name="steady")
    wait_for(lambda: daemon.busy)  # evaluating its first candidate
    first.stop()  # the engine goes away mid-evaluation; the result finishes while it is down
    wait_for(lambda: not daemon.busy)
    second = ServedRun(run, None, bind=endpoint)
    try:
        thread.join(timeout=60)
        state = second.state
        assert state.finished and len(state.completed) == 4
        kinds = [e.type for e in second.log.read()]
        assert ev.TRIAL_LOST not in kinds, "the held result was delivered, not lost and retrained"
        assert daemon.evaluated == 4, "nothing was evaluated twice"
    finally:
        second.stop()
