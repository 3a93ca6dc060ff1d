"""What a race is and the figures of one run: shared by Lineage's runner (``budget_race``) and the peers' (``peers``).

A run hands back a model at each moment (its best so far); :func:`summarize` turns a run's results and that
model's test accuracy over time into the figures every race reports.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from engine.config import Config, apply_overrides, load_config, resolve_config  # noqa: E402

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
