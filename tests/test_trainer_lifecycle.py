"""A trainer's life as a daemon: it outlives the run it served and joins the engine's next one; --once leaves when
the run is finished; --idle-exit leaves when no engine answers; each change of state is one log line."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from support import ServedRun, free_port, nb201_config, wait_for

from engine.binding import ServerError


def _serve_when_free(run_dir: Path, endpoint: str) -> ServedRun | None:
    """The next run at the same address, or None while the first run's listener is still closing: libzmq
    closes a socket on its I/O thread, after close() returns, so the port can stay taken for a moment."""
    try:
        return ServedRun(run_dir, nb201_config(search__trials=4, search__seed=1), bind=endpoint)
    except ServerError as exc:
        if "Address already in use" not in str(exc):
            raise
        return None


def test_a_daemon_waits_for_the_next_run_at_its_address(tmp_path: Path, trainer_thread, caplog) -> None:
    caplog.set_level(logging.INFO, logger="lineage.trainer")
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    first = ServedRun(tmp_path / "first", nb201_config(search__trials=3), bind=endpoint)
    daemon, thread = trainer_thread(endpoint, name="daemon", once=False)
    try:
        wait_for(lambda: first.state.finished, timeout=30)
        wait_for(lambda: "is finished; waiting" in caplog.text, timeout=30)
        assert thread.is_alive(), "a daemon outlives the run it served"
    finally:
        first.stop()
    second = wait_for(lambda: _serve_when_free(tmp_path / "second", endpoint), timeout=10)
    try:
        wait_for(lambda: second.state.finished, timeout=60)
        assert sorted(len(run.state.completed) for run in (first, second)) == [3, 4]
        assert daemon.evaluated == 7
        wait_for(lambda: caplog.text.count("is finished; waiting") == 2, timeout=30)
        assert thread.is_alive()
    finally:
        daemon.stop()
        thread.join(timeout=20)
        second.stop()
    assert not thread.is_alive()
    lines = [record.getMessage() for record in caplog.records if record.name == "lineage.trainer"]
    connected = [line for line in lines if "connected to" in line]
    assert [first.state.run_id in connected[0], second.state.run_id in connected[-1]] == [True, True]
    # Asked again every few seconds, a finished engine is not news: one line per change of state.
    assert len(connected) == 2, lines
    assert sum("is finished; waiting" in line for line in lines) == 2, lines
    assert not any("dropping work" in line for line in lines), "it held nothing of the finished run"


def test_a_once_trainer_leaves_when_its_run_is_finished(tmp_path: Path, trainer_thread) -> None:
    served = ServedRun(tmp_path / "run", nb201_config(search__trials=3), bind="tcp://127.0.0.1:0")
    try:
        daemon, thread = trainer_thread(served.endpoint, name="once", once=True)
        thread.join(timeout=30)
        assert not thread.is_alive() and daemon.evaluated == 3
    finally:
        served.stop()


def test_idle_exit_leaves_when_no_engine_answers(spawn) -> None:
    nobody = f"tcp://127.0.0.1:{free_port()}"
    trainer = spawn("trainer", "--connect", nobody, "--name", "idle", "--idle-exit", "1")
    assert trainer.wait(timeout=40) == 0
    said = trainer.log_path.read_text()
    assert "leaving: no engine has answered for" in said and "--idle-exit 1" in said, said


@pytest.mark.parametrize("value", ["0", "-3", "soon", "inf"])
def test_idle_exit_must_be_a_number_of_seconds_above_zero(value: str, engine_cli) -> None:
    result = engine_cli("trainer", "--idle-exit", value, check=False)
    assert result.returncode == 2 and "--idle-exit" in result.stderr, result.stderr
