"""Search efficiency on NAS-Bench-201: Lineage's beam, evolution and random search beside Optuna's TPE.

Every algorithm searches the same space (6 edges x 5 operations) and sees the same noisy observations:
an architecture's validation accuracy is one of its recorded training seeds, picked by the benchmark
seed and the architecture (``trainers.table.NB201Table.observe``). Lineage's searchers run through
the real scheduler, fold and searcher code, in process (no sockets: this measures the search, not the
engine). For each dataset, algorithm and seed it records:

- trials to reach the top 1% of the space (by mean accuracy over the recorded seeds): the first trial
  whose architecture is in it;
- regret after 50/100/300 trials: the best mean accuracy in the space minus the mean accuracy of the
  incumbent (the architecture with the best observed accuracy so far).

Usage::

    python benchmarks/nb201_search.py                      # 500 seeds, 300 trials, 3 datasets (long)
    python benchmarks/nb201_search.py --seeds 20 --trials 100

Prints a table per dataset and writes ``benchmarks/results/nb201_search.json``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import statistics
import sys
import time
from pathlib import Path

# One BLAS thread per worker process: the workers already use every core.
for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine import events as ev  # noqa: E402
from engine.config import resolve_config  # noqa: E402
from engine.scheduler import Scheduler  # noqa: E402
from engine.spaces.nb201 import EDGES, OPS  # noqa: E402
from engine.state import State  # noqa: E402
from trainers.table import load_table  # noqa: E402

DATASETS = ("cifar10", "cifar100", "imagenet")
ALGORITHMS = ("random", "evolution", "beam", "tpe")
CHECKPOINTS = (50, 100, 300)
TARGET = 0.75  # beam's median trials to the top 1% must be at most this times TPE's


def lineage_trajectory(dataset: str, algorithm: str, seed: int, trials: int) -> list[tuple[str, float]]:
    """(architecture key, observed accuracy) of each trial of one Lineage search."""
    config = resolve_config({"search": {"algorithm": algorithm, "trials": trials, "seed": seed},
                             "space": {"kind": "nb201", "dataset": dataset}})
    scheduler = Scheduler(State(), now=0.0, clock=lambda: 0.0)
    scheduler.emit(ev.SEARCH_STARTED, {"run_id": f"bench-{seed}", "config": config.to_dict(), "lineage": "bench"})
    table = load_table(dataset)
    trajectory = []
    for _ in range(trials):
        [item] = scheduler.assign("bench", 1)
        accuracy = table.observe(list(item.architecture), seed)["val_acc"]
        scheduler.complete(item.lease, {"val_acc": accuracy}, {})
        scheduler.take()
        trajectory.append((item.key, accuracy))
    return trajectory


def tpe_trajectory(dataset: str, seed: int, trials: int) -> list[tuple[str, float]]:
    """The same, for Optuna's TPE sampler (its defaults) on the same observations."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    table = load_table(dataset)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    trajectory = []
    for _ in range(trials):
        trial = study.ask()
        architecture = [trial.suggest_categorical(edge, list(OPS)) for edge in EDGES]
        accuracy = table.observe(architecture, seed)["val_acc"]
        study.tell(trial, accuracy)
        trajectory.append(("|".join(architecture), accuracy))
    return trajectory


def run_job(job: tuple[str, str, int, int]) -> tuple[str, str, list[tuple[str, float]], float]:
    dataset, algorithm, seed, trials = job
    started = time.perf_counter()
    if algorithm == "tpe":
        trajectory = tpe_trajectory(dataset, seed, trials)
    else:
        trajectory = lineage_trajectory(dataset, algorithm, seed, trials)
    return dataset, algorithm, trajectory, time.perf_counter() - started


def summarize(trajectory: list[tuple[str, float]], means: dict[str, float], threshold: float,
              best: float) -> dict:
    hit = next((i + 1 for i, (key, _) in enumerate(trajectory) if means[key] >= threshold), None)
    regret = {}
    incumbent, observed = None, -np.inf
    for i, (key, accuracy) in enumerate(trajectory, start=1):
        if accuracy > observed:
            incumbent, observed = key, accuracy
        if i in CHECKPOINTS:
            regret[i] = best - means[incumbent]
    return {"hit": hit, "regret": regret}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=500, help="seeds per dataset and algorithm (default 500)")
    parser.add_argument("--trials", type=int, default=300, help="trials per search (default 300)")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--algorithms", nargs="+", default=list(ALGORITHMS), choices=ALGORITHMS)
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="processes (default: all cores)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "nb201_search.json")
    args = parser.parse_args()

    jobs = [(d, a, s, args.trials) for d in args.datasets for a in args.algorithms for s in range(args.seeds)]
    tables = {d: load_table(d).mean_accuracies() for d in args.datasets}
    thresholds = {d: float(np.percentile(list(m.values()), 99)) for d, m in tables.items()}
    results: dict = {d: {a: {"hits": [], "regret": {c: [] for c in CHECKPOINTS}, "seconds": []}
                         for a in args.algorithms} for d in args.datasets}
    started = time.perf_counter()
    with multiprocessing.Pool(args.workers) as pool:
        for n, (dataset, algorithm, trajectory, seconds) in enumerate(
                pool.imap_unordered(run_job, jobs, chunksize=4), start=1):
            means = tables[dataset]
            summary = summarize(trajectory, means, thresholds[dataset], max(means.values()))
            cell = results[dataset][algorithm]
            cell["hits"].append(summary["hit"])
            cell["seconds"].append(seconds)
            for checkpoint, value in summary["regret"].items():
                cell["regret"][checkpoint].append(value)
            if n % 100 == 0 or n == len(jobs):
                print(f"  {n}/{len(jobs)} searches done ({time.perf_counter() - started:.0f}s)", file=sys.stderr,
                      flush=True)

    report = {"trials": args.trials, "seeds": args.seeds, "machine": platform.machine(),
              "cpus": os.cpu_count(), "seconds": time.perf_counter() - started, "datasets": {}}
    for dataset in args.datasets:
        print(f"\nNAS-Bench-201 {dataset}: top 1% = mean validation accuracy >= {thresholds[dataset]:.2f} "
              f"({args.seeds} seeds x {args.trials} trials)")
        print(f"{'algorithm':<10} {'median trials':>13} {'success':>8} "
              + " ".join(f"{'regret@' + str(c):>10}" for c in CHECKPOINTS if c <= args.trials) + f" {'s/search':>9}")
        rows = {}
        for algorithm in args.algorithms:
            cell = results[dataset][algorithm]
            hits = [h if h is not None else float("inf") for h in cell["hits"]]
            row = {
                "median_trials_to_top1": statistics.median(hits),
                "success_rate": sum(h is not None for h in cell["hits"]) / len(hits),
                "mean_regret": {str(c): float(np.mean(v)) for c, v in cell["regret"].items() if v},
                "seconds_per_search": float(np.mean(cell["seconds"])),
            }
            rows[algorithm] = row
            regrets = " ".join(f"{row['mean_regret'][str(c)]:>10.3f}" for c in CHECKPOINTS if c <= args.trials)
            print(f"{algorithm:<10} {row['median_trials_to_top1']:>13.1f} {row['success_rate']:>8.1%} {regrets} "
                  f"{row['seconds_per_search']:>9.2f}")
        entry = {"threshold": thresholds[dataset], "algorithms": rows}
        if "beam" in rows and "tpe" in rows:
            ratio = rows["beam"]["median_trials_to_top1"] / rows["tpe"]["median_trials_to_top1"]
            entry["beam_over_tpe"] = ratio
            print(f"beam / TPE median trials: {ratio:.2f} (target <= {TARGET}: "
                  f"{'met' if ratio <= TARGET else 'NOT met'})")
        report["datasets"][dataset] = entry
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
