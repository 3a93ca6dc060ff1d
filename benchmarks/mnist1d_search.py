"""MNIST-1D in a fixed wall-clock budget: Lineage beside Optuna's TPE and KerasTuner, on this machine.

Every system searches the space of ``examples/mnist1d.toml`` (the same blocks and hyperparameter
choices) and trains candidates with the same Keras training (``trainers.keras_trainer``: the same
epochs, early stopping, data and split), using this machine's 2 cores for ``--minutes`` each:

- ``beam``, ``random``: ``engine run`` with 2 local trainer processes (``--minutes`` budget);
- ``beam-asha``, ``beam-median``: beam with ``search.stopping`` set to that rule;
- ``budget``: beam on ``examples/mnist1d_small.toml`` (``space.max_params = 5200``, the size of the MNIST-1D
  paper's CNN, with blocks that make small networks);
- ``tpe``: Optuna's TPESampler with 2 worker processes sharing a JournalStorage;
- ``tpe-hyperband``: the same with Optuna's ``HyperbandPruner`` fed each epoch's validation accuracy;
- ``kerastuner``: KerasTuner's BayesianOptimization in one process with 2 TensorFlow threads;
- ``kerastuner-hyperband``: KerasTuner's ``Hyperband`` (factor 3 over the same epochs), likewise.

Time runs from each system's launch (so imports and data loading count) and only results completed
within the budget count. For each run: best validation accuracy over time and over trials, the time
and the number of trials to the first 90% validation accuracy, and the test accuracy of the model
each system hands back when the budget ends: its best by validation accuracy (Lineage breaks ties
on accuracy by validation loss, ``search.tie_break``; Optuna and KerasTuner keep the first). For
Lineage runs, the share of each trainer's time spent in ``model.fit``.

Usage::

    python benchmarks/mnist1d_search.py                                   # all systems, 3 seeds (long)
    python benchmarks/mnist1d_search.py --systems beam random --seeds 0 --minutes 3

Prints a table and writes ``benchmarks/results/mnist1d_search.json``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from queue import Empty
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from engine import events as ev  # noqa: E402
from engine.config import apply_overrides, load_config, resolve_config  # noqa: E402
from engine.log import EventLog  # noqa: E402
from engine.state import Artifact, Kind  # noqa: E402
from engine.work import WorkItem  # noqa: E402

CONFIG = ROOT / "examples" / "mnist1d.toml"
SMALL_CONFIG = ROOT / "examples" / "mnist1d_small.toml"  # space.max_params = 5200, the paper CNN's size
TARGET_VALIDATION = 0.90
SYSTEMS = ("beam", "beam-asha", "beam-median", "random", "budget", "tpe", "tpe-hyperband", "kerastuner",
           "kerastuner-hyperband")
LINEAGE = ("beam", "beam-asha", "beam-median", "random", "budget")


def search_config(**overrides: Any) -> dict[str, Any]:
    return resolve_config(apply_overrides(load_config(CONFIG), overrides))


def repair(tower: list[str]) -> list[str]:
    """Baselines draw blocks freely; put order-keeping blocks before the others so every draw builds."""
    from blocks import lookup

    return [b for b in tower if lookup(b).keeps_order] + [b for b in tower if not lookup(b).keeps_order]


def test_accuracy(config: dict[str, Any], architecture: list[str], hyperparameters: dict, weights: bytes) -> float:
    import numpy as np

    from blocks.tower import build_tower
    from trainers.datasets import load_dataset
    from trainers.keras_trainer import load_weights

    data = load_dataset(config.data)
    tower = build_tower(architecture, hyperparameters, data.spec)
    load_weights(tower, weights)
    predictions = tower.predict(data.features["test"], batch_size=1024, verbose=0)
    return float(np.mean(predictions.argmax(1) == data.targets["test"]))


def summarize(name: str, seed: int, launched: float, minutes: float, results: list[dict[str, Any]],
              best_test: float | None, extra: dict[str, Any] | None = None,
              chosen: dict[str, Any] | None = None) -> dict[str, Any]:
    """Results (``ended`` wall time, ``val_accuracy``, ``params``) within the budget -> the figures;
    ``chosen`` is the result the system hands back (default: the first with the best validation accuracy)."""
    within = sorted((r for r in results if r["ended"] - launched <= 60 * minutes), key=lambda r: r["ended"])
    curve, best = [], 0.0
    for index, result in enumerate(within, start=1):
        best = max(best, result["val_accuracy"])
        curve.append({"trial": index, "seconds": result["ended"] - launched, "best_val_accuracy": best})
    reached = next((point for point in curve if point["best_val_accuracy"] >= TARGET_VALIDATION), None)
    top = chosen or max(within, key=lambda r: r["val_accuracy"], default=None)
    return {
        "system": name, "seed": seed, "trials": len(within), "curve": curve,
        "best_val_accuracy": top["val_accuracy"] if top else None,
        "best_params": top["params"] if top else None, "best_test_accuracy": best_test,
        "seconds_to_90": reached["seconds"] if reached else None, "trials_to_90": reached["trial"] if reached else None,
        **(extra or {}),
    }


# -- Lineage ---------------------------------------------------------------------------------------


def lineage(name: str, seed: int, minutes: float, workdir: Path) -> dict[str, Any]:
    from engine.runs import state_at
    from trainers.export import evaluate_model, export_model

    run = workdir / f"{name}-{seed}"
    settings = ["--set", f"search.seed={seed}", "--set", "search.trials=100000"]
    settings += ["--set", "search.algorithm=" + ("random" if name == "random" else "beam")]
    if name.startswith("beam-"):  # the same search with a stopping rule (search.stopping)
        settings += ["--set", f"search.stopping={name.removeprefix('beam-')}"]
    config = SMALL_CONFIG if name == "budget" else CONFIG
    launched = time.time()
    subprocess.run([sys.executable, "-m", "engine", "run", "--run", str(run), "--config", str(config), *settings,
                    "--minutes", str(minutes), "--trainers", "2", "--quiet"], check=True, stdout=subprocess.DEVNULL,
                   cwd=ROOT)
    with EventLog.open_reader(run) as log:
        events = list(log.read())
    trainer_of = {e.seq: e.payload["trainer"] for e in events if e.type == ev.TRIAL_ASSIGNED}
    results, spans = [], {}
    for event in events:
        if event.type == ev.TRIAL_ASSIGNED:
            spans.setdefault(event.payload["trainer"], [event.at, event.at, 0.0])
        if event.type == ev.TRIAL_COMPLETED:
            metrics = event.payload["metrics"]
            results.append({"ended": event.at, "val_accuracy": metrics["val_accuracy"], "params": metrics["params"],
                            "trial": event.payload["trial"], "seq": event.seq})
            span = spans[trainer_of[event.payload["lease"]]]
            span[1] = event.at
            span[2] += metrics["train_seconds"]
    efficiency = {trainer: fit / (end - start) for trainer, (start, end, fit) in spans.items() if end > start}
    within = [r for r in results if r["ended"] - launched <= 60 * minutes]
    best_test = best = None
    if within:
        # Lineage's best when the budget ended: the fold's leaderboard after the last result in time.
        handed_back = state_at(run, max(r["seq"] for r in within)).best_trial()
        best = next(r for r in within if r["trial"] == handed_back.id)
        export_model(run, workdir / f"{name}-{seed}-model", trial=best["trial"])
        best_test = evaluate_model(workdir / f"{name}-{seed}-model")["accuracy"]
    failed = sum(e.type == ev.TRIAL_FAILED for e in events)
    stops = [e.payload["rule"] for e in events if e.type == ev.TRIAL_STOPPED]
    extra = {"trainer_fit_share": efficiency, "failed": failed, "finished": state_at(run).finished,
             "stopped": {rule: stops.count(rule) for rule in sorted(set(stops))},
             "epochs_per_trial": sum(e.payload["metrics"].get("epochs", 0) for e in events
                                     if e.type == ev.TRIAL_COMPLETED) / max(1, len(results))}
    return summarize(name, seed, launched, minutes, results, best_test, extra, chosen=best)


# -- Optuna TPE ------------------------------------------------------------------------------------


def _tpe_worker(storage_path: str, seed: int, worker: int, deadline: float, folder: str, hyperband: bool) -> None:
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    from trainers.evaluator import EvaluationError
    from trainers.keras_trainer import KerasEvaluator

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    config = search_config(**{"training.threads": 1})
    evaluator = KerasEvaluator(config)
    space = config.space
    storage = JournalStorage(JournalFileBackend(storage_path))
    # Hyperband's brackets over the same epochs (Optuna's HyperbandPruner: min_resource 1, reduction factor 3).
    pruner = optuna.pruners.HyperbandPruner(min_resource=1, max_resource=config.training.epochs, reduction_factor=3) \
        if hyperband else optuna.pruners.NopPruner()
    study = optuna.load_study(study_name="mnist1d", storage=storage, pruner=pruner,
                              sampler=optuna.samplers.TPESampler(seed=seed * 100 + worker))

    def objective(trial: optuna.Trial) -> float:
        depth = trial.suggest_int("depth", space.min_depth, space.max_depth)
        tower = repair([trial.suggest_categorical(f"block_{i}", list(space.blocks)) for i in range(depth)])
        hp = {key: trial.suggest_categorical(key, list(values)) for key, values in space.hparams.choices().items()}
        work = WorkItem(lease=trial.number, trial=trial.number, key=" ".join(tower), kind=Kind.TOWER,
                        architecture=tuple(tower), hyperparameters=hp, seed=seed * 1000 + trial.number)
        pruned = []

        def report(epoch: Any) -> bool:  # each epoch's validation accuracy goes to the pruner, which may stop it
            trial.report(epoch.metrics["val_accuracy"], epoch.epoch)
            if trial.should_prune():
                pruned.append(epoch.epoch)
            return not pruned

        try:
            outcome = evaluator.evaluate(work, fetch=None, report=report)
        except EvaluationError as exc:
            raise optuna.TrialPruned(str(exc)) from None
        if pruned:
            raise optuna.TrialPruned(f"pruned after epoch {pruned[0]}")
        Path(folder, f"{trial.number}.weights.h5").write_bytes(outcome.artifacts[Artifact.WEIGHTS])
        trial.set_user_attr("ended", time.time())
        trial.set_user_attr("params", outcome.metrics["params"])
        trial.set_user_attr("architecture", tower)
        return outcome.metrics["val_accuracy"]

    study.optimize(objective, timeout=max(deadline - time.time(), 0))


def optuna_tpe(seed: int, minutes: float, workdir: Path, hyperband: bool = False) -> dict[str, Any]:
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    name = "tpe-hyperband" if hyperband else "tpe"
    folder = workdir / f"{name}-{seed}"
    folder.mkdir()
    path = str(folder / "journal.log")
    optuna.create_study(study_name="mnist1d", direction="maximize", storage=JournalStorage(JournalFileBackend(path)))
    launched = time.time()
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_tpe_worker,
                               args=(path, seed, w, launched + 60 * minutes, str(folder), hyperband))
               for w in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    study = optuna.load_study(study_name="mnist1d", storage=JournalStorage(JournalFileBackend(path)))
    done = [t for t in study.trials if t.value is not None and "ended" in t.user_attrs]
    results = [{"ended": t.user_attrs["ended"], "val_accuracy": t.value, "params": t.user_attrs["params"],
                "trial": t.number} for t in done]
    within = [t for t in done if t.user_attrs["ended"] - launched <= 60 * minutes]
    best_test = None
    if within:
        best = max(within, key=lambda t: t.value)
        hp = {k: v for k, v in best.params.items() if k in search_config().space.hparams.choices()}
        best_test = test_accuracy(search_config(), best.user_attrs["architecture"], hp,
                                  (folder / f"{best.number}.weights.h5").read_bytes())
    pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials)
    return summarize(name, seed, launched, minutes, results, best_test, {"failed": pruned})


# -- KerasTuner ------------------------------------------------------------------------------------


def _kerastuner_worker(seed: int, deadline: float, folder: str, queue: Any, hyperband: bool) -> None:
    import keras
    import keras_tuner as kt

    from blocks.tower import build_tower
    from trainers.keras_trainer import KerasEvaluator, compile_tower, weights_bytes

    config = search_config(**{"training.threads": 2})
    evaluator = KerasEvaluator(config)  # the same threads, data and split as the other systems
    data, space, training = evaluator.data, config.space, config.training
    results: list[dict[str, Any]] = []

    class Towers(kt.HyperModel):
        def build(self, hp: kt.HyperParameters) -> Any:
            depth = hp.Int("depth", space.min_depth, space.max_depth)
            tower = repair([hp.Choice(f"block_{i}", list(space.blocks)) for i in range(depth)])
            chosen = {key: hp.Choice(key, list(values)) for key, values in space.hparams.choices().items()}
            model = build_tower(tower, chosen, data.spec)
            compile_tower(model, chosen, data.task)
            self.chosen = (tower, chosen)  # not on the model: Keras would wrap it in tracked containers
            return model

        def fit(self, hp: kt.HyperParameters, model: Any, *args: Any, **kwargs: Any) -> Any:
            stop = keras.callbacks.EarlyStopping(monitor="val_accuracy", mode="max", patience=training.patience,
                                                 restore_best_weights=True)
            # Hyperband sets the epochs of each bracket (and where a promoted model resumes) and saves checkpoints
            # through its own callbacks.
            model.fit(data.features["train"], data.targets["train"], epochs=kwargs.get("epochs", training.epochs),
                      initial_epoch=kwargs.get("initial_epoch", 0), batch_size=hp.get("batch_size"), verbose=0,
                      callbacks=[stop, *kwargs.get("callbacks", [])],
                      validation_data=(data.features["validation"], data.targets["validation"]))
            score = model.evaluate(data.features["validation"], data.targets["validation"], verbose=0,
                                   return_dict=True)["accuracy"]
            tower, chosen = self.chosen
            results.append({"ended": time.time(), "val_accuracy": score, "params": model.count_params(),
                            "architecture": tower, "hyperparameters": chosen, "weights": weights_bytes(model)})
            return {"val_accuracy": score}

    class Timed(kt.oracles.BayesianOptimizationOracle):
        def populate_space(self, trial_id: str) -> dict[str, Any]:
            if time.time() >= deadline:
                return {"status": kt.engine.trial.TrialStatus.STOPPED, "values": None}
            return super().populate_space(trial_id)

    if hyperband:
        tuner = kt.Hyperband(Towers(), objective=kt.Objective("val_accuracy", "max"), max_epochs=training.epochs,
                             factor=3, hyperband_iterations=1000, seed=seed, directory=folder, project_name="mnist1d",
                             overwrite=True, max_consecutive_failed_trials=1000)
        untimed = tuner.oracle.populate_space

        def populate_space(trial_id: str) -> dict[str, Any]:
            if time.time() >= deadline:
                return {"status": kt.engine.trial.TrialStatus.STOPPED, "values": None}
            return untimed(trial_id)

        tuner.oracle.populate_space = populate_space
    else:
        oracle = Timed(objective=kt.Objective("val_accuracy", "max"), max_trials=100000, seed=seed,
                       max_consecutive_failed_trials=1000)
        tuner = kt.Tuner(oracle=oracle, hypermodel=Towers(), directory=folder, project_name="mnist1d",
                         overwrite=True)
    tuner.search(verbose=0)
    within = [r for r in results if r["ended"] <= deadline]
    best_test = None
    if within:
        best = max(within, key=lambda r: r["val_accuracy"])
        best_test = test_accuracy(config, best["architecture"], best["hyperparameters"], best["weights"])
    queue.put(([{k: v for k, v in r.items() if k != "weights"} for r in results], best_test))


def kerastuner(seed: int, minutes: float, workdir: Path, hyperband: bool = False) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    launched = time.time()
    worker = context.Process(target=_kerastuner_worker,
                             args=(seed, launched + 60 * minutes, str(workdir / f"kt-{seed}-{hyperband}"), queue,
                                   hyperband))
    worker.start()
    while True:  # a worker that dies without a result must not leave us waiting forever
        try:
            results, best_test = queue.get(timeout=5)
            break
        except Empty:
            if not worker.is_alive():
                raise RuntimeError(f"the KerasTuner worker died (exit code {worker.exitcode})") from None
    worker.join()
    return summarize("kerastuner-hyperband" if hyperband else "kerastuner", seed, launched, minutes, results,
                     best_test)


# -- report ----------------------------------------------------------------------------------------


def median(values: list) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=SYSTEMS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--minutes", type=float, default=8.0, help="wall-clock budget per run (default 8)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "mnist1d_search.json")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="lineage-mnist1d-"))
    runs = []
    for seed in args.seeds:
        for system in args.systems:
            print(f"{system}, seed {seed}, {args.minutes:g} minutes ...", file=sys.stderr, flush=True)
            if system in LINEAGE:
                runs.append(lineage(system, seed, args.minutes, workdir))
            elif system.startswith("tpe"):
                runs.append(optuna_tpe(seed, args.minutes, workdir, hyperband=system == "tpe-hyperband"))
            else:
                runs.append(kerastuner(seed, args.minutes, workdir, hyperband=system == "kerastuner-hyperband"))
            last = runs[-1]
            print(f"  {last['trials']} trials, best val {last['best_val_accuracy']}, "
                  f"test {last['best_test_accuracy']}, 90% val after {last['seconds_to_90']} s / "
                  f"{last['trials_to_90']} trials", file=sys.stderr, flush=True)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps({"minutes": args.minutes, "runs": runs, "workdir": str(workdir)}, indent=2))

    print(f"\nMNIST-1D, {args.minutes:g} minutes per run on {os.cpu_count()} cores, seeds {args.seeds} (medians)")
    print(f"{'system':<20} {'trials':>6} {'best val':>9} {'test':>7} {'params':>8} {'s to 90%':>9} "
          f"{'trials to 90%':>14}")
    table = {}
    for system in args.systems:
        rows = [r for r in runs if r["system"] == system]
        row = {key: median([r[key] for r in rows]) for key in
               ("trials", "best_val_accuracy", "best_test_accuracy", "best_params", "seconds_to_90", "trials_to_90")}
        table[system] = row

        def show(value: float | None, form: str) -> str:
            return format(value, form) if value is not None else "-"

        print(f"{system:<20} {show(row['trials'], '6.0f')} {show(row['best_val_accuracy'], '9.4f')} "
              f"{show(row['best_test_accuracy'], '7.4f')} {show(row['best_params'], '8.0f')} "
              f"{show(row['seconds_to_90'], '9.0f')} {show(row['trials_to_90'], '14.0f')}")
    shares = [share for r in runs for share in r.get("trainer_fit_share", {}).values()]
    if shares:
        print(f"Lineage trainers spent a median {statistics.median(shares):.1%} of their time in model.fit "
              f"(min {min(shares):.1%})")
    args.out.write_text(json.dumps({"minutes": args.minutes, "runs": runs, "table": table}, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
