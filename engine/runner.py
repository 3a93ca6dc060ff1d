"""Serving a run from Python: :func:`serve` (``engine serve``) and :func:`run_local` (``engine run``).

``serve`` creates or resumes a run and serves it to trainer daemons until its search is finished. A new
run's data is checked first (``trainers.datasets.check_data``), as its trainers will read it.
``run_local`` serves it the same way with N local trainers: child processes (``engine trainer``)
connected over loopback that exit when the search finishes, or when this process dies. Their output
goes to ``<run>/logs/trainer-<i>.log``.

Example::

    >>> state = run_local("runs/nb", load_config("examples/nb201.toml"), trainers=2)
    >>> state.best_trial().key
    >>> serve("runs/nb2", load_config("examples/nb201.toml"), bind="tcp://127.0.0.1:5555")   # trainers anywhere
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from threadpoolctl import threadpool_limits

from engine.binding import check_bind
from engine.config import Config
from engine.limits import Limits
from engine.progress import Progress
from engine.runs import RunError, is_run, open_run
from engine.server import RETURN_GRACE, EngineServer
from engine.state import State
from trainers.datasets import check_data

log = logging.getLogger("lineage.engine")

LOGS = "logs"


def trainer_command(endpoint: str, *, name: str, prefetch: int = 1, parent_pid: int | None = None,
                    extra: list[str] | None = None) -> list[str]:
    """The command line of one local trainer process."""
    command = [sys.executable, "-m", "engine", "trainer", "--connect", endpoint, "--name", name,
               "--prefetch", str(prefetch), "--once"]
    if parent_pid is not None:
        command += ["--parent-pid", str(parent_pid)]
    return command + (extra or [])


def serve(
    run_dir: Path | str, config: Config | None = None, *, budget: dict[str, Any] | None = None,
    bind: str = "tcp://127.0.0.1:5555", pub: str = "tcp://127.0.0.1:5556", keys: Path | str | None = None,
    progress: Progress | None = None, return_grace: float = RETURN_GRACE, ship: bool = True,
    limits: Limits | None = None, on_start: Callable[[EngineServer], None] | None = None,
    on_turn: Callable[[EngineServer, State], None] | None = None,
) -> State:
    """Serve ``run_dir`` (created from ``config`` when new, else resumed) until its search is finished.

    The bind is checked before anything is written. ``budget`` may set ``search.trials`` and
    ``search.minutes``. ``on_start`` is called once the engine listens, ``on_turn`` after every turn of
    its loop; SIGTERM (in the main thread) stops it after the current turn. A run finished before it
    started is served ``return_grace`` seconds, for trainers that come back. A new run ships its files to its
    trainers unless ``ship`` is False (``engine/bundle.py``). ``limits`` bounds what each trainer may send
    (``engine/limits.py``; the defaults when None).
    """
    check_bind([bind, pub], keys)
    if config is not None and not is_run(run_dir):
        config = check_data(config)
    log_, state = open_run(run_dir, config, budget=budget, ship=ship)
    server = EngineServer(log_, state, bind=bind, pub=pub, keys=keys, return_grace=return_grace, limits=limits)
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, lambda *_: server.stop()) if in_main else None
    try:
        server.start()
        if on_start is not None:
            on_start(server)

        def turn(current: State) -> None:
            if progress is not None:
                progress.update(current)
            if on_turn is not None:
                on_turn(server, current)

        # The surrogate's linear algebra is small (a few hundred trials): BLAS threads only spin against the
        # trainers for the cores (32 trainers on 2 cores: 16 trials/s with them, 44 with one thread).
        with threadpool_limits(limits=1, user_api="blas"):
            state = server.serve(on_turn=turn)
        return state
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)
        server.close()
        log_.close()
        if progress is not None:
            progress.close(state)


def run_local(
    run_dir: Path | str, config: Config | None, *, trainers: int = 2, budget: dict[str, Any] | None = None,
    prefetch: int = 1, bind: str = "tcp://127.0.0.1:0", pub: str = "tcp://127.0.0.1:0",
    keys: Path | str | None = None, progress: Progress | None = None, ship: bool = True,
    limits: Limits | None = None,
) -> State:
    """Serve ``run_dir`` (created from ``config`` when new; ``ship`` and ``limits`` as :func:`serve`) with
    ``trainers`` local trainers; a run that is already finished is returned as it is.

    ``budget`` may set ``search.trials`` and ``search.minutes`` (of a new or a resumed run).
    """
    processes: list[subprocess.Popen] = []
    logs = Path(run_dir) / LOGS

    def start_trainers(server: EngineServer) -> None:
        if server.returning:  # nothing to search: no trainers, no grace for trainers of other engines
            server.stop()
            return
        if bind.rsplit(":", 1)[-1] in ("0", "*"):
            # A resumed run's leases in flight were held by trainers of an earlier engine, on a port this one
            # does not listen on: none can report, so their trials go back to the queue now, not after
            # engine.lease_timeout.
            server.scheduler.lose_all("its trainer served an earlier engine, on a port no longer listened on")
        extra = []
        if keys is not None:
            extra = ["--server-key", str(Path(keys) / "server.key"), "--key", str(Path(keys) / "trainer.key_secret")]
        logs.mkdir(exist_ok=True)
        for i in range(trainers):
            command = trainer_command(server.endpoint, name=f"local-{os.getpid()}-{i}", prefetch=prefetch,
                                      parent_pid=os.getpid(), extra=extra)
            # Trainers log to files: TensorFlow prints start-up notes no setting silences.
            with (logs / f"trainer-{i}.log").open("a") as output:
                processes.append(subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT))
        log.info("serving %s on %s with %d local trainers (their logs: %s)", run_dir, server.endpoint, trainers, logs)

    def watch_trainers(server: EngineServer, current: State) -> None:
        if current.finished is None and processes and all(p.poll() is not None for p in processes):
            server.stop()  # nobody is left to train: stop rather than serve nobody forever

    state = None
    try:
        state = serve(run_dir, config, budget=budget, bind=bind, pub=pub, keys=keys, progress=progress, ship=ship,
                      limits=limits, on_start=start_trainers, on_turn=watch_trainers)
        if state.finished is None and processes and all(p.poll() is not None for p in processes):
            raise RunError(f"all {trainers} local trainers exited (codes {[p.returncode for p in processes]}) "
                           f"before the search finished; the end of {logs / 'trainer-0.log'}:\n"
                           + _tail(logs / "trainer-0.log"))
        return state
    finally:
        _stop_processes(processes, finished=state is not None and state.finished is not None)


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
