"""A searched tower beside a hand-designed baseline, each trained again with several seeds.

A race compares one training of the tower a search hands back with one (or two) of the baseline's, so a point
between them can be the seed rather than the architecture. This trains both with the config's training settings
at one learning rate, once per seed, and reports each one's validation and test accuracy per seed, their medians
and spreads.

Each searched tower is read from a race result (``budget_race.py --out``): the best tower within the budget among
its first 200 trials (``first_200_trials.small``), with the dropout the search gave it (the batch size and the
optimizer are the config's first, as the baselines'; searched towers under a budget chose 64 and adam).

With ``--teacher`` every tower learns from one teacher's outputs (knowledge distillation, as a search with
``[distillation]`` trains its students), so what distillation adds to a small tower shows beside its plain training.

Usage::

    python benchmarks/retrain.py --config examples/keywords.toml --set keywords --baseline ds-cnn \\
        --results benchmarks/results/keywords_small_counted_24min_seed1.json --out retrain.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

from baselines import BASELINES, train
from race import search_config

from engine.config import Config, parse_override
from engine.state import Artifact
from engine.work import Teacher


def searched(result: Path) -> tuple[list[str], dict[str, Any]]:
    """The architecture and hyperparameters of the tower a race result hands back within its first 200 trials."""
    run = json.loads(result.read_text())["runs"][0]
    best = run["first_200_trials"]["small"] or run["first_200_trials"]["best"]
    tower = next(t for t in run["towers"] if t["trial"] == best["trial"])
    return tower["architecture"], tower["hp"]


def distil_from(config: Config, baselines: str, name: str, seed: int) -> tuple[Teacher, bytes, dict[str, Any]]:
    """The teacher ``name`` (a baseline of the set ``baselines``, or blocks joined by commas) trained once, as
    the :class:`Teacher` of a distilled training, its recorded outputs, and its figures."""
    architecture, dropout = BASELINES[baselines].get(name) or (name.split(","), {"dropout": 0.0})
    captured: dict[str, bytes] = {}
    run = train(config, list(architecture), dropout, seed, capture=captured)
    print(f"teacher {name} seed {seed}: val {run['val_accuracy']:.4f} test {run['test_accuracy']:.4f}", flush=True)
    options = config.distillation
    teacher = Teacher(kind="trial", trial=0, loss=options.loss, temperature=options.temperature,
                      weight=options.weight, architecture=tuple(architecture),
                      hyperparameters={"learning_rate": run["learning_rate"], **dropout}, outputs="teacher")
    return teacher, captured[Artifact.OUTPUTS], {"name": name, "architecture": list(architecture), **run}


def summary(runs: list[dict[str, Any]]) -> dict[str, float]:
    tests = [r["test_accuracy"] for r in runs]
    return {"median_val": statistics.median(r["val_accuracy"] for r in runs), "median_test": statistics.median(tests),
            "mean_test": statistics.fmean(tests), "stdev_test": statistics.stdev(tests) if len(tests) > 1 else 0.0,
            "min_test": min(tests), "max_test": max(tests)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, required=True, help="the search config whose data and training to use")
    parser.add_argument("--results", nargs="*", type=Path, default=[], help="race results whose towers to train again")
    parser.add_argument("--set", required=True, choices=sorted(BASELINES), help="which set the baseline is from")
    parser.add_argument("--tower", action="append", default=[], metavar="BLOCK,BLOCK,...",
                        help="a tower to train again, named by its blocks (results older than towers' records)")
    parser.add_argument("--dropout", type=float, default=0.0, help="the dropout of each --tower")
    parser.add_argument("--baseline", default="ds-cnn", help="the baseline to train beside them ('': none)")
    parser.add_argument("--learning-rate", type=float, default=0.003, help="one rate for both (the baselines' pick)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--override", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override for every training here (training.epochs=40)")
    parser.add_argument("--teacher", metavar="BASELINE|BLOCK,BLOCK,...",
                        help="distil every tower here from this one (a baseline of the set, or blocks), trained once "
                             "with --teacher-seed; the config's [distillation] loss, temperature and weight")
    parser.add_argument("--teacher-seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    overrides = dict((".".join(key), value) for key, value in map(parse_override, args.overrides))
    if args.teacher:
        overrides["distillation.teacher"] = "best"  # so trainings record their outputs on the train split
    config = search_config(args.config, **{"space.hparams.learning_rate": [args.learning_rate], **overrides})
    teacher, outputs, teacher_run = (distil_from(config, args.set, args.teacher, args.teacher_seed) if args.teacher
                                     else (None, b"", None))
    towers = {}
    for result in args.results:
        architecture, hyperparameters = searched(result)
        towers[result.stem] = (architecture, {"dropout": hyperparameters.get("dropout", 0.0)})
    for blocks in args.tower:
        towers[blocks] = (blocks.split(","), {"dropout": args.dropout})
    if args.baseline:
        baseline, baseline_dropout = BASELINES[args.set][args.baseline]
        towers[args.baseline] = (list(baseline), baseline_dropout)
    results: dict[str, Any] = {}
    for name, (tower, dropout) in towers.items():
        runs = []
        for seed in args.seeds:
            runs.append(train(config, tower, dropout, seed, teacher, outputs))
            print(f"{name} seed {seed}: val {runs[-1]['val_accuracy']:.4f} test {runs[-1]['test_accuracy']:.4f} "
                  f"({runs[-1]['params']} parameters, {runs[-1]['seconds']:.0f} s)", flush=True)
        results[name] = {"architecture": tower, "dropout": dropout, "runs": runs, **summary(runs)}
    print(f"{'tower':<44} {'params':>7} {'val':>7} {'test':>7} {'mean':>7} {'stdev':>6} {'min':>7} {'max':>7}  "
          f"(medians over seeds {args.seeds})")
    for name, row in results.items():
        print(f"{name[:44]:<44} {row['runs'][0]['params']:>7} {row['median_val']:>7.4f} {row['median_test']:>7.4f} "
              f"{row['mean_test']:>7.4f} {row['stdev_test']:>6.4f} {row['min_test']:>7.4f} {row['max_test']:>7.4f}")
    args.out.write_text(json.dumps({"config": str(args.config), "overrides": args.overrides, "seeds": args.seeds,
                                    "learning_rate": args.learning_rate, "teacher": teacher_run, "towers": results},
                                   indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
