"""Record the golden logs: real searches run by the code of the day they were recorded, kept as their raw records.

``tests/test_golden.py`` rebuilds each log from its records, replays it and verifies it, and compares the
state with the one recorded beside it: a refactor that changes what an old log means fails there.
Re-record only when a change is meant to alter the state of old logs (and say so in the commit).

Usage::

    python tests/golden/record.py        # a minute or two: one of the searches trains tiny Keras towers
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import msgpack

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from engine.log import EventLog  # noqa: E402
from engine.runs import state_at  # noqa: E402
from replay.report import state_dict, strict_json  # noqa: E402

HERE = Path(__file__).resolve().parent


def engine(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "engine", *args, "--quiet"] if args[0] == "run" else
                   [sys.executable, "-m", "engine", *args], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)


def keep(name: str, run: Path) -> None:
    with EventLog.open_reader(run) as log:
        raws = [raw for _, raw in log.read_raw()]
    (HERE / f"{name}.msgpack").write_bytes(msgpack.packb(raws))
    (HERE / f"{name}.json").write_text(strict_json(state_dict(state_at(run))) + "\n")
    print(f"{name}: {len(raws)} events")


def main() -> None:
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        engine("run", "--run", str(work / "nb"), "--config", "examples/nb201.toml", "--trials", "40")
        keep("nb201_beam", work / "nb")
        engine("fork", "--run", str(work / "nb"), "--at", "60", "--into", str(work / "fork"),
               "--set", "search.algorithm=evolution", "--set", "search.trials=50")
        engine("run", "--run", str(work / "fork"))
        keep("nb201_fork_evolution", work / "fork")
        engine("run", "--run", str(work / "m1d"), "--config", "examples/mnist1d_ensemble.toml",
               "--set", "data.samples=800", "--set", "training.epochs=2", "--set", "search.trials=14",
               "--set", "search.beam.initial=4", "--set", "ensemble.replicas=1", "--set", "ensemble.replica_wait=2",
               "--set", "distillation.ramp=4")
        keep("mnist1d_knowledge", work / "m1d")


if __name__ == "__main__":
    main()
