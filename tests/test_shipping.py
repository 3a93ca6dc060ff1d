"""Nothing shared but the address: a trainer started in an empty folder trains a run whose data file and block
modules it has no path to, from the bundle the engine recorded when the run started; with --no-ship it reads them
from its own disk, as before."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from support import ROOT, free_port, status_json, wait_for, write_toml

from engine import events as ev
from engine.artifacts import ARTIFACTS_DIR, ArtifactStore, digest_of
from engine.log import EventLog

SEARCH = """
[search]
trials = 2
seed = 0
[search.beam]
initial = 2
[space]
kind = "tower"
block_paths = ["my_blocks"]
blocks = ["my_blocks:dilated_conv", "global_avg_pool1d"]
min_depth = 2
max_depth = 2
[space.hparams]
learning_rate = [0.01]
batch_size = [16]
dropout = [0.0]
optimizer = ["adam"]
[data]
dataset = "npz"
path = "waves.npz"
[training]
epochs = 1
"""


def user_folder(root: Path) -> Path:
    """A config, a data file and a folder of block modules, as a user keeps them on the engine's machine."""
    root.mkdir()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 24, 1)).astype("float32")
    np.savez(root / "waves.npz", x=x, y=(x.mean(axis=(1, 2)) > 0).astype("int64"))
    (root / "my_blocks").mkdir()
    shutil.copy(ROOT / "examples" / "my_blocks.py", root / "my_blocks" / "my_blocks.py")
    return write_toml(root / "search.toml", SEARCH)


def _first_event(run: Path):
    """The run's SearchStarted once the engine has written it (its log file appears a moment before)."""
    if not (run / "events.lmdb" / "data.mdb").exists():
        return None
    with EventLog.open_reader(run) as log:
        return next(log.read(1, 1), None)


def test_a_trainer_with_none_of_the_runs_files_trains_it_from_the_bundle(tmp_path: Path, spawn, engine_cli,
                                                                         engine_here) -> None:
    config = user_folder(tmp_path / "user")
    run, endpoint = tmp_path / "run", f"tcp://127.0.0.1:{free_port()}"
    engine = spawn("serve", "--run", str(run), "--config", str(config), "--bind", endpoint, "--pub",
                   "tcp://127.0.0.1:0", "--quiet")
    started = wait_for(lambda: _first_event(run), timeout=60)
    digest = started.payload["bundle"]
    assert digest is not None and digest_of(ArtifactStore(run / ARTIFACTS_DIR).read(digest)) == digest
    shutil.rmtree(tmp_path / "user")  # the engine's copies are gone: only the bundle holds them now

    elsewhere = tmp_path / "trainer-host"
    elsewhere.mkdir()
    trainer = spawn("trainer", "--connect", endpoint, "--name", "far", "--once", "--cache",
                    str(elsewhere / "cache"))
    assert trainer.wait(timeout=240) == 0, trainer.log_path.read_text()[-2000:]
    assert engine.wait(timeout=60) == 0
    status = status_json(engine_cli, run)
    assert status["completed"] == 2 and status["failed"] == 0, status
    assert "the run's files" in trainer.log_path.read_text()
    assert f"files shipped to trainers: bundle {digest}" in engine_here("status", "--run", str(run)).stdout
    assert (elsewhere / "cache" / "bundles" / digest / "blocks" / "0" / "my_blocks.py").is_file()


def test_with_no_ship_trainers_read_the_files_from_their_own_disk(tmp_path: Path, engine_cli) -> None:
    config = user_folder(tmp_path / "user")
    run = tmp_path / "run"
    engine_cli("run", "--run", str(run), "--config", str(config), "--trainers", "1", "--no-ship", "--quiet",
               timeout=300)
    with EventLog.open_reader(run) as log:
        started = next(log.read(1, 1))
        assert started.type == ev.SEARCH_STARTED and started.payload["bundle"] is None
    assert status_json(engine_cli, run)["completed"] == 2
