"""Knowledge shared between trials on MNIST-1D: weight sharing, ensembles and distillation.

Weight sharing (``--part sharing``):
- children: parents from the MNIST-1D space are trained, then one-mutation children of each (the
  mutations the beam makes) are trained twice, from scratch and from their parent's weights; for each,
  the epochs (and seconds) until the child's validation accuracy reaches its parent's, and its best
  validation accuracy within a fixed number of epochs;
- searches: ``engine run`` with ``sharing.mode = "parent"`` beside the same search without it, for
  ``--minutes`` each: seconds and trials until 90% validation accuracy.

Ensembles and distillation (``--part ensembles``): ``engine run`` with all three features
(``examples/mnist1d_ensemble.toml``) for ``--minutes``, once per ``--ensemble-seeds`` search seed, beside
the same search without ensembles and distillation (weight sharing kept) for the same minutes; on the
test split: the baseline's best single model, the best single model and the best ensemble of the search
with them, and a small architecture trained with the best ensemble as its teacher beside the same
architecture trained without one (``--students`` seeds each). ``--set KEY=VALUE`` changes both searches
(e.g. ``--set search.stopping=asha-promote``); ``--no-baseline`` runs only the search with all three.

Usage::

    python benchmarks/knowledge.py                         # both parts (long)
    python benchmarks/knowledge.py --part sharing --pairs 6 --minutes 3

Prints tables and writes ``benchmarks/results/knowledge.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from engine import events as ev  # noqa: E402
from engine.config import apply_overrides, load_config, resolve_config  # noqa: E402
from engine.log import EventLog  # noqa: E402
from engine.state import Artifact, Kind  # noqa: E402
from engine.work import Teacher, WorkItem, architecture_of  # noqa: E402

BASE = ROOT / "examples" / "mnist1d.toml"
ALL_THREE = ROOT / "examples" / "mnist1d_ensemble.toml"
SMALL = ["conv1d_16_k3", "maxpool1d", "conv1d_16_k3", "maxpool1d", "dense_32"]
HP = {"learning_rate": 0.003, "dropout": 0.1, "batch_size": 64, "optimizer": "adam"}


def curve(model: Any, data: Any, epochs: int, hyperparameters: dict) -> tuple[list[float], list[float]]:
    """Validation accuracy and elapsed seconds after each epoch."""
    import keras

    from trainers.keras_trainer import compile_tower

    compile_tower(model, hyperparameters, data.task)
    accuracies, seconds, started = [], [], time.perf_counter()

    class Record(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            accuracies.append(float(logs["val_accuracy"]))
            seconds.append(time.perf_counter() - started)

    model.fit(data.features["train"], data.targets["train"], epochs=epochs, verbose=0, callbacks=[Record()],
              batch_size=int(hyperparameters["batch_size"]),
              validation_data=(data.features["validation"], data.targets["validation"]))
    return accuracies, seconds


def reach(accuracies: list[float], seconds: list[float], target: float) -> tuple[int | None, float | None]:
    for epoch, (accuracy, elapsed) in enumerate(zip(accuracies, seconds, strict=True), start=1):
        if accuracy >= target:
            return epoch, elapsed
    return None, None


def sharing_pairs(pairs: int, epochs: int, budget: int, seed: int) -> list[dict[str, Any]]:
    import keras

    from blocks.tower import build_tower
    from engine.spaces import make_space
    from trainers.datasets import load_dataset
    from trainers.sharing import inherit_weights

    config = load_config(BASE)
    data = load_dataset(config.data)
    space = make_space(config.space)
    rng = random.Random(seed)
    rows = []
    while len(rows) < pairs:
        architecture, hyperparameters = space.random(rng, max_depth=4)
        if not any(b.startswith(("conv", "residual")) for b in architecture):
            continue  # parents worth inheriting from: networks that learn something
        hyperparameters = {**hyperparameters, "learning_rate": 0.003}
        keras.utils.set_random_seed(rng.randrange(2**31))
        parent = build_tower(architecture, hyperparameters, data.spec, name="parent")
        parent_curve, _ = curve(parent, data, epochs, hyperparameters)
        target = max(parent_curve)
        children = [c for c in space.neighbours(architecture, hyperparameters, max_depth=5)
                    if not c.mutation.startswith("remove")]
        child = rng.choice(children)
        row = {"parent": architecture, "parent_val_accuracy": target, "mutation": child.mutation}
        for mode in ("scratch", "inherited"):
            keras.utils.set_random_seed(rng.randrange(2**31))
            model = build_tower(child.architecture, child.hyperparameters, data.spec, name=f"child_{mode}")
            copied = []
            if mode == "inherited":
                copied = inherit_weights(model, [(parent, 1.0)], child.architecture == architecture)
            accuracies, seconds = curve(model, data, epochs, child.hyperparameters)
            epoch, elapsed = reach(accuracies, seconds, target)
            row[mode] = {"epochs_to_parent": epoch, "seconds_to_parent": elapsed, "copied": len(copied),
                         f"best_within_{budget}": max(accuracies[:budget]), "best": max(accuracies)}
        rows.append(row)
        print(f"  pair {len(rows)}: {row['mutation']}: scratch {row['scratch']['epochs_to_parent']} epochs, "
              f"inherited {row['inherited']['epochs_to_parent']} epochs ({row['inherited']['copied']} layers)",
              file=sys.stderr, flush=True)
    return rows


def engine_run(folder: Path, name: str, config: Path, minutes: float, settings: list[str]) -> dict[str, Any]:
    run = folder / name
    launched = time.time()
    subprocess.run([sys.executable, "-m", "engine", "run", "--run", str(run), "--config", str(config),
                    "--set", "search.trials=100000", *settings, "--minutes", str(minutes), "--quiet"],
                   check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
    with EventLog.open_reader(run) as log:
        events = list(log.read())
    kinds = {e.seq: e.payload["kind"] for e in events if e.type == ev.CANDIDATE_PROPOSED}
    towers = [(e.at - launched, e.payload["metrics"]["val_accuracy"]) for e in events
              if e.type == ev.TRIAL_COMPLETED and kinds[e.payload["trial"]] == "tower"
              and e.at - launched <= 60 * minutes]
    best, seconds_to_90, trials_to_90 = 0.0, None, None
    for index, (elapsed, accuracy) in enumerate(towers, start=1):
        best = max(best, accuracy)
        if best >= 0.9 and seconds_to_90 is None:
            seconds_to_90, trials_to_90 = elapsed, index
    return {"run": str(run), "towers": len(towers), "best_val_accuracy": best, "seconds_to_90": seconds_to_90,
            "trials_to_90": trials_to_90}


def ensembles(folder: Path, minutes: float, seeds: int, search_seed: int, settings: list[str],
              baseline: bool = True) -> dict[str, Any]:
    import keras
    import numpy as np

    from blocks.tower import build_tower
    from engine.artifacts import ARTIFACTS_DIR, ArtifactStore
    from engine.runs import state_at
    from trainers.datasets import load_dataset
    from trainers.export import Pick, evaluate_model, export_model
    from trainers.keras_trainer import KerasEvaluator, load_weights

    settings = ["--set", f"search.seed={search_seed}", *(part for s in settings for part in ("--set", s))]
    if baseline:
        baseline = engine_run(folder, f"baseline-{search_seed}", ALL_THREE, minutes,
                              [*settings, "--set", "ensemble.strategy=none", "--set", "ensemble.replicas=0",
                               "--set", "distillation.teacher=none"])
        export_model(Path(baseline["run"]), folder / f"baseline-single-{search_seed}", pick=Pick.TOWER)
        baseline["best_single_test"] = evaluate_model(folder / f"baseline-single-{search_seed}")["accuracy"]
    else:
        baseline = {"best_single_test": None}
    summary = engine_run(folder, f"all-three-{search_seed}", ALL_THREE, minutes, settings)
    run = Path(summary["run"])
    state = state_at(run)
    export_model(run, folder / f"single-{search_seed}", pick=Pick.TOWER)
    single = evaluate_model(folder / f"single-{search_seed}")
    found = {"seed": search_seed, "baseline": baseline, "search": summary, "best_single_test": single["accuracy"],
             "replicas_trained": sum(t.mutation == "replica" for t in state.trials.values())}
    best = state.best_ensemble()
    if best is None:  # none beat the best tower on validation
        return {**found, "best_ensemble_test": None,
                "ensembles_tried": sum(t.kind == "ensemble" for t in state.trials.values())}
    export_model(run, folder / f"ensemble-{search_seed}", pick=Pick.ENSEMBLE)
    ensemble = evaluate_model(folder / f"ensemble-{search_seed}")
    config = resolve_config(apply_overrides(state.config, {"search.trials": 1}))
    evaluator = KerasEvaluator(config)
    data = load_dataset(config.data)
    teacher_digest = best.artifacts[Artifact.OUTPUTS]
    teacher_bytes = ArtifactStore(run / ARTIFACTS_DIR).read(teacher_digest)
    students = {"with teacher": [], "without teacher": []}
    for seed in range(seeds):
        for label, teacher in (("without teacher", None),
                               ("with teacher", Teacher(
                                   kind="ensemble", trial=state.ensemble, loss="soft", temperature=4.0, weight=0.5,
                                   architecture=architecture_of(best.architecture),
                                   hyperparameters=best.hyperparameters, outputs=teacher_digest))):
            work = WorkItem(lease=seed, trial=seed, key=" ".join(SMALL), kind=Kind.TOWER, architecture=tuple(SMALL),
                            hyperparameters=HP, seed=1000 + seed, teacher=teacher)
            outcome = evaluator.evaluate(work, fetch=lambda digest: teacher_bytes)
            keras.utils.set_random_seed(0)
            tower = build_tower(SMALL, HP, data.spec)
            load_weights(tower, outcome.artifacts[Artifact.WEIGHTS])
            test = float(np.mean(tower.predict(data.features["test"], verbose=0).argmax(1) == data.targets["test"]))
            students[label].append({"val_accuracy": outcome.metrics["val_accuracy"], "test_accuracy": test,
                                    "params": outcome.metrics["params"]})
    return {**found, "best_ensemble_test": ensemble["accuracy"], "ensemble_val_loss": best.metrics["val_loss"],
            "single_val_loss": state.best_trial().metrics["val_loss"],
            "ensemble_members": len(best.architecture["members"]),
            "ensemble_replicas": sum(state.trials[m].mutation == "replica" for m in best.architecture["members"]),
            "ensemble_val": best.metrics["val_accuracy"], "students": students}


def write(path: Path, report: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=str))


def median(values: list) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("sharing", "ensembles", "both"), default="both")
    parser.add_argument("--pairs", type=int, default=12, help="parent/child pairs (default 12)")
    parser.add_argument("--epochs", type=int, default=20, help="epochs per parent and child (default 20)")
    parser.add_argument("--budget", type=int, default=5, help="the fixed epoch budget compared (default 5)")
    parser.add_argument("--minutes", type=float, default=8.0,
                        help="wall-clock budget of the search with all three features (default 8)")
    parser.add_argument("--sharing-minutes", type=float, default=4.0,
                        help="wall-clock budget of each search with and without sharing (default 4)")
    parser.add_argument("--seeds", type=int, default=2, help="search seeds with and without sharing (default 2)")
    parser.add_argument("--students", type=int, default=3, help="distilled/plain student pairs (default 3)")
    parser.add_argument("--ensemble-seeds", type=int, default=2,
                        help="searches with all three features, one per seed (default 2)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a config setting for the ensembles part's searches (repeatable)")
    parser.add_argument("--no-baseline", action="store_true",
                        help="ensembles part: skip the search without ensembles and distillation")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "knowledge.json")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="lineage-knowledge-"))
    report: dict[str, Any] = {"minutes": args.minutes, "sharing_minutes": args.sharing_minutes}
    if args.part in ("sharing", "both"):
        print("weight sharing: parent/child pairs ...", file=sys.stderr, flush=True)
        pairs = sharing_pairs(args.pairs, args.epochs, args.budget, seed=0)
        searches = {}
        for mode in ("off", "parent"):
            searches[mode] = [engine_run(folder, f"sharing-{mode}-{seed}", BASE, args.sharing_minutes,
                                         ["--set", f"sharing.mode={mode}", "--set", f"search.seed={seed}"])
                              for seed in range(args.seeds)]
        report["sharing"] = {"pairs": pairs, "searches": searches}
        write(args.out, report)  # each part is kept even if a later one fails
        scratch = [p["scratch"]["epochs_to_parent"] for p in pairs]
        inherited = [p["inherited"]["epochs_to_parent"] for p in pairs]
        both = [(s, i) for s, i in zip(scratch, inherited, strict=True) if s is not None and i is not None]
        print(f"\nweight sharing, {len(pairs)} parent/child pairs ({args.epochs} epochs each)")
        print(f"  children reaching their parent's validation accuracy: scratch {sum(s is not None for s in scratch)}, "
              f"inherited {sum(i is not None for i in inherited)}")
        if both:
            ratio = statistics.median(i / s for s, i in both)
            print(f"  median epochs to the parent's accuracy (pairs where both reach it): scratch "
                  f"{statistics.median(s for s, _ in both)}, inherited {statistics.median(i for _, i in both)}; "
                  f"median ratio {ratio:.2f} (target <= 0.70)")
            report["sharing"]["epoch_ratio"] = ratio
        # A child that never reaches it within the budget counts as one epoch past it: a lower bound, which
        # favours whichever side missed.
        never = args.epochs + 1
        either = [(s or never, i or never) for s, i in zip(scratch, inherited, strict=True) if s or i]
        if either:
            censored = statistics.median(i / s for s, i in either)
            print(f"  counting 'never within {args.epochs}' as {never} epochs ({len(either)} pairs where either "
                  f"reaches it): median ratio {censored:.2f}, total epochs scratch {sum(s for s, _ in either)}, "
                  f"inherited {sum(i for _, i in either)}")
            report["sharing"]["censored_epoch_ratio"] = censored
        for mode in ("scratch", "inherited"):
            best = median([p[mode][f"best_within_{args.budget}"] for p in pairs])
            print(f"  median best validation accuracy within {args.budget} epochs, {mode}: {best:.4f}")
        for mode, runs in searches.items():
            print(f"  search with sharing {mode}: median seconds to 90% validation "
                  f"{median([r['seconds_to_90'] for r in runs])}, trials {median([r['trials_to_90'] for r in runs])}, "
                  f"best {median([r['best_val_accuracy'] for r in runs])}")
    if args.part in ("ensembles", "both"):
        print("ensembles and distillation ...", file=sys.stderr, flush=True)
        report["ensembles"] = results = []
        for seed in range(args.ensemble_seeds):
            results.append(ensembles(folder, args.minutes, args.students, seed, args.set, not args.no_baseline))
            write(args.out, report)
        print(f"\nensembles and distillation, {args.minutes:g}-minute searches with all three features, beside the "
              f"same search without ensembles and distillation")
        for result in results:
            without = result["baseline"]["best_single_test"]
            print(f"  seed {result['seed']}: test accuracy of the best single model without them "
                  f"{'-' if without is None else format(without, '.4f')}; with them: best single "
                  f"{result['best_single_test']:.4f}", end="")
            if result["best_ensemble_test"] is None:
                print(f", no ensemble beat the best tower on validation ({result['ensembles_tried']} tried)")
                continue
            print(f", best ensemble {result['best_ensemble_test']:.4f} ({result['ensemble_members']} members, "
                  f"{result['ensemble_replicas']} of them replicas; target: +0.5 point and >= 0.985)")
            for label, rows in ((label, rows) for label, rows in result["students"].items() if rows):
                print(f"    {SMALL} {label}: median test accuracy {median([r['test_accuracy'] for r in rows]):.4f} "
                      f"({int(rows[0]['params'])} parameters)")
        without = median([r['baseline']['best_single_test'] for r in results])
        print(f"  medians over seeds: best single without them "
              f"{'-' if without is None else format(without, '.4f')}, with them "
              f"{median([r['best_single_test'] for r in results]):.4f}; best ensemble "
              f"{median([r['best_ensemble_test'] for r in results]):.4f}")
    write(args.out, report)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
