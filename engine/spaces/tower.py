"""The block tower: a stack of registered blocks plus training hyperparameters.

An architecture is a list of block names from ``blocks/``, input first; hyperparameters are one
value per configured choice list. A tower is valid when its depth is within bounds, every block is
one the space allows, no block that needs ordered input follows one whose output lost its order
(a dense block, global pooling), and 1-D and 2-D blocks are not mixed.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from blocks import BlockError, lookup, use_paths
from blocks.ordering import arrange, fits, problem
from engine.config import ConfigError, Option, non_negative, positive
from engine.spaces.base import Architecture, Hyperparameters, MutationKind, Neighbour, Space, SpaceError

DEFAULT_BLOCKS = [
    "conv1d_16_k3", "conv1d_32_k3", "conv1d_32_k5", "conv1d_64_k3", "residual_conv1d_32", "maxpool1d",
    "gru_32", "dense_32", "dense_64", "dense_128", "residual_dense_64", "bottleneck_dense_128",
]


def _check_choices(kind: type) -> Any:
    def check(values: list) -> str | None:
        if not values:
            return "needs at least one value"
        if len(set(map(repr, values))) != len(values):
            return f"has repeated values {values}"
        for value in values:
            if kind is str and not isinstance(value, str):
                return f"values must be strings, not {value!r}"
            if kind is not str and (isinstance(value, bool) or not isinstance(value, int | float) or value < 0):
                return f"values must be numbers of 0 or more, not {value!r}"
        return None

    return check


def _check_blocks(values: list) -> str | None:
    if not values:
        return "needs at least one block"
    for i, name in enumerate(values):
        if not isinstance(name, str):
            return f"[{i}] must be a block name, not {name!r}"
    if len(set(values)) != len(values):
        return f"lists a block twice: {sorted({n for n in values if values.count(n) > 1})}"
    return None


class TowerSpace(Space):
    """Towers of blocks; depth is bounded by ``min_depth``/``max_depth`` and grown by the beam."""

    kind = "tower"
    options = {
        "block_paths": Option([], (list,), "folders of user block modules (relative to the config file)"),
        "blocks": Option(list(DEFAULT_BLOCKS), (list,), "block names the search may use; module:object names a "
                         "user block", check=_check_blocks),
        "min_depth": Option(1, (int,), "fewest blocks in a tower", check=positive),
        "max_depth": Option(6, (int,), "most blocks in a tower", check=positive),
        "draw": Option("blocks", (str,), "how random towers are drawn: 'blocks' draws each block uniformly and then "
                       "orders them so the tower builds (convolutions before dense blocks); 'positions' draws left "
                       "to right among the blocks that fit, which rarely puts many order-keeping blocks in a tower",
                       ("blocks", "positions")),
        "max_params": Option(0, (int,), "most trainable parameters a candidate may have (0: no limit); "
                             "trainers fail larger ones without training them", check=non_negative),
        "hparams": {
            "learning_rate": Option([0.0003, 0.001, 0.003], (list,), "learning rates to choose from",
                                    check=_check_choices(float)),
            "dropout": Option([0.0, 0.1, 0.25], (list,), "dropout rates to choose from",
                              check=_check_choices(float)),
            "batch_size": Option([32, 64, 128], (list,), "batch sizes to choose from",
                                 check=_check_choices(int)),
            "optimizer": Option(["adam", "sgd"], (list,), "optimizers to choose from",
                                check=_check_choices(str)),
        },
    }
    default_metric = "val_accuracy"
    default_mode = "max"
    default_evaluator = "synthetic"

    def __init__(self, config: Mapping[str, Any]) -> None:
        super().__init__(config)
        use_paths(list(config.get("block_paths", [])))
        self.blocks: list[str] = list(config.get("blocks", DEFAULT_BLOCKS))
        self.min_depth: int = config.get("min_depth", 1)
        self._max_depth: int = config.get("max_depth", 6)
        self.draw: str = config.get("draw", "blocks")
        self.hparams: dict[str, list] = {k: list(v) for k, v in config.get("hparams", {}).items()}
        if self.min_depth > self._max_depth:
            raise ConfigError(
                f"space.min_depth ({self.min_depth}) is greater than space.max_depth ({self._max_depth}): "
                "no tower can satisfy both"
            )
        for dropout in self.hparams.get("dropout", []):
            if dropout >= 1:
                raise ConfigError(f"space.hparams.dropout values must be below 1, not {dropout}")
        self._specs = {}
        for i, name in enumerate(self.blocks):
            try:
                self._specs[name] = lookup(name)
            except BlockError as exc:
                raise ConfigError(f"space.blocks[{i}]: {exc}") from None
        if not any(fits([], name, self._specs) for name in self.blocks):
            raise ConfigError("space.blocks has no block that can start a tower")

    @property
    def max_depth(self) -> int:
        return self._max_depth

    def depth(self, architecture: Architecture) -> int:
        return len(architecture)

    # -- validity -------------------------------------------------------------------------------

    def _problem(self, architecture: list[str]) -> str | None:
        found = problem(architecture, self._specs)
        return str(found) if found is not None else None

    def _valid(self, architecture: list[str], limit: int) -> bool:
        return self.min_depth <= len(architecture) <= limit and self._problem(architecture) is None

    def validate(self, architecture: Architecture, hyperparameters: Hyperparameters) -> None:
        if not isinstance(architecture, list) or not all(isinstance(b, str) for b in architecture):
            raise SpaceError(f"a tower architecture is a list of block names, not {architecture!r}")
        if not self.min_depth <= len(architecture) <= self._max_depth:
            raise SpaceError(
                f"a tower of {len(architecture)} blocks is outside the depth range "
                f"[{self.min_depth}, {self._max_depth}]"
            )
        found = self._problem(architecture)
        if found:
            raise SpaceError(found)
        if not isinstance(hyperparameters, dict) or set(hyperparameters) != set(self.hparams):
            raise SpaceError(f"hyperparameters must set exactly {sorted(self.hparams)}, got {hyperparameters!r}")
        for key, value in hyperparameters.items():
            if value not in self.hparams[key]:
                raise SpaceError(f"hyperparameter {key}={value!r} is not one of {self.hparams[key]}")

    # -- drawing and mutating -------------------------------------------------------------------

    def _limit(self, max_depth: int | None) -> int:
        return self._max_depth if max_depth is None else max(self.min_depth, min(max_depth, self._max_depth))

    def random(self, rng: random.Random, max_depth: int | None = None) -> tuple[Architecture, Hyperparameters]:
        limit = self._limit(max_depth)
        draw = self._draw_blocks if self.draw == "blocks" else self._draw_positions
        for _ in range(100):
            tower = draw(rng.randint(self.min_depth, limit), rng)
            if tower is not None:
                return tower, {key: rng.choice(values) for key, values in self.hparams.items()}
        raise SpaceError(f"could not draw a valid tower of depth {self.min_depth}..{limit} from space.blocks")

    def _draw_positions(self, depth: int, rng: random.Random) -> list[str] | None:
        tower: list[str] = []
        while len(tower) < depth:
            allowed = [b for b in self.blocks if fits(tower, b, self._specs)]
            if not allowed:
                return None
            tower.append(rng.choice(allowed))
        return tower

    def _draw_blocks(self, depth: int, rng: random.Random) -> list[str] | None:
        """Each block uniformly among those that still leave an orderable tower, then ordered.

        Drawn left to right, every block after the first dense one must be dense too, so a depth-6 tower
        of MNIST-1D's space would hold 2.6 order-keeping blocks on average; drawn as a collection, 4.6.
        """
        drawn: list[str] = []
        while len(drawn) < depth:
            allowed = [b for b in self.blocks if self._problem(arrange([*drawn, b], self._specs)) is None]
            if not allowed:
                return None
            drawn.append(rng.choice(allowed))
        return arrange(drawn, self._specs)

    def neighbours(
        self, architecture: Architecture, hyperparameters: Hyperparameters,
        max_depth: int | None = None, weights: Mapping[str, float] | None = None,
    ) -> list[Neighbour]:
        limit = max(self._limit(max_depth), len(architecture))
        use = (lambda kind: True) if weights is None else (lambda kind: weights.get(kind, 0) > 0)
        children: list[Neighbour] = []
        tower = list(architecture)
        if use(MutationKind.ADD) and len(tower) < self._limit(max_depth):
            for i in range(len(tower) + 1):
                for name in self.blocks:
                    child = tower[:i] + [name] + tower[i:]
                    if self._valid(child, limit):
                        children.append(Neighbour(child, dict(hyperparameters), MutationKind.ADD, f"add {i}: {name}"))
        if use(MutationKind.REPLACE):
            for i, current in enumerate(tower):
                for name in self.blocks:
                    child = tower[:i] + [name] + tower[i + 1:]
                    if name != current and self._valid(child, limit):
                        children.append(Neighbour(child, dict(hyperparameters), MutationKind.REPLACE,
                                                  f"replace {i}: {current} -> {name}"))
        if use(MutationKind.REMOVE):
            for i, current in enumerate(tower):
                child = tower[:i] + tower[i + 1:]
                if self._valid(child, limit):
                    children.append(Neighbour(child, dict(hyperparameters), MutationKind.REMOVE,
                                              f"remove {i}: {current}"))
        if use(MutationKind.HPARAM):
            for key, values in self.hparams.items():
                for value in values:
                    if value != hyperparameters.get(key):
                        changed = {**hyperparameters, key: value}
                        children.append(
                            Neighbour(list(tower), changed, MutationKind.HPARAM,
                                      f"hparam {key}: {hyperparameters.get(key)!r} -> {value!r}")
                        )
        # Inserting a block beside an identical one gives the same tower from two positions.
        unique = {self.describe(c.architecture, c.hyperparameters): c for c in reversed(children)}
        return [c for c in children if unique[self.describe(c.architecture, c.hyperparameters)] is c]

    # -- naming and features --------------------------------------------------------------------

    def describe(self, architecture: Architecture, hyperparameters: Hyperparameters) -> str:
        hp = " ".join(f"{key}={hyperparameters[key]!r}" for key in sorted(hyperparameters))
        return f"{' > '.join(architecture)} | {hp}" if hp else " > ".join(architecture)

    def encode(self, architecture: Architecture, hyperparameters: Hyperparameters) -> dict[str, float]:
        features: dict[str, float] = {"depth": float(len(architecture))}
        for i, name in enumerate(architecture):
            features[f"{i}={name}"] = 1.0
            features[f"n:{name}"] = features.get(f"n:{name}", 0.0) + 1.0
        for key, value in hyperparameters.items():
            features[f"{key}={value!r}"] = 1.0
        return features

