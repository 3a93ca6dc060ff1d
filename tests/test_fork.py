"""Forks: copy log[:seq], append SearchForked, never touch the parent; in-flight work is queued."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import commands, drive, nb201_config

from engine import events as ev
from engine.fold import fold_all
from engine.log import LOG_DIR, EventLog
from engine.runs import create_run
from engine.state import QUEUED
from replay import ForkError, fork


def digest(run: Path) -> str:
    return hashlib.sha256((run / LOG_DIR / "data.mdb").read_bytes()).hexdigest()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(script=commands, cut=st.floats(0, 1), algorithm=st.sampled_from(["beam", "random", "evolution"]),
       seed=st.integers(0, 99))
def test_a_fork_copies_the_prefix_and_never_changes_the_parent(tmp_path_factory, script, cut, algorithm, seed):
    root = tmp_path_factory.mktemp("fork")
    log, state = create_run(root / "parent", nb201_config(search__trials=10), sync=False)
    with log:
        drive(log, state, script)
    parent_digest = digest(root / "parent")
    with EventLog.open_reader(root / "parent") as parent_log:
        parent_raw = list(parent_log.read_raw())
    at = 1 + int(cut * (len(parent_raw) - 1))

    overrides = [f"search.algorithm={algorithm}", f"search.seed={seed}", "search.trials=14"]
    child = fork(root / "parent", at, root / "child", overrides)

    assert digest(root / "parent") == parent_digest
    with EventLog.open_reader(root / "child") as child_log:
        child_events = list(child_log.read())
        assert list(child_log.read_raw(1, at)) == parent_raw[:at]
    forked = child_events[-1]
    assert len(child_events) == at + 1 and forked.type == ev.SEARCH_FORKED
    assert forked.payload["parent_seq"] == at
    assert forked.payload["overrides"] == {"search.algorithm": algorithm, "search.seed": seed, "search.trials": 14}
    assert child.config.search.algorithm == algorithm

    with EventLog.open_reader(root / "parent") as parent_log:
        before = fold_all(parent_log.read(1, at))
    in_flight = {lease.trial for lease in before.leases.values()}
    assert not child.leases
    for trial in in_flight:
        assert child.trials[trial].status == QUEUED and trial in child.queue
    assert list(child.queue)[: len(in_flight)] == sorted(in_flight), "in-flight candidates go first"
    assert child.completed == before.completed and child.proposals == before.proposals


def test_a_fork_into_a_non_empty_directory_is_refused(tmp_path: Path) -> None:
    log, _ = create_run(tmp_path / "parent", nb201_config(), sync=False)
    log.close()
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(ForkError, match="not an empty folder"):
        fork(tmp_path / "parent", 1, tmp_path / "busy")
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"
