"""``engine run``: an engine and N local trainer processes, until the budget is spent.

The engine serves in this process; trainers are child processes (``engine trainer``) connected
over loopback that exit when the search finishes, or when this process dies. Their output goes to
``<run>/logs/trainer-<i>.log``.

Example::

    >>> state = run_local("runs/nb", load_config("examples/nb201.toml"), trainers=2)
    >>> state.best_trial().key
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from engine.progress import Progress
from engine.runs import RunError, open_run
from engine.server import EngineServer, check_bind
from engine.state import State

log = logging.getLogger("lineage.engine")

LOGS = "logs"


def trainer_command(endpoint: str, *, name: str, prefetch: int = 1, parent_pid: int | None = None,
                    extra: list[str] | None = None) -> list[str]:
    """The command line of one local trainer process."""
    command = [sys.executable, "-m", "engine", "trainer", "--connect", endpoint, "--name", name,
               "--prefetch", str(prefetch)]
    if parent_pid is not None:
        command += ["--parent-pid", str(parent_pid)]
    return command + (extra or [])


def run_local(
    run_dir: Path | str, config: dict[str, Any] | None, *, trainers: int = 2, budget: dict[str, Any] | None = None,
    prefetch: int = 1, bind: str = "tcp://127.0.0.1:0", pub: str = "tcp://127.0.0.1:0",
    keys: Path | str | None = None, progress: Progress | None = None,
) -> State:
    """Serve ``run_dir`` (created from ``config`` when new) with ``trainers`` local trainers.

    ``budget`` may set ``search.trials`` and ``search.minutes`` (of a new or a resumed run).
    """
    check_bind([bind, pub], keys)
    log_, state = open_run(run_dir, config, budget=budget)
    if state.finished is not None:
        log_.close()
        return state
    server = EngineServer(log_, state, bind=bind, pub=pub, keys=keys)
    processes: list[subprocess.Popen] = []
    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, lambda *_: server.stop())
    try:
        server.start()
        extra = []
        if keys is not None:
            extra = ["--server-key", str(Path(keys) / "server.key"), "--key", str(Path(keys) / "trainer.key_secret")]
        logs = Path(run_dir) / LOGS
        logs.mkdir(exist_ok=True)
        for i in range(trainers):
            command = trainer_command(server.endpoint, name=f"local-{os.getpid()}-{i}", prefetch=prefetch,
                                      parent_pid=os.getpid(), extra=extra)
            # Trainers log to files: TensorFlow prints start-up notes no setting silences.
            with (logs / f"trainer-{i}.log").open("a") as output:
                processes.append(subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT))
        log.info("serving %s on %s with %d local trainers (their logs: %s)", run_dir, server.endpoint, trainers, logs)

        def on_turn(current: State) -> None:
            if progress is not None:
                progress.update(current)
            if current.finished is None and all(p.poll() is not None for p in processes):
                server.stop()  # nobody is left to train: stop rather than serve nobody forever

        state = server.serve(on_turn=on_turn)
        if state.finished is None and all(p.poll() is not None for p in processes):
            raise RunError(f"all {trainers} local trainers exited (codes {[p.returncode for p in processes]}) "
                           f"before the search finished; the end of {logs / 'trainer-0.log'}:\n"
                           + _tail(logs / "trainer-0.log"))
        return state
    finally:
        signal.signal(signal.SIGTERM, previous)
        _stop_processes(processes, finished=state.finished is not None)
        server.close()
        log_.close()
        if progress is not None:
            progress.close(state)


def _tail(path: Path, lines: int = 5) -> str:
    """The last meaningful lines of a trainer log (TensorFlow's start-up notes left out)."""
    kept = [line for line in path.read_text(errors="replace").splitlines()
            if line.strip() and not line.startswith(("I0000", "W0000", "E0000", "WARNING: All log"))]
    return "\n".join(kept[-lines:])


def _stop_processes(processes: list[subprocess.Popen], finished: bool, grace: float = 5.0) -> None:
    """Let trainers exit on their own when they were told the search is done, else stop them."""
    for process in processes:
        try:
            if not finished:
                process.terminate()
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.terminate()
            try:
                process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
