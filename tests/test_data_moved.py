"""Pure resolution: resolving a config never reads data. The data is checked in its own step before a new run
starts, and by each trainer when it joins; a run whose data has moved still replays, verifies, forks and
resumes, and a trainer that cannot read it fails one candidate with an infrastructure reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support import assert_nothing_is_lost, drive

from engine.config import resolve_config
from engine.log import EventLog
from engine.options import ConfigError
from engine.runs import create_run, open_run, state_at
from engine.state import Blame
from trainers.datasets import check_data


def write_csv(path: Path, rows: int = 60, regression: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["x1,x2,y"]
    for i in range(rows):
        label = f"{i * 0.37:.2f}" if regression else ("yes" if i % 3 else "no")
        lines.append(f"{i % 7},{(i * 5) % 11},{label}")
    path.write_text("\n".join(lines) + "\n")
    return path


def csv_config(path: Path, **data: object) -> dict:
    return {"space": {"kind": "tower", "blocks": ["dense_32", "dense_64"], "max_depth": 2,
                      "hparams": {"batch_size": [16], "optimizer": ["adam"]}},
            "search": {"trials": 6, "beam": {"initial": 2}},
            "data": {"dataset": "csv", "path": str(path), "label": "y", **data},
            "training": {"epochs": 1, "patience": 0}}


def test_resolving_reads_no_data_and_checking_it_fixes_the_task(tmp_path: Path) -> None:
    path = tmp_path / "later.csv"
    config = resolve_config(csv_config(path))  # the file does not exist yet: resolving never looks
    assert not config.task_known and (config.data.task, config.search.metric) == ("auto", "")
    with pytest.raises(ConfigError, match=r"data\.path: .*later\.csv does not exist"):
        check_data(config)
    with pytest.raises(ConfigError, match="check the data first"):
        create_run(tmp_path / "run", config)
    assert not (tmp_path / "run").exists()

    write_csv(path)
    checked = check_data(config)
    assert (checked.data.task, checked.search.metric, checked.search.mode) == ("classification", "val_accuracy",
                                                                               "max")
    write_csv(path, regression=True)
    checked = check_data(config)
    assert (checked.data.task, checked.search.metric, checked.search.mode) == ("regression", "val_mae", "min")


def test_rules_that_depend_on_the_task_wait_for_the_data(tmp_path: Path) -> None:
    raw = csv_config(write_csv(tmp_path / "reg.csv", regression=True))
    raw["distillation"] = {"teacher": "best"}
    config = resolve_config(raw)  # the task is not known yet, so neither is the clash
    with pytest.raises(ConfigError, match="distillation.teacher = 'best' needs a classification task"):
        check_data(config)


def test_bad_data_is_refused_before_a_new_run_with_the_row_named(tmp_path: Path, engine_cli) -> None:
    path = write_csv(tmp_path / "data.csv")
    path.write_text(path.read_text() + "1,2\n")
    (tmp_path / "search.toml").write_text(_toml(csv_config(path)))
    result = engine_cli("run", "--run", str(tmp_path / "run"), "--config", str(tmp_path / "search.toml"),
                        "--trainers", "1", check=False)
    assert result.returncode != 0 and "row 62 has 2 fields, the header has 3" in result.stderr
    assert not (tmp_path / "run").exists(), "nothing is written for data that cannot be used"


def _toml(raw: dict) -> str:
    lines = []
    for section, values in raw.items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            if isinstance(value, dict):
                continue
            lines.append(f"{key} = {json.dumps(value)}")
        for key, value in values.items():
            if isinstance(value, dict):
                lines.append(f"[{section}.{key}]")
                lines += [f"{k} = {json.dumps(v)}" for k, v in value.items()]
    return "\n".join(lines) + "\n"


def _run_whose_data_moved(tmp_path: Path, *, ship: bool = True) -> tuple[Path, int]:
    path = write_csv(tmp_path / "data" / "table.csv")
    run = tmp_path / "run"
    log, state = create_run(run, check_data(resolve_config(csv_config(path))), sync=False, ship=ship)
    script = [("ready", 0, 2, 1.0, False), ("complete", 0, 1, 0.9, False), ("complete", 1, 1, 0.7, False),
              ("ready", 1, 2, 1.0, False), ("complete", 0, 1, 0.8, False)]
    drive(log, state, script)
    completed = len(state.completed)
    log.close()
    path.rename(tmp_path / "moved.csv")
    return run, completed


def test_a_run_whose_data_moved_replays_verifies_forks_and_resumes(tmp_path: Path, engine_cli, engine_here) -> None:
    run, completed = _run_whose_data_moved(tmp_path)
    assert completed >= 2
    assert "reproduce exactly" in engine_here("replay", "--run", str(run), "--verify").stdout
    assert json.loads(engine_here("status", "--run", str(run), "--json").stdout)["completed"] == completed
    assert "SearchStarted" in engine_here("log", "--run", str(run)).stdout
    engine_cli("fork", "--run", str(run), "--at", "3", "--into", str(tmp_path / "fork"),
               "--set", "search.trials=8")
    assert state_at(tmp_path / "fork").config.search.trials == 8
    log, state = open_run(run, None, budget={"search.trials": 9}, sync=False)  # what `engine serve` does
    log.close()
    assert state.budget == 9 and state.resumes == 1


def test_a_trainer_that_cannot_read_the_data_fails_one_candidate_as_infrastructure(tmp_path: Path,
                                                                                   engine_cli) -> None:
    """Without a bundle (``--no-ship``) trainers read the data from their own disks; a shipped run keeps its data
    (tests/test_shipping.py)."""
    run, completed = _run_whose_data_moved(tmp_path, ship=False)
    result = engine_cli("run", "--run", str(run), "--trainers", "1", "--quiet", check=False, timeout=180)
    assert result.returncode != 0, "its only trainer left: the search could not finish"
    state = state_at(run)
    failed = [state.trials[t] for t in state.failed]
    assert len(failed) == 1 and failed[0].blame is Blame.INFRASTRUCTURE
    assert "cannot read the data" in failed[0].reason and "table.csv" in failed[0].reason
    assert len(state.completed) == completed
    assert_nothing_is_lost(state)
    with EventLog.open_reader(run) as log:
        assert log.head == state.seq
