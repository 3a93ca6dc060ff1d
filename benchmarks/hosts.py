"""Trainers on separate hosts behind added latency: trials per second and how busy the trainers are kept.

The engine in one network namespace and the trainers split over two others (``tests/netlab.py``: a router
between them adds the latency, as ``tc netem`` would; needs root), CurveZMQ on. A NAS-Bench-201 beam search
whose look-ups each sleep ``--delay`` seconds (a short training) runs with 2, 8 and 32 trainer processes,
each asking for ``--prefetch`` leases ahead, at 0, 20 and 200 ms of added latency each way between the engine
and a trainer. Each run has enough trials for about ``--seconds`` of work at full speed.

With many trainers the beam's proposals (a Gaussian-process surrogate over every trial so far) can cost more
than the transport: ``--algorithm random`` measures the transport alone.

Measured from the log, over the middle 80% of the completions (start-up and the last stragglers left out):
trials per second, and utilisation = trials/s x delay / trainers (1.0: every trainer always evaluating).

Usage::

    python benchmarks/hosts.py                          # 2 8 32 trainers x 0 20 200 ms
    python benchmarks/hosts.py --trainers 8 --latency 200 --seconds 20
    python benchmarks/hosts.py --algorithm random --out benchmarks/results/hosts_random.json

Prints a table and writes ``benchmarks/results/hosts.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from netlab import Lab, unavailable  # noqa: E402

from engine import events as ev  # noqa: E402
from engine.log import EventLog  # noqa: E402

CONFIG = """
[space]
kind = "nb201"
[search]
algorithm = "{algorithm}"
trials = {trials}
seed = 0
[evaluator]
delay = {delay}
[engine]
lease_timeout = 30.0
heartbeat = 2.0
"""
PORT = 5555


def measure(trainers: int, latency_ms: float, delay: float, seconds: float, prefetch: int, algorithm: str,
            workdir: Path) -> dict:
    trials = max(40, round(trainers / delay * seconds))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with Lab(["engine", "a", "b"], seed=0) as lab:
        folders = {name: workdir / name for name in lab.names}
        for folder in folders.values():
            folder.mkdir()
        keys = folders["engine"] / "keys"
        subprocess.run([sys.executable, "-m", "engine", "keys", "--dir", str(keys)], env=env, check=True,
                       capture_output=True)
        for host in ("a", "b"):
            shutil.copy(keys / "server.key", folders[host])
            shutil.copy(keys / "trainer.key_secret", folders[host])
            lab.impair(host, delay=latency_ms / 1000)
        (folders["engine"] / "search.toml").write_text(CONFIG.format(algorithm=algorithm, trials=trials, delay=delay))
        endpoint = f"tcp://{lab.address['engine']}:{PORT}"
        with (workdir / "processes.log").open("a") as log:
            engine = lab.spawn("engine", [sys.executable, "-m", "engine", "serve", "--run", "run", "--config",
                                          "search.toml", "--bind", endpoint, "--pub", "tcp://127.0.0.1:0",
                                          "--keys", "keys", "--quiet"], cwd=folders["engine"], log=log, env=env)
            workers = [lab.spawn(host, [sys.executable, "-m", "engine", "trainer", "--connect", endpoint,
                                        "--server-key", "server.key", "--key", "trainer.key_secret", "--once",
                                        "--name", f"{host}{i}", "--prefetch", str(prefetch), "--quiet",
                                        "--cache", f"cache{i}"], cwd=folders[host], log=log, env=env)
                       for i in range(trainers) for host in ["ab"[i % 2]]]
            began = time.monotonic()
            code = engine.wait(timeout=seconds * 20 + 300)
            wall = time.monotonic() - began
            for worker in workers:
                worker.wait(timeout=60)
        with EventLog.open_reader(folders["engine"] / "run") as reader:
            done = sorted(e.at for e in reader.read() if e.type == ev.TRIAL_COMPLETED)
    low, high = done[len(done) // 10], done[len(done) * 9 // 10]
    rate = (len(done) * 9 // 10 - len(done) // 10) / (high - low)
    return {"algorithm": algorithm, "trainers": trainers, "latency_ms": latency_ms, "trials": trials,
            "completed": len(done),
            "engine_exit": code, "wall_seconds": round(wall, 1), "trials_per_second": round(rate, 2),
            "utilisation": round(rate * delay / trainers, 3)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trainers", type=int, nargs="+", default=[2, 8, 32])
    parser.add_argument("--latency", type=float, nargs="+", default=[0, 20, 200], help="ms each way")
    parser.add_argument("--delay", type=float, default=0.5, help="seconds each look-up sleeps (default 0.5)")
    parser.add_argument("--seconds", type=float, default=30, help="seconds of work per run at full speed")
    parser.add_argument("--prefetch", type=int, default=2, help="leases each trainer asks for ahead")
    parser.add_argument("--algorithm", default="beam", choices=["beam", "random"],
                        help="the searcher (random proposes at almost no cost: the transport alone)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "hosts.json")
    args = parser.parse_args()
    if unavailable():
        parser.error(f"cannot build the hosts here: {unavailable()}")
    rows = []
    print(f"{'trainers':>8} {'latency':>8} {'trials':>7} {'trials/s':>9} {'utilisation':>11}")
    for trainers in args.trainers:
        for latency in args.latency:
            with tempfile.TemporaryDirectory(prefix="lineage-hosts-") as workdir:
                row = measure(trainers, latency, args.delay, args.seconds, args.prefetch, args.algorithm,
                              Path(workdir))
            rows.append(row)
            print(f"{trainers:>8} {latency:>6g}ms {row['completed']:>7} {row['trials_per_second']:>9.2f} "
                  f"{row['utilisation']:>11.1%}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"delay": args.delay, "prefetch": args.prefetch, "algorithm": args.algorithm,
                                    "runs": rows}, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
