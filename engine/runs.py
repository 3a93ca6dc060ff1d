"""Run directories: create a run, resume one, read its state at any event, and say where its engine listens.

A run directory holds ``events.lmdb`` (the log: the only source of truth), ``artifacts/`` (the
blob store) and, while an engine serves it, ``engine.json`` (its endpoints and pid; derived, thrown
away when the engine stops).

Example::

    >>> log, state = create_run("runs/nb", load_config("examples/nb201.toml"))
    >>> log, state = resume_run("runs/nb", budget={"search.trials": 500})
    >>> state_at("runs/nb", at=120).top       # the beam as it was right after event 120
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from engine import __version__
from engine import events as ev
from engine.artifacts import ARTIFACTS_DIR, ArtifactStore
from engine.bundle import pack
from engine.config import Config, apply_overrides, resolve_config
from engine.fold import fold_records
from engine.log import LOG_DIR, EventLog, LogError
from engine.options import ConfigError
from engine.spaces import make_space
from engine.state import State

ENDPOINTS = "engine.json"


class RunError(RuntimeError):
    """A run directory that cannot be used as asked."""


class ReplayError(ValueError):
    """A replay that cannot be done as asked (no run there, a seq outside the log)."""


def reader_at(run_dir: Path | str, at: int | None = None) -> EventLog:
    """A reader of a run's log that holds event ``at`` (any log when ``at`` is None). Readers never block
    the engine, so this works on a run that is being served."""
    try:
        log = EventLog.open_reader(run_dir)
    except LogError as exc:
        raise ReplayError(str(exc)) from None
    if at is not None and not 1 <= at <= log.head:
        log.close()
        raise ReplayError(f"--at {at} is outside the log of {run_dir} (events 1..{log.head})")
    return log


def state_at(run_dir: Path | str, at: int | None = None) -> State:
    """The state right after event ``at`` (after the last event when ``at`` is None): ``fold(log[:at])``."""
    with reader_at(run_dir, at) as log:
        return fold_records(log.records(1, at))


def is_run(run_dir: Path | str) -> bool:
    return (Path(run_dir) / LOG_DIR / "data.mdb").exists()


@contextmanager
def new_run(run_dir: Path | str, *, sync: bool = True) -> Iterator[EventLog]:
    """A new run directory with an empty log, for the block to write its first events into. If the block
    fails, everything made here is removed (what the folder held before stays); if it succeeds, the log
    stays open for the caller."""
    run_dir = Path(run_dir)
    before = set(os.listdir(run_dir)) if run_dir.is_dir() else None
    log = None
    try:
        log = EventLog.create(run_dir, sync=sync)
        yield log
    except BaseException:
        if log is not None:
            log.close()
        if before is None:
            shutil.rmtree(run_dir, ignore_errors=True)
        else:
            for name in set(os.listdir(run_dir)) - before:
                path = run_dir / name
                shutil.rmtree(path) if path.is_dir() else path.unlink()
        raise


def create_run(run_dir: Path | str, config: Config, *, sync: bool = True, ship: bool = True) -> tuple[EventLog, State]:
    """A new run whose first event holds the whole resolved config and, with ``ship``, the digest of the bundle
    of files its trainers read (``engine/bundle.py``), stored in its artifacts. Nothing is left on failure.

    The config's task must be known: where a data file's labels decide it, check the data first
    (``trainers.datasets.check_data``, which ``serve`` and ``run_local`` call for a new run).
    """
    if is_run(run_dir):
        raise RunError(f"{run_dir} already holds a run; resume it without --config, or fork it")
    if not config.task_known:
        raise ConfigError(f"data.task of data.path {config.data.path} is not known yet: the labels decide it; "
                          "check the data first (trainers.datasets.check_data) or set data.task")
    make_space(config.space)  # its blocks are looked up: a space that cannot be made is refused before a write
    with new_run(run_dir, sync=sync) as log:
        bundle = pack(config) if ship else None
        digest = ArtifactStore(Path(run_dir) / ARTIFACTS_DIR).put(bundle) if bundle is not None else None
        payload = {"run_id": uuid.uuid4().hex, "config": config.to_dict(), "lineage": __version__, "bundle": digest}
        log.append([ev.TYPES.encode(ev.SEARCH_STARTED, payload, at=time.time())], expected_head=0)
    return log, fold_records(log.records())


BUDGET_KEYS = ("search.trials", "search.minutes")


def resume_run(run_dir: Path | str, *, budget: dict[str, Any] | None = None, config: Config | None = None,
               sync: bool = True) -> tuple[EventLog, State]:
    """Open a run to continue it, optionally with a new budget (``{"search.trials": 500}``).

    A ``config`` given must be the run's own (a different search is a fork); it is checked before
    anything is written. Appends SearchResumed unless the run is finished and stays so.
    """
    run_dir = Path(run_dir)
    if not is_run(run_dir):
        raise RunError(f"{run_dir} holds no run: start one with --config")
    log = EventLog.open_writer(run_dir, sync=sync)
    try:
        state = fold_records(log.records())
        if config is not None:
            # The budget may differ (it is given apart), and a task the data decides is the run's own.
            own = {key: _budget_value(state.config, key) for key in BUDGET_KEYS}
            if not config.task_known:
                own["data.task"] = state.config.data.task
            if resolve_config(apply_overrides(config, own)) != state.config:
                raise RunError(f"{run_dir} already holds a run with a different config; resume it without "
                               "--config, or use `engine fork --set ...` to change the search")
        overrides = _budget_changes(state, budget or {})
        if overrides or state.finished is None:
            config = resolve_config(apply_overrides(state.config, overrides))
            payload = {"overrides": overrides, "config": config.to_dict()}
            log.append([ev.TYPES.encode(ev.SEARCH_RESUMED, payload, at=time.time())], expected_head=log.head)
            state = fold_records(log.records(state.seq + 1), state)
    except BaseException:
        log.close()
        raise
    return log, state


def _budget_changes(state: State, budget: dict[str, Any]) -> dict[str, Any]:
    changes = {}
    for key, value in budget.items():
        if key not in BUDGET_KEYS:
            raise ConfigError(f"a resumed run may change {list(BUDGET_KEYS)}, not {key}; fork it to change more")
        if value is not None and value != _budget_value(state.config, key):
            changes[key] = value
    trials = changes.get("search.trials")
    if trials is not None and trials < state.proposals:
        raise ConfigError(f"--trials {trials} is below the {state.proposals} candidates already proposed")
    return changes


def _budget_value(config: Config, key: str) -> float:
    return config.search.trials if key == "search.trials" else config.search.minutes


def open_run(run_dir: Path | str, config: Config | None, *, budget: dict[str, Any] | None = None,
             sync: bool = True, ship: bool = True) -> tuple[EventLog, State]:
    """Create the run when it is new (a config is required; ``ship`` as :func:`create_run`), otherwise resume it.

    ``budget`` overrides ``search.trials`` / ``search.minutes`` (``--trials`` / ``--minutes``).
    Resuming with a config checks that it is the run's own: a different search is a fork.
    """
    budget = {key: value for key, value in (budget or {}).items() if value is not None}
    if not is_run(run_dir):
        if config is None:
            raise RunError(f"{run_dir} holds no run yet: pass --config to start one (or run `engine run` with no "
                           "arguments for the built-in MNIST-1D search)")
        if budget:
            config = resolve_config(apply_overrides(config, budget))
        return create_run(run_dir, config, sync=sync, ship=ship)
    return resume_run(run_dir, budget=budget, config=config, sync=sync)


def started_at(log: EventLog, state: State) -> float:
    """When the run (or the fork it is) began, for its wall-clock budget (``search.minutes``)."""
    seq = state.forked_from["seq"] + 1 if state.forked_from else 1
    return next(log.read(seq, seq)).at


def write_endpoints(run_dir: Path | str, endpoints: dict[str, Any]) -> None:
    """Record where this run's engine listens (atomically), for trainers and observers."""
    path = Path(run_dir) / ENDPOINTS
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps({**endpoints, "pid": os.getpid()}, indent=2))
    os.replace(temporary, path)


def read_endpoints(run_dir: Path | str) -> dict[str, Any] | None:
    """Where this run's engine listens, if one is serving it now."""
    path = Path(run_dir) / ENDPOINTS
    try:
        endpoints = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None
    try:
        os.kill(endpoints["pid"], 0)
    except (ProcessLookupError, KeyError, TypeError):
        return None
    except PermissionError:
        pass
    return endpoints


def remove_endpoints(run_dir: Path | str) -> None:
    (Path(run_dir) / ENDPOINTS).unlink(missing_ok=True)
