"""Kill -9 the engine (and now and then a trainer) all through a search, and measure the time it costs.

A NAS-Bench-201 beam search (each look-up sleeps ``--delay`` seconds, as a short training would) runs on
``engine serve`` with three ``engine trainer`` daemons, one of them holding ``--prefetch 32`` leases.
Every few seconds (a schedule drawn from ``--seed``) the engine is killed with SIGKILL and restarted
on the same port, and one time in three a trainer too. Once the log holds SearchFinished the engine
is killed at once (within 20 ms) and restarted on the finished run, as when it dies just as the search ends.

Measured from the log: the wall time to the end; leases lost before their own deadline (a TrialLost
less than ``engine.lease_timeout`` after its TrialAssigned); the longest time a trainer went without
being assigned work while the search ran; whether every trainer exited once the search was done; and
``engine replay --verify``. ``--tree`` runs another checkout of Lineage the same way (to compare
before and after a change).

Usage::

    python benchmarks/chaos.py                                    # this checkout, 2 seeds
    python benchmarks/chaos.py --tree /tmp/old --out old.json     # another checkout, same schedule
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine import events as ev  # noqa: E402
from engine.log import EventLog  # noqa: E402
from engine.runs import is_run  # noqa: E402

CONFIG = """
[space]
kind = "nb201"
[search]
trials = {trials}
seed = {seed}
[evaluator]
delay = {delay}
[engine]
lease_timeout = 2.0
heartbeat = 0.5
"""
PREFETCH = {"t0": 1, "t1": 1, "t2": 32}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def chaos(tree: Path, seed: int, trials: int, delay: float, workdir: Path) -> dict:
    rng = random.Random(seed)
    run_dir, config = workdir / "run", workdir / "nb.toml"
    config.write_text(CONFIG.format(trials=trials, seed=seed, delay=delay))
    env = {**os.environ, "PYTHONPATH": str(tree), "XDG_CACHE_HOME": str(workdir / "cache")}
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    logs = (workdir / "logs").open("a")

    processes: list[subprocess.Popen] = []

    def engine(first: bool = False) -> subprocess.Popen:
        extra = ["--config", str(config)] if first else []
        return spawn([sys.executable, "-m", "engine", "serve", "--run", str(run_dir), *extra, "--bind", endpoint,
                      "--pub", "tcp://127.0.0.1:0", "--quiet"])

    def trainer(name: str) -> subprocess.Popen:
        return spawn([sys.executable, "-m", "engine", "trainer", "--connect", endpoint, "--once", "--name", name,
                      "--prefetch", str(PREFETCH[name]), "--quiet"])

    def spawn(command: list[str]) -> subprocess.Popen:
        processes.append(subprocess.Popen(command, env=env, cwd=tree, stdout=subprocess.DEVNULL, stderr=logs))
        return processes[-1]

    def finished() -> bool:
        if not is_run(run_dir):  # the first engine is still creating it
            return False
        with EventLog.open_reader(run_dir) as log:
            return any(e.type == ev.SEARCH_FINISHED for e in log.read(max(1, log.head - 5)))

    try:
        began = time.monotonic()
        server = engine(first=True)
        trainers = {name: trainer(name) for name in PREFETCH}
        kills = {"engine": 0, "trainer": 0}
        while not finished() and time.monotonic() - began < 600:
            kill_at = time.monotonic() + rng.uniform(3.0, 6.0)
            while time.monotonic() < kill_at and not finished():
                time.sleep(0.02)
            if finished():
                break
            server.send_signal(signal.SIGKILL)
            server.wait()
            kills["engine"] += 1
            if rng.random() < 1 / 3:
                name = rng.choice(sorted(trainers))
                trainers[name].send_signal(signal.SIGKILL)
                trainers[name].wait()
                kills["trainer"] += 1
                trainers[name] = trainer(name)
            server = engine()
        wall = time.monotonic() - began
        # The engine dies just as the search ends (within 20 ms of SearchFinished, before the trainers waiting
        # for work hear that it is done); a new one comes up on the finished run.
        server.send_signal(signal.SIGKILL)
        server.wait()
        server = engine()
        done_at = time.monotonic()
        stuck = []
        for name, process in trainers.items():
            try:
                process.wait(timeout=max(1.0, 30 - (time.monotonic() - done_at)))
            except subprocess.TimeoutExpired:
                stuck.append(name)
                process.send_signal(signal.SIGKILL)
                process.wait()
        server.send_signal(signal.SIGKILL)
        server.wait()
        verify = subprocess.run([sys.executable, "-m", "engine", "replay", "--run", str(run_dir), "--verify"],
                                env=env, cwd=tree, capture_output=True, text=True)
        return {"seed": seed, "wall_seconds": wall, "kills": kills, **measure(run_dir),
                "trainers_never_told_done": stuck, "verify": verify.stdout.strip() or verify.stderr.strip()}
    finally:  # whatever went wrong, leave nothing running
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                process.wait()


def measure(run_dir: Path) -> dict:
    with EventLog.open_reader(run_dir) as log:
        events = list(log.read())
    timeout = 2.0
    assigned = {e.seq: e for e in events if e.type == ev.TRIAL_ASSIGNED}
    lost = [e for e in events if e.type == ev.TRIAL_LOST]
    early = [e for e in lost if e.payload["lease"] in assigned
             and e.at - assigned[e.payload["lease"]].at < timeout and "heartbeat" in e.payload["reason"]]
    end = next((e.at for e in events if e.type == ev.SEARCH_FINISHED), events[-1].at)
    gaps = {}
    for name in PREFETCH:  # a trainer renamed after a restart ("t0-2") is still t0
        times = sorted(e.at for e in assigned.values() if e.payload["trainer"].split("-")[0] == name)
        times = [events[0].at, *times, end]
        gaps[name] = max(b - a for a, b in zip(times, times[1:], strict=False))
    return {"completed": sum(e.type == ev.TRIAL_COMPLETED for e in events), "lost": len(lost),
            "lost_before_their_deadline": len(early), "longest_wait_for_work": gaps,
            "finished": any(e.type == ev.SEARCH_FINISHED for e in events)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tree", type=Path, default=ROOT, help="the Lineage checkout to run (default: this one)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--delay", type=float, default=0.2, help="seconds each look-up sleeps (default 0.2)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "chaos.json")
    args = parser.parse_args()
    rows = []
    for seed in args.seeds:
        with tempfile.TemporaryDirectory(prefix="lineage-chaos-") as workdir:
            row = chaos(args.tree.resolve(), seed, args.trials, args.delay, Path(workdir))
        rows.append(row)
        print(json.dumps(row), flush=True)
    summary = {"tree": str(args.tree), "runs": rows,
               "median_wall_seconds": statistics.median(r["wall_seconds"] for r in rows),
               "lost_before_their_deadline": sum(r["lost_before_their_deadline"] for r in rows),
               "longest_wait_for_work": max(max(r["longest_wait_for_work"].values()) for r in rows),
               "trainers_never_told_done": sum(len(r["trainers_never_told_done"]) for r in rows)}
    print(json.dumps({k: v for k, v in summary.items() if k != "runs"}))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
