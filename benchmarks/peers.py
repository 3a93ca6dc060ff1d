"""The peers a race runs beside Lineage, on the same space, data and Keras training: Optuna's TPE (with or without
its ``HyperbandPruner``) in 2 worker processes, and KerasTuner's BayesianOptimization or ``Hyperband`` in one
process with 2 TensorFlow threads (see ``budget_race``).
"""

from __future__ import annotations

import json
import multiprocessing
import time
from collections.abc import Hashable
from pathlib import Path
from queue import Empty
from typing import Any

from race import Race, first_best, handed_back, repair, search_config, summarize, test_accuracy

from engine.state import Artifact, Kind
from engine.work import WorkItem

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
