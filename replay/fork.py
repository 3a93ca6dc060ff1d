"""Forks: a new run that continues another one's ``log[:seq]`` with configuration overrides.

The fork copies the parent's events 1..seq byte for byte, then appends ``SearchForked`` (parent run,
seq, overrides and the resulting config), so its hash chain goes on from the parent's at the fork point.
Candidates in flight at the fork point go back to the queue. The parent is only read, never written.
Artifacts are hard-linked (they are immutable and content-addressed) so the fork's engine can serve its
inherited weights.

Example::

    >>> fork("runs/nb", at=120, into="runs/nb-evo", overrides=["search.algorithm=evolution"])
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from engine import events as ev
from engine.artifacts import ARTIFACTS_DIR
from engine.config import Config, apply_overrides, overrides_dict, resolve_config
from engine.fold import fold_records
from engine.runs import ReplayError, new_run, reader_at
from engine.spaces import SpaceError, make_space
from engine.state import FAILED, TOWER, State

BATCH = 10_000


class ForkError(ValueError):
    """A fork that cannot be made as asked; nothing was written."""


def fork(run_dir: Path | str, at: int, into: Path | str, overrides: Iterable[str] = ()) -> State:
    """Create run ``into`` from ``run_dir``'s events 1..``at`` plus overrides; returns its state."""
    run_dir, into = Path(run_dir), Path(into)
    changes = overrides_dict(overrides)
    if into.exists() and (not into.is_dir() or any(into.iterdir())):
        raise ForkError(f"{into} already exists and is not an empty folder; fork into a new directory")
    try:
        parent = reader_at(run_dir, at)
    except ReplayError as exc:
        raise ForkError(str(exc)) from None
    with parent:
        prefix = fold_records(parent.records(1, at))
        merged = apply_overrides(prefix.config, changes)
        _check_fixed_keys(prefix, merged)  # before resolving, which would name a mismatch less plainly
        config = resolve_config(merged)
        _check_inheritance(prefix, config)
        if config.search.trials < prefix.proposals:
            raise ForkError(
                f"search.trials={config.search.trials} is below the {prefix.proposals} candidates "
                f"proposed by event {at}"
            )
        with new_run(into) as child:
            batch: list[bytes] = []
            for _, raw in parent.read_raw(1, at):
                batch.append(raw)
                if len(batch) == BATCH:
                    child.copy(batch, expected_head=child.head)
                    batch = []
            child.copy(batch, expected_head=child.head)
            payload = {
                "run_id": uuid.uuid4().hex, "parent_run": prefix.run_id, "parent_path": str(run_dir.resolve()),
                "parent_seq": at, "overrides": changes, "config": config.to_dict(),
            }
            child.append([ev.TYPES.encode(ev.SEARCH_FORKED, payload, at=time.time())], expected_head=at)
            _link_artifacts(run_dir / ARTIFACTS_DIR, into / ARTIFACTS_DIR)
            state = fold_records(child.records())
        child.close()
        return state


def _check_fixed_keys(prefix: State, merged: dict[str, Any]) -> None:
    """A fork may change how the search goes on, not what its inherited trials were: the same space
    kind and data (``merged`` is the parent's config with the fork's overrides, not yet resolved)."""
    before = prefix.config.to_dict()
    for section, key in (("space", "kind"), ("space", "dataset")):
        if merged.get(section, {}).get(key) != before[section].get(key):
            raise ForkError(f"a fork cannot change {section}.{key}: the trials it inherits belong to "
                            f"{before[section].get(key)!r}; start a new run instead")
    if merged.get("data") != before["data"]:
        raise ForkError("a fork cannot change [data]: the trials it inherits were scored on the run's data; "
                        "start a new run instead")


def _check_inheritance(prefix: State, config: Config) -> None:
    """Every inherited candidate must still be a member of the (possibly wider) forked space."""
    space = make_space(config.space)
    for trial in prefix.trials.values():
        if trial.status == FAILED or trial.kind != TOWER:
            continue
        try:
            space.validate(trial.architecture, trial.hyperparameters)
        except SpaceError as exc:
            raise ForkError(f"trial {trial.id} ({trial.key}) would not belong to the forked space: {exc}. "
                            "A fork may widen the space, not shrink it under trials it inherits") from None


def _link_artifacts(source: Path, target: Path) -> None:
    if not source.is_dir():
        return
    for path in source.rglob("*"):
        if path.is_file() and ".partial" not in path.parts:
            destination = target / path.relative_to(source)
            destination.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(path, destination)
            except OSError:
                shutil.copy2(path, destination)

