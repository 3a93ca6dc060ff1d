"""The synthetic trainer: a cheap, deterministic stand-in for training a tower.

It lets the engine, the tests and the demo run searches over the block tower without TensorFlow.
Its "validation accuracy" is a smooth function of the blocks (each block name has a fixed quality),
their order, the depth and the hyperparameters, plus small noise seeded by the trial, so searching
it has real structure: some towers are better and mutations can find them. It also writes a small
"weights" artifact and reads its parent's, exercising the artifact path of a real trainer. Its
parameter count is a fixed size per block, and like the Keras trainer it fails a tower over
``space.max_params`` unevaluated, reporting its size.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Mapping, Sequence
from typing import Any

from engine.config import Config
from engine.space_options import TowerOptions
from engine.state import Artifact
from engine.work import WorkItem
from trainers.evaluator import EvaluationError, Evaluator, Fetch, Outcome, Report, stable_fraction


def synthetic_accuracy(architecture: Sequence[str], hyperparameters: Mapping[str, Any]) -> float:
    """The noise-free score of a tower: in (0, 1), higher is better."""
    signal = sum(stable_fraction("quality", name) * 0.8**i for i, name in enumerate(architecture))
    pairs = sum(stable_fraction("pair", a, b) - 0.5 for a, b in zip(architecture, architecture[1:], strict=False))
    accuracy = 0.55 + 0.35 * (1 - math.exp(-signal)) + 0.03 * pairs - 0.01 * max(0, len(architecture) - 4) ** 2
    rate = hyperparameters.get("learning_rate")
    if isinstance(rate, int | float) and rate > 0:
        accuracy -= 0.04 * (math.log10(rate) + 3) ** 2
    dropout = hyperparameters.get("dropout")
    if isinstance(dropout, int | float):
        accuracy -= 0.3 * (dropout - 0.1) ** 2
    if hyperparameters.get("optimizer") == "sgd":
        accuracy -= 0.02
    return min(max(accuracy, 0.01), 0.99)


def synthetic_params(architecture: Sequence[str]) -> float:
    """The parameter count of a tower: 1,000 to 21,000 a block, fixed by the block's name."""
    return float(sum(1000 + int(stable_fraction("size", name) * 20000) for name in architecture))


class SyntheticEvaluator(Evaluator):
    """Scores towers with :func:`synthetic_accuracy` plus noise seeded by the trial."""

    kind = "synthetic"
    wants_parent_artifacts = True

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.delay = config.evaluator.delay
        self.max_params = config.space.max_params if isinstance(config.space, TowerOptions) else 0

    def evaluate(self, work: WorkItem, fetch: Fetch, report: Report | None = None) -> Outcome:
        started = time.perf_counter()
        params = synthetic_params(work.architecture)
        if self.max_params and params > self.max_params:
            raise EvaluationError(f"{params:,.0f} parameters exceed space.max_params = {self.max_params:,}",
                                  {"params": params})
        if self.delay:
            time.sleep(self.delay)
        rng = random.Random(work.seed)
        accuracy = synthetic_accuracy(work.architecture, work.hyperparameters)
        accuracy = min(max(accuracy + rng.gauss(0, 0.004), 0.0), 1.0)
        inherited = work.parent_artifacts.get(Artifact.WEIGHTS)
        inherited_bytes = len(fetch(inherited)) if inherited else 0
        weights = rng.randbytes(256 * len(work.architecture))
        return Outcome(
            metrics={
                "val_accuracy": accuracy,
                "val_loss": -math.log(max(accuracy, 1e-6)),
                "params": params,
                "inherited_bytes": float(inherited_bytes),
                "train_seconds": time.perf_counter() - started,
            },
            artifacts={Artifact.WEIGHTS: weights},
        )
