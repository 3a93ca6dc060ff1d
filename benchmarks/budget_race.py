"""Systems racing for the best model in a fixed wall-clock budget on this machine: Lineage beside Optuna and KerasTuner.

A :class:`Race` names a Lineage example config; every system searches that config's space (the same
blocks and hyperparameter choices) and trains candidates with the same Keras training
(``trainers.keras_trainer``: the same epochs, early stopping, data and split), using this machine's
2 cores for ``--minutes`` each:

- ``beam``, ``random``: ``engine run`` with 2 local trainer processes (``--minutes`` budget);
- ``beam-cost``: beam ranking candidates by expected improvement per second (``search.beam.cost = 1``; the
  other Lineage systems set it to 0);
- ``beam-asha``, ``beam-median``, ``beam-asha-promote``: beam with ``search.stopping`` set to that rule;
- ``budget``: beam on the race's small config, where it has one;
- ``example``: the race's config as it ships (its own searcher, stopping rule and cost; none of the above);
- ``tpe``: Optuna's TPESampler with 2 worker processes sharing a JournalStorage;
- ``tpe-hyperband``: the same with Optuna's ``HyperbandPruner`` fed each epoch's validation accuracy;
- ``kerastuner``: KerasTuner's BayesianOptimization in one process with 2 TensorFlow threads;
- ``kerastuner-hyperband``: KerasTuner's ``Hyperband`` (factor 3 over the same epochs), likewise.

Time runs from each system's launch (so imports and data loading count) and only results completed
within the budget count. For each run: best validation accuracy over time and over trials, the time
and the number of trials to the race's target validation accuracy, and the model each system would
hand back at each moment (its best by validation accuracy, for Lineage its best ensemble once a config with
``ensemble.strategy`` has one, as ``engine export`` writes it; Lineage breaks ties on accuracy by
validation loss, ``search.tie_break``, and caps a stopped trial below those that beat it at its
stop epoch; Optuna and KerasTuner keep the first) with its test accuracy: ``test_curve``, from which
the report takes the test accuracy at each quarter of the budget. For Lineage runs, the share of each
trainer's time spent in ``model.fit``, trials stopped by the rule and epochs per trial.

Each ``*_search.py`` runs it on its data. The peers' runners are in ``peers.py``; what a race is and how a
run's figures are summarised, in ``race.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Hashable
from pathlib import Path
from typing import Any

from peers import kerastuner, optuna_tpe
from race import QUARTERS, ROOT, Race, handed_back, summarize
from run_towers import towers
from within_trials import TRIAL_LIMIT, best_tower, first_trials

from engine import events as ev
from engine.fold import fold
from engine.log import EventLog
from engine.state import Kind, State

__all__ = ["ROOT", "Race", "main"]  # what each *_search.py uses

#: Each Lineage system: the settings it gives ``engine run`` over the race's config.
LINEAGE_DEFAULTS = {"search.algorithm": "beam", "search.stopping": "none", "search.beam.cost": "0"}
LINEAGE = {"beam": {}, "beam-cost": {"search.beam.cost": "1"}, "beam-asha": {"search.stopping": "asha"},
           "beam-median": {"search.stopping": "median"}, "beam-asha-promote": {"search.stopping": "asha-promote"},
           "random": {"search.algorithm": "random"}, "budget": {}, "example": {}}
SYSTEMS = (*LINEAGE, "tpe", "tpe-hyperband", "kerastuner", "kerastuner-hyperband")


# -- Lineage ---------------------------------------------------------------------------------------


def lineage(race: Race, name: str, seed: int, minutes: float, workdir: Path,
            overrides: list[str], small_params: int = 0) -> dict[str, Any]:
    from trainers.export import evaluate_model, export_model

    run = workdir / f"{name}-{seed}"
    settings = ["--set", f"search.seed={seed}", "--set", "search.trials=100000"]
    defaults = {} if name == "example" else LINEAGE_DEFAULTS
    chosen = [f"{key}={value}" for key, value in (defaults | LINEAGE[name]).items()] + overrides
    settings += [item for setting in chosen for item in ("--set", setting)]
    config = race.small_config if name == "budget" else race.config
    launched = time.time()
    subprocess.run([sys.executable, "-m", "engine", "run", "--run", str(run), "--config", str(config), *settings,
                    "--minutes", str(minutes), "--trainers", "2", "--quiet"], check=True, stdout=subprocess.DEVNULL,
                   cwd=ROOT)
    with EventLog.open_reader(run) as log:
        events = list(log.read())
    trainer_of = {e.seq: e.payload["trainer"] for e in events if e.type == ev.TRIAL_ASSIGNED}
    results, ensembles, spans, leaders, state = [], [], {}, [], State()
    for event in events:
        fold(state, event)  # the fold's leaderboard after each result is what Lineage would hand back then
        if event.type == ev.TRIAL_ASSIGNED:
            spans.setdefault(event.payload["trainer"], [event.at, event.at, 0.0])
        if event.type == ev.TRIAL_COMPLETED:
            metrics, trial = event.payload["metrics"], state.trials[event.payload["trial"]]
            if trial.kind == Kind.ENSEMBLE:  # combined from recorded outputs: no training, no new candidate
                members = trial.architecture["members"]
                ensembles.append({"ended": event.at, "val_accuracy": metrics["val_accuracy"], "trial": trial.id,
                                  "params": sum(state.trials[m].metrics["params"] for m in members)})
            else:
                results.append({"ended": event.at, "val_accuracy": metrics["val_accuracy"],
                                "params": metrics["params"], "trial": trial.id, "candidate": trial.id})
                span = spans[trainer_of[event.payload["lease"]]]
                span[1] = event.at
                span[2] += metrics["train_seconds"]
            leader = state.best_model()  # what `engine export` writes: the best ensemble once there is one
            if leader is not None and event.at - launched <= 60 * minutes:
                leaders.append((event.at - launched, leader.id))
    efficiency = {trainer: fit / (end - start) for trainer, (start, end, fit) in spans.items() if end > start}
    within = [r for r in results if r["ended"] - launched <= 60 * minutes]

    def test_of(trial: Hashable) -> float:
        export_model(run, workdir / f"{name}-{seed}-model-{trial}", trial=int(trial))
        return evaluate_model(workdir / f"{name}-{seed}-model-{trial}")["accuracy"]

    test_curve = handed_back(leaders, test_of)
    chosen = next(r for r in reversed(within + ensembles) if r["trial"] == test_curve[-1]["model"]) \
        if test_curve else None
    failed = sum(e.type == ev.TRIAL_FAILED for e in events)
    until, finished = first_trials(events, launched)
    within_limit = {"trials": finished, "minutes": until / 60,
                    "best": best_tower(results, launched, until, test_of=test_of),
                    "small": best_tower(results, launched, until, small_params, test_of) if small_params else None}
    stops = [e.payload["rule"] for e in events if e.type == ev.TRIAL_STOPPED]
    extra = {"trainer_fit_share": efficiency, "failed": failed, "finished": state.finished,
             "stopped": {rule: stops.count(rule) for rule in sorted(set(stops))},
             "promotions": state.promotions, f"first_{TRIAL_LIMIT}_trials": within_limit,
             "epochs_per_trial": sum(len(e.payload["epochs"]) for e in events if e.type == ev.EPOCHS_REPORTED)
             / max(1, len({r["candidate"] for r in results})),
             "towers": towers(state)}
    return summarize(race, name, seed, launched, minutes, results, test_curve, extra, chosen=chosen)


# -- report ----------------------------------------------------------------------------------------


def median(values: list) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def main(race: Race) -> int:
    parser = argparse.ArgumentParser(description=sys.modules["__main__"].__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    systems = [s for s in SYSTEMS if s != "budget" or race.small_config is not None]
    parser.add_argument("--systems", nargs="+", default=[s for s in systems if s != "example"], choices=systems)
    parser.add_argument("--seeds", nargs="+", type=int, default=list(race.seeds))
    parser.add_argument("--minutes", type=float, default=race.minutes,
                        help=f"wall-clock budget per run (default {race.minutes:g})")
    parser.add_argument("--out", type=Path, default=race.out)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override for every Lineage system (after the system's own), repeatable")
    parser.add_argument("--small-params", type=int, default=0, metavar="N",
                        help=f"also report each Lineage run's most accurate tower with at most N parameters among "
                             f"its first {TRIAL_LIMIT} trials (the Pareto front's pick for a small-model target)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the runs' folders (logs, checkpoints, exported models) for analysis; by default "
                             "they are removed once the figures are written (every tower is in the JSON)")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix=f"lineage-{race.name}-"))
    try:
        return _race(race, args, workdir)
    finally:
        if args.keep:
            print(f"kept the runs' folders in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def _race(race: Race, args: argparse.Namespace, workdir: Path) -> int:
    """Runs every system on every seed in ``workdir``, writes ``args.out`` after each run and prints the table."""
    runs = []
    for seed in args.seeds:
        for system in args.systems:
            print(f"{system}, seed {seed}, {args.minutes:g} minutes ...", file=sys.stderr, flush=True)
            if system in LINEAGE:
                runs.append(lineage(race, system, seed, args.minutes, workdir, args.overrides, args.small_params))
            elif system.startswith("tpe"):
                runs.append(optuna_tpe(race, seed, args.minutes, workdir, hyperband=system == "tpe-hyperband"))
            else:
                runs.append(kerastuner(race, seed, args.minutes, workdir, hyperband=system == "kerastuner-hyperband"))
            last = runs[-1]
            limited = last.get(f"first_{TRIAL_LIMIT}_trials")
            if limited:
                print(f"  first {limited['trials']} trials ({limited['minutes']:.1f} min): best {limited['best']}, "
                      f"small {limited['small']}", file=sys.stderr, flush=True)
            print(f"  {last['trials']} trials, best val {last['best_val_accuracy']}, "
                  f"test {last['best_test_accuracy']} (at half time {last['test_at_0.5']}), "
                  f"{race.target_validation:.0%} val after {last['seconds_to_target']} s / "
                  f"{last['trials_to_target']} trials", file=sys.stderr, flush=True)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            kept = {"workdir": str(workdir)} if args.keep else {}  # removed at the end otherwise
            args.out.write_text(json.dumps({"minutes": args.minutes, "overrides": args.overrides, "runs": runs,
                                            **kept}, indent=2))

    print(f"\n{race.name}, {args.minutes:g} minutes per run on {os.cpu_count()} cores, seeds {args.seeds} (medians; "
          f"test accuracy of the model each system would hand back at each quarter of the budget)")
    quarters = [f"test_at_{q:g}" for q in QUARTERS]
    print(f"{'system':<20} {'trials':>6} {'best val':>9} " + " ".join(f"{'test@' + f'{q:g}':>9}" for q in QUARTERS)
          + f" {'params':>8} {'s to target':>11}")
    table = {}
    for system in args.systems:
        rows = [r for r in runs if r["system"] == system]
        row = {key: median([r[key] for r in rows]) for key in
               ("trials", "best_val_accuracy", *quarters, "best_test_accuracy", "best_params", "seconds_to_target",
                "trials_to_target")}
        table[system] = row

        def show(value: float | None, form: str) -> str:
            return format(value, form) if value is not None else "-".rjust(int(form.split(".")[0]))

        print(f"{system:<20} {show(row['trials'], '6.0f')} {show(row['best_val_accuracy'], '9.4f')} "
              + " ".join(show(row[q], "9.4f") for q in quarters)
              + f" {show(row['best_params'], '8.0f')} {show(row['seconds_to_target'], '11.0f')}")
    shares = [share for r in runs for share in r.get("trainer_fit_share", {}).values()]
    if shares:
        print(f"Lineage trainers spent a median {statistics.median(shares):.1%} of their time in model.fit "
              f"(min {min(shares):.1%})")
    args.out.write_text(json.dumps({"minutes": args.minutes, "overrides": args.overrides, "runs": runs,
                                    "table": table}, indent=2))
    print(f"wrote {args.out}")
    return 0
