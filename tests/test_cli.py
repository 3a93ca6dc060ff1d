"""The ``engine`` command end to end, in child processes: run, serve, trainer, status, log, replay,
fork and keys, as a user would type them (the refusals of ``fork``, many, run its ``main`` in this process)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from support import ROOT, free_port, status_json, wait_for, write_toml

from engine import events as ev
from engine.log import EventLog
from engine.runs import read_endpoints

NB201 = ROOT / "examples" / "nb201.toml"
TOWER = ROOT / "examples" / "tower.toml"


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """One nb201 search of 40 trials with 2 local trainers, shared by the read-only tests."""
    import subprocess
    import sys

    run = tmp_path_factory.mktemp("cli") / "nb"
    subprocess.run([sys.executable, "-m", "engine", "run", "--run", str(run), "--config", str(NB201),
                    "--trials", "40", "--trainers", "2", "--quiet"], check=True, capture_output=True, timeout=120)
    return run


def test_engine_run_searches_with_two_trainers_and_prints_the_leaderboard(tmp_path: Path, engine_cli) -> None:
    # 0.3 s a trial: neither trainer finishes the 25 before the other has started.
    result = engine_cli("run", "--run", str(tmp_path / "tower"), "--config", str(TOWER), "--trials", "25",
                        "--set", "evaluator.delay=0.3")
    assert "leaderboard (val_accuracy, max):" in result.stdout
    assert "finished: budget of 25 trials spent" in result.stdout
    assert "25/25 trials" in result.stderr, "a progress line while it works"
    assert "connected" in (tmp_path / "tower" / "logs" / "trainer-0.log").read_text(), "trainers log to the run"
    status = status_json(engine_cli, tmp_path / "tower")
    assert status["completed"] == 25 and status["finished"] and status["best"]["metrics"]["val_accuracy"] > 0.5
    with EventLog.open_reader(tmp_path / "tower") as log:
        trainers = {e.payload["trainer"] for e in log.read() if e.type == ev.TRIAL_ASSIGNED}
    assert len(trainers) == 2


def test_status_log_and_replay_read_a_run(finished_run: Path, engine_cli) -> None:
    status = status_json(engine_cli, finished_run)
    assert status["completed"] == 40 and status["algorithm"] == "beam" and len(status["beam"]) == 8
    assert status["leaderboard"][0] == status["best"]

    lines = engine_cli("log", "--run", str(finished_run), "--json").stdout.splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["seq"] for r in records] == list(range(1, status["seq"] + 1))
    assert records[0]["type"] == "SearchStarted" and records[-1]["type"] == "SearchFinished"
    text = engine_cli("log", "--run", str(finished_run), "--from", "5", "--type", "TrialCompleted").stdout
    assert text and all("TrialCompleted" in line for line in text.splitlines())

    at = json.loads(engine_cli("replay", "--run", str(finished_run), "--at", "20", "--json").stdout)
    assert at["seq"] == 20 and at["completed"] < 40 and at["finished"] is None
    assert "reproduce exactly" in engine_cli("replay", "--run", str(finished_run), "--verify").stdout
    bad = engine_cli("replay", "--run", str(finished_run), "--at", "99999", check=False)
    assert bad.returncode == 1 and "outside the log" in bad.stderr


def test_a_finished_run_resumes_with_a_bigger_budget(tmp_path: Path, engine_cli) -> None:
    run = tmp_path / "nb"
    engine_cli("run", "--run", str(run), "--config", str(NB201), "--trials", "12", "--quiet")
    again = engine_cli("run", "--run", str(run), "--quiet")
    assert "12/12 done" in again.stdout, "a finished run just reports"
    engine_cli("run", "--run", str(run), "--trials", "20", "--quiet")
    status = status_json(engine_cli, run)
    assert status["completed"] == 20 and status["finished"]
    resumed = engine_cli("log", "--run", str(run), "--type", "SearchResumed").stdout.splitlines()
    assert len(resumed) == 1 and "search.trials" in resumed[0]
    assert "reproduce exactly" in engine_cli("replay", "--run", str(run), "--verify").stdout
    imagenet = NB201.read_text().replace('dataset = "cifar10"', 'dataset = "imagenet"')
    other = write_toml(tmp_path / "other.toml", imagenet)
    refused = engine_cli("run", "--run", str(run), "--config", str(other), check=False)
    assert refused.returncode == 1 and "different config" in refused.stderr


def test_a_foreign_config_is_refused_before_anything_is_written(tmp_path: Path, engine_cli) -> None:
    from engine.config import load_config
    from engine.runs import create_run

    log, _ = create_run(tmp_path / "nb", load_config(NB201))  # a run that has not finished
    log.close()
    before = (tmp_path / "nb" / "events.lmdb" / "data.mdb").read_bytes()
    imagenet = write_toml(tmp_path / "i.toml", NB201.read_text().replace('"cifar10"', '"imagenet"'))
    refused = engine_cli("run", "--run", str(tmp_path / "nb"), "--config", str(imagenet), "--trials", "500",
                         check=False)
    assert refused.returncode == 1 and "different config" in refused.stderr
    assert (tmp_path / "nb" / "events.lmdb" / "data.mdb").read_bytes() == before


def test_a_wall_clock_budget_ends_a_run(tmp_path: Path, engine_cli) -> None:
    config = write_toml(tmp_path / "c.toml", "[search]\ntrials = 1000\n[space]\nkind = 'nb201'\n"
                                             "[evaluator]\ndelay = 0.1\n")
    result = engine_cli("run", "--run", str(tmp_path / "nb"), "--config", str(config), "--minutes", "0.03", "--quiet")
    assert "finished: time budget of 0.03 minutes spent" in result.stdout
    status = status_json(engine_cli, tmp_path / "nb")
    assert 2 <= status["completed"] < 100 and status["completed"] == status["proposed"]


def test_serve_with_separate_trainer_daemons_and_a_live_log(tmp_path: Path, spawn, engine_cli) -> None:
    config = write_toml(tmp_path / "c.toml", "[search]\ntrials = 15\n[space]\nkind = 'nb201'\n"
                                             "[evaluator]\ndelay = 0.05\n")
    run, endpoint = tmp_path / "nb", f"tcp://127.0.0.1:{free_port()}"
    engine = spawn("serve", "--run", str(run), "--config", str(config), "--bind", endpoint,
                   "--pub", f"tcp://127.0.0.1:{free_port()}")
    wait_for(lambda: read_endpoints(run))
    follower = spawn("log", "--run", str(run), "--follow", "--json")
    trainers = [spawn("trainer", "--connect", endpoint, "--name", f"d{i}", "--once") for i in range(2)]
    live = json.loads(wait_for(lambda: engine_cli("status", "--run", str(run), "--json").stdout))
    assert live["budget"] == 15
    assert engine.wait(timeout=60) == 0
    assert all(t.wait(timeout=30) == 0 for t in trainers)
    head = status_json(engine_cli, run)["seq"]
    wait_for(lambda: len(follower.out_path.read_text().splitlines()) == head)
    time.sleep(0.3)
    follower.terminate()
    followed = [json.loads(line)["seq"] for line in follower.out_path.read_text().splitlines()]
    assert followed == list(range(1, head + 1)), "--follow prints every event once, in order"
    assert not (run / "engine.json").exists(), "the engine removes its endpoint file when it stops"


def test_fork_continues_a_run_with_overrides_and_leaves_the_parent_alone(finished_run: Path, tmp_path: Path,
                                                                         engine_cli, engine_here) -> None:
    parent_bytes = (finished_run / "events.lmdb" / "data.mdb").read_bytes()
    child = tmp_path / "evo"
    out = engine_cli("fork", "--run", str(finished_run), "--at", "60", "--into", str(child),
                     "--set", "search.algorithm=evolution", "--set", "search.trials=50").stdout
    assert "Continue it with: engine run --run" in out
    engine_cli("run", "--run", str(child), "--quiet")
    status = status_json(engine_cli, child)
    assert status["algorithm"] == "evolution" and status["completed"] == 50
    assert status["forked_from"]["seq"] == 60
    assert "reproduce exactly" in engine_cli("replay", "--run", str(child), "--verify").stdout
    assert (finished_run / "events.lmdb" / "data.mdb").read_bytes() == parent_bytes

    for args, message in [
        (["--at", "0"], "outside the log"),
        (["--at", "10", "--set", "space.kind=tower"], "cannot change space.kind"),
        (["--at", "10", "--set", "data.seed=3"], "cannot change [data]"),
        (["--at", "10", "--set", 'data={dataset="digits"}'], "cannot change [data]"),
        (["--at", "60", "--set", 'space.ops=["none", "skip_connect"]'], "would not belong to the forked space"),
        (["--at", "10", "--set", "search.beam.kk=3"], "search.beam.kk"),
        (["--at", "100", "--set", "search.trials=3"], "below the"),
    ]:
        result = engine_here("fork", "--run", str(finished_run), "--into", str(tmp_path / "no"), *args, check=False)
        assert result.returncode == 1 and message in result.stderr, result.stderr
        assert not (tmp_path / "no").exists()
    taken = engine_here("fork", "--run", str(finished_run), "--at", "10", "--into", str(child), check=False)
    assert taken.returncode == 1 and "already exists" in taken.stderr
    (tmp_path / "a-file").write_text("x")
    into_file = engine_here("fork", "--run", str(finished_run), "--at", "10", "--into", str(tmp_path / "a-file"),
                            check=False)
    assert into_file.returncode == 1 and "not an empty folder" in into_file.stderr


def test_curve_keys_end_to_end(tmp_path: Path, engine_cli) -> None:
    keys = tmp_path / "keys"
    out = engine_cli("keys", "--dir", str(keys)).stdout
    assert "--server-key" in out and (keys / "authorized" / "trainer.key").exists()
    again = engine_cli("keys", "--dir", str(keys), check=False)
    assert again.returncode == 1 and "already holds keys" in again.stderr
    result = engine_cli("run", "--run", str(tmp_path / "nb"), "--config", str(NB201), "--trials", "8",
                        "--keys", str(keys), "--quiet")
    assert "8/8 done" in result.stdout


@pytest.mark.parametrize("command", ["serve", "trainer", "run", "status", "log", "replay", "fork", "keys", "blocks"])
def test_every_command_explains_itself(engine_cli, command: str) -> None:
    text = engine_cli(command, "--help").stdout
    assert text.startswith("usage: engine " + command)
    assert len(text.splitlines()) > 4


def test_blocks_lists_the_registry(engine_cli) -> None:
    text = engine_cli("blocks").stdout
    assert "resnet_32" in text and "gru_32" in text and "dense_64" in text


def test_a_run_needs_a_config_to_start(tmp_path: Path, engine_cli) -> None:
    result = engine_cli("run", "--run", str(tmp_path / "nothing"), check=False)
    assert result.returncode == 1 and "pass --config" in result.stderr
    assert not (tmp_path / "nothing").exists()
    status = engine_cli("status", "--run", str(tmp_path / "nothing"), check=False)
    assert status.returncode == 1 and "no event log" in status.stderr
