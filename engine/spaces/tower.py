"""The block tower: a stack of registered blocks plus training hyperparameters.

An architecture is a list of block names from ``blocks/``, input first; hyperparameters are one
value per configured choice list. A tower is valid when its depth is within bounds, every block is
one the space allows, no block that needs ordered input follows one whose output lost its order
(a dense block, global pooling), and 1-D and 2-D blocks are not mixed.
"""

from __future__ import annotations

import random
from collections.abc import Mapping

from blocks import BlockError, lookup, use_paths
from blocks.ordering import arrange, fits, problem
from blocks.tower import BuildError, DataSpec, count_params
from engine.options import ConfigError
from engine.space_options import TowerOptions
from engine.spaces.base import (
    Architecture,
    Hyperparameters,
    MutationKind,
    Neighbour,
    SizeFeatures,
    Space,
    SpaceError,
)
from engine.state import TowerInput


class TowerSpace(Space):
    """Towers of blocks; depth is bounded by ``min_depth``/``max_depth`` and grown by the beam."""

    kind = "tower"
    def __init__(self, options: TowerOptions) -> None:
        super().__init__(options)
        use_paths(list(options.block_paths))
        self.blocks: list[str] = list(options.blocks)
        self.min_depth: int = options.min_depth
        self._max_depth: int = options.max_depth
        self.draw: str = options.draw
        self.head: str = options.head
        self.hparams: dict[str, list] = {k: list(v) for k, v in options.hparams.choices().items()}
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

    def family(self, architecture: Architecture) -> str | None:
        """A tower's first block: it sets the resolution and channels every later block works on, so towers
        that differ only after it are variations of one design (a keyword search's DS-CNN stem family, its
        frequency-strided family)."""
        return architecture[0] if architecture else None

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

    def count_params(self, architecture: Architecture, built_on: TowerInput) -> int | None:
        """The weights the tower builder makes of ``architecture``, counted by its blocks (``Block.count``) without
        Keras; None where a block cannot count its own (a user block, a whole network) or the tower cannot be
        built."""
        data = DataSpec(built_on.shape, built_on.task, built_on.outputs, tokens=built_on.tokens)
        try:
            return count_params(architecture, data, self.head)
        except BuildError:
            return None

    def size_features(self, architecture: Architecture) -> SizeFeatures:
        """How many of each block a tower holds, and which block follows which (``^`` and ``$`` mark its ends).

        A block's weights depend on its own kind and on the channels of what comes before it, so pairs of
        neighbours predict a tower's size where positions cannot: inserting a block shifts every position after
        it, but changes one count and two pairs. In a keyword search under a budget the positions made the size
        model reject every child of the best tower that added a convolution and still fitted (33 after 60 trials,
        27 after 90); counts and pairs admitted 64% and 30% of them (the towers of
        benchmarks/results/keywords_small_learn_24min_seed1_towers.json, their sizes counted by Keras).
        """
        counts: dict[str, float] = {}
        for name in architecture:
            counts[name] = counts.get(name, 0.0) + 1.0
        pairs: dict[str, float] = {}
        for before, after in zip(["^", *architecture], [*architecture, "$"], strict=True):
            pairs[f"{before}>{after}"] = pairs.get(f"{before}>{after}", 0.0) + 1.0
        return SizeFeatures(counts, pairs)
