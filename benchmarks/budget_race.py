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

``mnist1d_search.py`` and ``fashion_mnist_search.py`` run it on their data.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path
from queue import Empty
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from run_towers import towers  # noqa: E402
from within_trials import TRIAL_LIMIT, best_tower, first_trials  # noqa: E402

from engine import events as ev  # noqa: E402
from engine.config import Config, apply_overrides, load_config, resolve_config  # noqa: E402
from engine.fold import fold  # noqa: E402
from engine.log import EventLog  # noqa: E402
from engine.state import Artifact, Kind, State  # noqa: E402
from engine.work import WorkItem  # noqa: E402

#: Each Lineage system: the settings it gives ``engine run`` over the race's config.
LINEAGE_DEFAULTS = {"search.algorithm": "beam", "search.stopping": "none", "search.beam.cost": "0"}
LINEAGE = {"beam": {}, "beam-cost": {"search.beam.cost": "1"}, "beam-asha": {"search.stopping": "asha"},
           "beam-median": {"search.stopping": "median"}, "beam-asha-promote": {"search.stopping": "asha-promote"},
           "random": {"search.algorithm": "random"}, "budget": {}, "example": {}}
SYSTEMS = (*LINEAGE, "tpe", "tpe-hyperband", "kerastuner", "kerastuner-hyperband")
QUARTERS = (0.25, 0.5, 0.75, 1.0)


@dataclass(frozen=True)
class Race:
    """What a race searches: ``config`` (an example config), its defaults and where it writes."""

    name: str
    config: Path
    minutes: float
    seeds: tuple[int, ...]
    target_validation: float  # the validation accuracy whose first arrival is timed
    small_config: Path | None = None  # the ``budget`` system's config

    @property
    def out(self) -> Path:
        return Path(__file__).parent / "results" / f"{self.name}_search.json"


def search_config(path: Path | str, **overrides: Any) -> Config:
    return resolve_config(apply_overrides(load_config(path), overrides))


def repair(tower: list[str]) -> list[str]:
    """Baselines draw blocks freely; keep one embedding (the first drawn) and put it first, then order-keeping
    blocks before the others, so every draw builds."""
    from blocks import lookup

    embeddings = [b for b in tower if lookup(b).family == "embedding"][:1]
    rest = [b for b in tower if lookup(b).family != "embedding"]
    return embeddings + [b for b in rest if lookup(b).keeps_order] + [b for b in rest if not lookup(b).keeps_order]


def test_accuracy(config: Config, architecture: list[str], hyperparameters: dict, weights: bytes) -> float:
    import numpy as np

    from blocks.tower import build_tower
    from trainers.datasets import load_dataset
    from trainers.keras_trainer import load_weights

    data = load_dataset(config.data)
    tower = build_tower(architecture, hyperparameters, data.spec, head=config.space.head)
    load_weights(tower, weights)
    predictions = tower.predict(data.features["test"], batch_size=1024, verbose=0)
    return float(np.mean(predictions.argmax(1) == data.targets["test"]))


def handed_back(leaders: list[tuple[float, Hashable]], test_of: Callable[[Hashable], float]) -> list[dict[str, Any]]:
    """(seconds, the model a system would hand back then) in time order -> when each new one took over and
    its test accuracy: the system's best-so-far test accuracy over time."""
    curve: list[dict[str, Any]] = []
    for seconds, leader in leaders:
        if not curve or curve[-1]["model"] != leader:
            curve.append({"seconds": seconds, "model": leader, "test_accuracy": test_of(leader)})
    return curve


def first_best(results: list[dict[str, Any]], launched: float, key: str) -> list[tuple[float, Hashable]]:
    """The leader after each result (in time order) of a system that keeps the first best validation accuracy."""
    leaders, best = [], None
    for result in sorted(results, key=lambda r: r["ended"]):
        if best is None or result["val_accuracy"] > best["val_accuracy"]:
            best = result
        leaders.append((result["ended"] - launched, best[key]))
    return leaders


def test_at(curve: list[dict[str, Any]], seconds: float) -> float | None:
    """The test accuracy of the model handed back ``seconds`` into the run (None before the first)."""
    held = [point["test_accuracy"] for point in curve if point["seconds"] <= seconds]
    return held[-1] if held else None


def summarize(race: Race, name: str, seed: int, launched: float, minutes: float, results: list[dict[str, Any]],
              test_curve: list[dict[str, Any]], extra: dict[str, Any] | None = None,
              chosen: dict[str, Any] | None = None) -> dict[str, Any]:
    """Results (``ended`` wall time, ``val_accuracy``, ``params``, ``candidate``: which candidate it trained; a
    candidate resumed or continued gives several) within the budget -> the figures; ``chosen`` is the result the
    system hands back (default: the first with the best validation accuracy)."""
    within = sorted((r for r in results if r["ended"] - launched <= 60 * minutes), key=lambda r: r["ended"])
    curve, best = [], 0.0
    for index, result in enumerate(within, start=1):
        best = max(best, result["val_accuracy"])
        curve.append({"trial": index, "seconds": result["ended"] - launched, "best_val_accuracy": best})
    reached = next((point for point in curve if point["best_val_accuracy"] >= race.target_validation), None)
    top = chosen or max(within, key=lambda r: r["val_accuracy"], default=None)
    return {
        "system": name, "seed": seed, "trials": len({r["candidate"] for r in within}), "results": len(within),
        "curve": curve,
        "best_val_accuracy": top["val_accuracy"] if top else None,
        "best_params": top["params"] if top else None,
        "best_test_accuracy": test_curve[-1]["test_accuracy"] if test_curve else None, "test_curve": test_curve,
        **{f"test_at_{q:g}": test_at(test_curve, q * 60 * minutes) for q in QUARTERS},
        "seconds_to_target": reached["seconds"] if reached else None,
        "trials_to_target": reached["trial"] if reached else None,
        **(extra or {}),
    }


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


# -- Optuna TPE ------------------------------------------------------------------------------------


def _tpe_worker(config_path: str, storage_path: str, seed: int, worker: int, deadline: float, folder: str,
                hyperband: bool) -> None:
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    from trainers.evaluator import EvaluationError
    from trainers.keras_trainer import KerasEvaluator

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    config = search_config(config_path, **{"training.threads": 1})
    evaluator = KerasEvaluator(config)
    space = config.space
    storage = JournalStorage(JournalFileBackend(storage_path))
    # Hyperband's brackets over the same epochs (Optuna's HyperbandPruner: min_resource 1, reduction factor 3).
    pruner = optuna.pruners.HyperbandPruner(min_resource=1, max_resource=config.training.epochs, reduction_factor=3) \
        if hyperband else optuna.pruners.NopPruner()
    study = optuna.load_study(study_name="race", storage=storage, pruner=pruner,
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


def optuna_tpe(race: Race, seed: int, minutes: float, workdir: Path, hyperband: bool = False) -> dict[str, Any]:
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    name = "tpe-hyperband" if hyperband else "tpe"
    folder = workdir / f"{name}-{seed}"
    folder.mkdir()
    path = str(folder / "journal.log")
    optuna.create_study(study_name="race", direction="maximize", storage=JournalStorage(JournalFileBackend(path)))
    launched = time.time()
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_tpe_worker,
                               args=(str(race.config), path, seed, w, launched + 60 * minutes, str(folder), hyperband))
               for w in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    study = optuna.load_study(study_name="race", storage=JournalStorage(JournalFileBackend(path)))
    done = {t.number: t for t in study.trials if t.value is not None and "ended" in t.user_attrs}
    results = [{"ended": t.user_attrs["ended"], "val_accuracy": t.value, "params": t.user_attrs["params"],
                "trial": t.number, "candidate": t.number} for t in done.values()]
    within = [r for r in results if r["ended"] - launched <= 60 * minutes]
    config = search_config(race.config)

    def test_of(number: Hashable) -> float:
        trial = done[number]
        hp = {k: v for k, v in trial.params.items() if k in config.space.hparams.choices()}
        return test_accuracy(config, trial.user_attrs["architecture"], hp,
                             (folder / f"{number}.weights.h5").read_bytes())

    pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials)
    return summarize(race, name, seed, launched, minutes, results,
                     handed_back(first_best(within, launched, "trial"), test_of), {"failed": pruned})


# -- KerasTuner ------------------------------------------------------------------------------------


def _kerastuner_worker(config_path: str, seed: int, deadline: float, folder: str, queue: Any,
                       hyperband: bool) -> None:
    import keras
    import keras_tuner as kt

    from blocks.tower import build_tower
    from trainers.keras_trainer import KerasEvaluator, compile_tower, weights_bytes

    config = search_config(config_path, **{"training.threads": 2})
    evaluator = KerasEvaluator(config)  # the same threads, data and split as the other systems
    data, space, training = evaluator.data, config.space, config.training
    results: list[dict[str, Any]] = []

    class Towers(kt.HyperModel):
        def build(self, hp: kt.HyperParameters) -> Any:
            depth = hp.Int("depth", space.min_depth, space.max_depth)
            tower = repair([hp.Choice(f"block_{i}", list(space.blocks)) for i in range(depth)])
            chosen = {key: hp.Choice(key, list(values)) for key, values in space.hparams.choices().items()}
            model = build_tower(tower, chosen, data.spec, head=space.head)
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
                            "architecture": tower, "hyperparameters": chosen, "weights": weights_bytes(model),
                            "index": len(results), "candidate": json.dumps([tower, chosen], sort_keys=True)})
            return {"val_accuracy": score}

    class Timed(kt.oracles.BayesianOptimizationOracle):
        def populate_space(self, trial_id: str) -> dict[str, Any]:
            if time.time() >= deadline:
                return {"status": kt.engine.trial.TrialStatus.STOPPED, "values": None}
            return super().populate_space(trial_id)

    if hyperband:
        tuner = kt.Hyperband(Towers(), objective=kt.Objective("val_accuracy", "max"), max_epochs=training.epochs,
                             factor=3, hyperband_iterations=1000, seed=seed, directory=folder, project_name="race",
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
        tuner = kt.Tuner(oracle=oracle, hypermodel=Towers(), directory=folder, project_name="race",
                         overwrite=True)
    tuner.search(verbose=0)
    within = [r for r in results if r["ended"] <= deadline]

    def test_of(index: Hashable) -> float:
        result = results[int(index)]
        return test_accuracy(config, result["architecture"], result["hyperparameters"], result["weights"])

    test_curve = handed_back(first_best(within, 0.0, "index"), test_of)  # seconds rebased by the caller
    queue.put(([{k: v for k, v in r.items() if k != "weights"} for r in results], test_curve))


def kerastuner(race: Race, seed: int, minutes: float, workdir: Path, hyperband: bool = False) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    launched = time.time()
    worker = context.Process(target=_kerastuner_worker,
                             args=(str(race.config), seed, launched + 60 * minutes,
                                   str(workdir / f"kt-{seed}-{hyperband}"), queue, hyperband))
    worker.start()
    while True:  # a worker that dies without a result must not leave us waiting forever
        try:
            results, test_curve = queue.get(timeout=5)
            break
        except Empty:
            if not worker.is_alive():
                raise RuntimeError(f"the KerasTuner worker died (exit code {worker.exitcode})") from None
    worker.join()
    for point in test_curve:
        point["seconds"] -= launched
    return summarize(race, "kerastuner-hyperband" if hyperband else "kerastuner", seed, launched, minutes, results,
                     test_curve)


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
