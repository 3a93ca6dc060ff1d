"""Fixtures: in-process engines and trainers on real sockets, CLI runs and child processes.

Everything binds to 127.0.0.1 on ports chosen at run time, and every thread, process and socket a
test starts is stopped when it ends.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support import ROOT, ServedRun

from trainers.daemon import TrainerDaemon


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., ServedRun]]:
    started: list[ServedRun] = []

    def start(config: dict[str, Any] | None, run_dir: Path | None = None, **server_args: Any) -> ServedRun:
        served = ServedRun(run_dir or tmp_path / "run", config, **server_args)
        started.append(served)
        return served

    yield start
    for served in started:
        if served.thread.is_alive() or not served.server.router.closed:
            served.stop()


@pytest.fixture
def trainer_thread(tmp_path: Path) -> Iterator[Callable[..., tuple[TrainerDaemon, threading.Thread]]]:
    started: list[tuple[TrainerDaemon, threading.Thread]] = []

    def start(endpoint: str, **kwargs: Any) -> tuple[TrainerDaemon, threading.Thread]:
        kwargs.setdefault("cache_dir", tmp_path / "cache")
        kwargs.setdefault("once", True)
        daemon = TrainerDaemon(endpoint, **kwargs)
        thread = threading.Thread(target=daemon.run, daemon=True)
        thread.start()
        started.append((daemon, thread))
        return daemon, thread

    yield start
    for daemon, thread in started:
        daemon.stop()
        thread.join(timeout=20)


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    """Environment for child processes: the project importable, a private blob cache."""
    env = dict(os.environ)
    env["XDG_CACHE_HOME"] = str(tmp_path / "xdg-cache")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.fixture
def engine_cli(cli_env: dict[str, str], tmp_path: Path) -> Callable[..., subprocess.CompletedProcess]:
    """Run ``engine ARGS`` to completion in a child process."""

    def run(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run([sys.executable, "-m", "engine", *args], capture_output=True, text=True,
                                env=cli_env, cwd=tmp_path, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"engine {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
        return result

    return run


@pytest.fixture
def engine_here(tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
                ) -> Callable[..., subprocess.CompletedProcess]:
    """Run ``engine ARGS`` in this process, from ``tmp_path``: the same ``main`` as the command, for the commands
    that load TensorFlow (export, predict, evaluate) in tests that loaded it already, where a child process would
    spend seconds starting it again. ``engine_cli`` runs the command itself."""
    from engine.cli import main

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        monkeypatch.chdir(tmp_path)
        capsys.readouterr()
        code = main(list(args))
        out, err = capsys.readouterr()
        if check and code != 0:
            raise AssertionError(f"engine {' '.join(args)} exited {code}:\n{err}")
        return subprocess.CompletedProcess(["engine", *args], code, out, err)

    return run


@pytest.fixture
def spawn(cli_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen]]:
    """Start ``engine ARGS`` in the background; every process still alive at teardown is killed."""
    processes: list[subprocess.Popen] = []

    def start(*args: str) -> subprocess.Popen:
        number = len(processes)
        out_path, log_path = tmp_path / f"process-{number}.out", tmp_path / f"process-{number}.log"
        with out_path.open("w") as out, log_path.open("w") as err:
            process = subprocess.Popen([sys.executable, "-m", "engine", *args], env=cli_env, cwd=tmp_path,
                                       stdout=out, stderr=err)
        process.out_path, process.log_path = out_path, log_path
        processes.append(process)
        return process

    yield start
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        process.wait(timeout=20)


