"""Engine throughput and replay speed, beside Optuna's journal storage on the same space.

Lineage: ``engine run`` (a real engine process, 2 trainer processes, ZeroMQ on loopback, the durable
LMDB log with sync on) searches NAS-Bench-201 with the table evaluator and random search, for each
size and prefetch depth. Trials per second come from the log's own timestamps (first assignment to
last result); the rate per tenth of the run shows whether it holds up as the log grows.

Optuna: ``JournalStorage(JournalFileBackend)`` shared by 2 worker processes running
``study.optimize`` with its RandomSampler on the same space and table look-up.

Replay: events per second to rebuild the state of the largest run from its log (``state_at``),
beside a plain LMDB read + msgpack decode of the same log.

Usage::

    python benchmarks/throughput.py                                   # 10k and 100k trials (long)
    python benchmarks/throughput.py --sizes 2000 --optuna-sizes 2000

Prints a table and writes ``benchmarks/results/throughput.json``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import lmdb
import msgpack

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine import events as ev  # noqa: E402
from engine.log import LOG_DIR, EventLog  # noqa: E402
from engine.runs import state_at  # noqa: E402
from engine.spaces.nb201 import EDGES, OPS  # noqa: E402
from trainers.table import load_table  # noqa: E402

TARGET_RATIO = 4.0
TARGET_FLATNESS = 0.20
TARGET_REPLAY = 300_000


def lineage_run(workdir: Path, trials: int, prefetch: int) -> dict:
    run = workdir / f"lineage-{trials}-p{prefetch}"
    command = [sys.executable, "-m", "engine", "run", "--run", str(run), "--config", str(ROOT / "examples/nb201.toml"),
               "--set", "search.algorithm=random", "--trials", str(trials), "--trainers", "2",
               "--prefetch", str(prefetch), "--quiet"]
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
    wall = time.perf_counter() - started
    with EventLog.open_reader(run) as log:
        assigned = next(e.at for e in log.read() if e.type == ev.TRIAL_ASSIGNED)
        finished = [e.at for e in log.read() if e.type == ev.TRIAL_COMPLETED]
        events = log.head
    tenth = len(finished) // 10
    windows = []
    for i in range(10):
        start = assigned if i == 0 else finished[i * tenth - 1]
        windows.append(tenth / (finished[(i + 1) * tenth - 1] - start))
    return {"trials": trials, "prefetch": prefetch, "events": events, "wall_seconds": wall,
            "trials_per_second": len(finished) / (finished[-1] - assigned), "per_tenth": windows, "run": str(run)}


def _optuna_worker(storage_path: str, study_name: str, trials: int, seed: int) -> None:
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    table = load_table("cifar10")
    storage = JournalStorage(JournalFileBackend(storage_path))
    study = optuna.load_study(study_name=study_name, storage=storage, sampler=optuna.samplers.RandomSampler(seed))

    def objective(trial):
        architecture = [trial.suggest_categorical(edge, list(OPS)) for edge in EDGES]
        return table.observe(architecture, 0)["val_acc"]

    study.optimize(objective, n_trials=trials)


def optuna_run(workdir: Path, trials: int, workers: int = 2) -> dict:
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    path = workdir / f"optuna-{trials}.log"
    storage = JournalStorage(JournalFileBackend(str(path)))
    optuna.create_study(study_name="nb201", storage=storage, direction="maximize")
    processes = [multiprocessing.Process(target=_optuna_worker, args=(str(path), "nb201", trials // workers, seed))
                 for seed in range(workers)]
    started = time.perf_counter()
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    wall = time.perf_counter() - started
    completed = len(optuna.load_study(study_name="nb201", storage=storage).trials)
    return {"trials": completed, "workers": workers, "wall_seconds": wall, "trials_per_second": completed / wall}


def replay_speed(run: Path, repeats: int = 5) -> dict:
    best_fold, best_raw = float("inf"), float("inf")
    with EventLog.open_reader(run) as log:
        events = log.head
    for _ in range(repeats):
        started = time.perf_counter()
        state_at(run)
        best_fold = min(best_fold, time.perf_counter() - started)
    env = lmdb.open(str(run / LOG_DIR), readonly=True, subdir=True)
    for _ in range(repeats):
        started = time.perf_counter()
        with env.begin() as txn:
            for _, raw in txn.cursor():
                msgpack.unpackb(raw)
        best_raw = min(best_raw, time.perf_counter() - started)
    env.close()
    return {"events": events, "fold_events_per_second": events / best_fold,
            "raw_read_events_per_second": events / best_raw}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000], help="trials per Lineage run")
    parser.add_argument("--prefetch", type=int, nargs="+", default=[1, 16], help="trainer prefetch depths")
    parser.add_argument("--optuna-sizes", type=int, nargs="*", default=[10_000], help="trials per Optuna run")
    parser.add_argument("--keep", action="store_true", help="keep the runs (in benchmarks/results/runs)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "throughput.json")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="lineage-throughput-"))
    report: dict = {"lineage": [], "optuna": [], "cpus": os.cpu_count()}
    try:
        for size in args.optuna_sizes:
            print(f"optuna: {size} trials, 2 workers, JournalFileBackend ...", file=sys.stderr, flush=True)
            report["optuna"].append(optuna_run(workdir, size))
        for size in args.sizes:
            for prefetch in args.prefetch:
                print(f"lineage: {size} trials, 2 trainers, prefetch {prefetch} ...", file=sys.stderr, flush=True)
                report["lineage"].append(lineage_run(workdir, size, prefetch))
        largest = max(report["lineage"], key=lambda r: (r["trials"], -r["prefetch"]))
        report["replay"] = replay_speed(Path(largest["run"]))
        if args.keep:
            shutil.copytree(workdir, args.out.parent / "runs", dirs_exist_ok=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    print(f"\n{'system':<34} {'trials':>8} {'trials/s':>9} {'first 10%':>10} {'last 10%':>9}")
    for row in report["optuna"]:
        print(f"{'optuna journal, 2 workers':<34} {row['trials']:>8} {row['trials_per_second']:>9.0f}")
    for row in report["lineage"]:
        name = f"lineage engine run, prefetch {row['prefetch']}"
        print(f"{name:<34} {row['trials']:>8} {row['trials_per_second']:>9.0f} {row['per_tenth'][0]:>10.0f} "
              f"{row['per_tenth'][-1]:>9.0f}")
    if report["optuna"]:
        optuna_rate = report["optuna"][0]["trials_per_second"]
        for prefetch in args.prefetch:
            rows = sorted((r for r in report["lineage"] if r["prefetch"] == prefetch), key=lambda r: r["trials"])
            ratio = min(r["trials_per_second"] for r in rows) / optuna_rate
            flat = abs(rows[-1]["trials_per_second"] / rows[0]["trials_per_second"] - 1)
            report[f"prefetch_{prefetch}"] = {"ratio_to_optuna": ratio, "change_smallest_to_largest": flat}
            print(f"prefetch {prefetch}: slowest Lineage rate / Optuna = {ratio:.1f}x (target >= {TARGET_RATIO}x); "
                  f"{rows[0]['trials']} -> {rows[-1]['trials']} trials changes the rate by {flat:.0%} "
                  f"(target within {TARGET_FLATNESS:.0%})")
    replay = report["replay"]
    print(f"replay: {replay['fold_events_per_second']:,.0f} events/s rebuilding state from {replay['events']:,} "
          f"events (target >= {TARGET_REPLAY:,}); plain LMDB read + msgpack decode: "
          f"{replay['raw_read_events_per_second']:,.0f} events/s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for row in report["lineage"]:
        row.pop("run")
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
