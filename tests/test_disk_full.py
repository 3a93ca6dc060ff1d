"""The disk under a run fills up: the engine stops with one clear error, the log stays whole, and the run
resumes once there is space again. A real tmpfs, mounted by the test (root only), filled by a file."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from support import write_toml

from engine.runs import state_at

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("mount") is None,
                                reason="mounting a tmpfs needs root")
TRIALS = 600  # the disk fills after about 250


@pytest.fixture
def small_disk(tmp_path: Path):
    """An 8 MiB tmpfs, nearly all of it taken by a file the test can delete."""
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(disk)], check=True)
    try:
        filler = disk / "filler"
        free = shutil.disk_usage(disk).free
        with filler.open("wb") as out:
            out.write(b"\0" * (free - 256 * 1024))  # 256 KiB left: a few hundred events
        yield disk, filler
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_full_disk_stops_the_engine_clearly_and_the_run_resumes_when_space_returns(small_disk, tmp_path: Path,
                                                                                      engine_cli, engine_here) -> None:
    disk, filler = small_disk
    config = write_toml(tmp_path / "search.toml", f'[space]\nkind = "nb201"\n[search]\nalgorithm = "random"\n'
                        f'trials = {TRIALS}\n')
    run = disk / "run"
    full = engine_cli("run", "--run", str(run), "--config", str(config), "--trainers", "1", "--quiet",
                      check=False, timeout=300)
    assert full.returncode == 1, full.stderr[-2000:]
    assert "the disk refused to write the event log (No space left on device)" in full.stderr
    assert "Traceback" not in full.stderr and "engine serve --run" in full.stderr
    stopped = state_at(run)
    assert 0 < len(stopped.completed) < TRIALS
    assert "reproduce exactly" in engine_here("replay", "--run", str(run), "--verify").stdout

    filler.unlink()
    engine_cli("run", "--run", str(run), "--trainers", "1", "--quiet", timeout=300)
    resumed = state_at(run)
    assert len(resumed.completed) == TRIALS and resumed.finished is not None
    assert "reproduce exactly" in engine_here("replay", "--run", str(run), "--verify").stdout
