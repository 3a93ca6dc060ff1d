"""Every ``--json`` output is strict JSON, even for a log an older engine wrote with NaN or infinite metrics."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import msgpack
from support import nb201_config

from engine import events as ev
from engine.runs import create_run
from engine.searchers import Proposer
from replay.report import strict_json


def _reject(token: str) -> Any:
    raise ValueError(f"not strict JSON: {token}")


def strict_loads(text: str) -> Any:
    """``json.loads`` that refuses the ``NaN``, ``Infinity`` and ``-Infinity`` tokens."""
    return json.loads(text, parse_constant=_reject)


def old_record(kind: str, v: int, payload: dict[str, Any]) -> bytes:
    """An event's stored bytes at version ``v`` of its type, as an engine of that time wrote them."""
    return msgpack.packb({"type": kind, "v": v, "at": 1000.0, "payload": payload})


def old_run(run: Path) -> None:
    """A run holding one trial that completed with the non-finite metrics an older engine accepted."""
    log, state = create_run(run, nb201_config(), sync=False)
    try:
        trial, lease = state.seq + 1, state.seq + 2
        log.append([
            ev.TYPES.encode(ev.CANDIDATE_PROPOSED, Proposer().propose(state), at=1000.0),
            old_record(ev.TRIAL_ASSIGNED, 1, {"trial": trial, "trainer": "t", "deadline": 2000.0}),
            old_record(ev.TRIAL_COMPLETED, 1, {
                "trial": trial, "lease": lease, "artifacts": {},
                "metrics": {"val_acc": 91.0, "val_loss": float("nan"), "other": float("inf"), "low": float("-inf")},
            }),
        ], expected_head=state.seq)
    finally:
        log.close()


def test_strict_json_writes_non_finite_floats_as_strings() -> None:
    text = strict_json({"a": float("nan"), "b": (1, float("inf")), "c": [{"d": -math.inf}], "e": 2.5})
    assert strict_loads(text) == {"a": "NaN", "b": [1, "Infinity"], "c": [{"d": "-Infinity"}], "e": 2.5}


def test_log_status_and_replay_json_are_strict_for_an_old_log(tmp_path: Path, engine_here) -> None:
    run = tmp_path / "old"
    old_run(run)

    records = [strict_loads(line) for line in engine_here("log", "--run", str(run), "--json").stdout.splitlines()]
    [completed] = [r for r in records if r["type"] == ev.TRIAL_COMPLETED]
    assert completed["payload"]["metrics"] == {"val_acc": 91.0, "val_loss": "NaN", "other": "Infinity",
                                               "low": "-Infinity"}

    status = strict_loads(engine_here("status", "--run", str(run), "--json").stdout)
    assert status["best"]["metrics"]["val_loss"] == "NaN" and status["best"]["metrics"]["other"] == "Infinity"

    state = strict_loads(engine_here("replay", "--run", str(run), "--json").stdout)
    [trial] = state["trials"]
    assert trial["metrics"]["val_loss"] == "NaN" and trial["metrics"]["low"] == "-Infinity"
