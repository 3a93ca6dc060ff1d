"""The Space API: what can be proposed, and how one member becomes another.

A candidate is a pair ``(architecture, hyperparameters)`` of msgpack-native values (lists, dicts,
strings, numbers) so it can live in events unchanged. A space draws random members, applies one
mutation, lists every one-mutation neighbour, validates a member with a clear message, describes it
in one stable line (the key that tells whether an architecture was tried) and encodes it as
features for the surrogate of the beam search.

Example::

    >>> space = make_space(config.space)      # or a raw table: make_space({"kind": "nb201"})
    >>> arch, hp = space.random(random.Random(0))
    >>> child, child_hp, mutation = space.mutate(arch, hp, random.Random(1), weights)
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar

from engine.space_options import SpaceOptions
from engine.state import TowerInput

Architecture = Any
Hyperparameters = dict[str, Any]


@dataclass(frozen=True)
class SizeFeatures:
    """What a model of an architecture's parameter count reads: ``main`` effects (how many of each block) and
    ``interactions`` (which block follows which), whose weight the model fits to the sizes it has seen."""

    main: dict[str, float]
    interactions: dict[str, float]

    def weighted(self, interaction: float) -> dict[str, float]:
        """One feature dict, the interactions scaled by ``interaction`` (their names kept apart by a prefix)."""
        return {**self.main, **{f"&{name}": value * interaction for name, value in self.interactions.items()}}


class SpaceError(ValueError):
    """A candidate (or a space configuration) that is not valid; the message says why."""


class MutationKind(StrEnum):
    """What a mutation changes (``search.mutations`` weighs them)."""

    ADD = "add"
    REPLACE = "replace"
    REMOVE = "remove"
    HPARAM = "hparam"


@dataclass(frozen=True)
class Neighbour:
    """One mutation of a parent: the child, the kind of change and a short description of it (recorded
    with the candidate)."""

    architecture: Architecture
    hyperparameters: Hyperparameters
    kind: MutationKind
    mutation: str


class Space(ABC):
    """Base class of search spaces. Subclasses declare ``kind``; their options (``[space]``, with their
    defaults and checks) are a section class of ``engine/config.py``."""

    kind: ClassVar[str]

    def __init__(self, options: SpaceOptions) -> None:
        self.options = options

    @abstractmethod
    def random(self, rng: random.Random, max_depth: int | None = None) -> tuple[Architecture, Hyperparameters]:
        """A random valid member, no deeper than ``max_depth`` where depth applies."""

    @abstractmethod
    def neighbours(
        self, architecture: Architecture, hyperparameters: Hyperparameters,
        max_depth: int | None = None, weights: Mapping[str, float] | None = None,
    ) -> list[Neighbour]:
        """Every valid one-mutation child, in a stable order; kinds whose weight is 0 are left out."""

    def mutate(
        self, architecture: Architecture, hyperparameters: Hyperparameters, rng: random.Random,
        weights: Mapping[str, float], max_depth: int | None = None,
    ) -> Neighbour | None:
        """One random mutation: its kind drawn by ``weights``, then a uniform child of that kind.

        Returns None when the member has no valid neighbour at all.
        """
        children = self.neighbours(architecture, hyperparameters, max_depth, weights)
        by_kind: dict[MutationKind, list[Neighbour]] = {}
        for child in children:
            by_kind.setdefault(child.kind, []).append(child)
        kinds = [k for k in by_kind if weights.get(k, 0) > 0]
        if not kinds:
            return None
        kind = rng.choices(kinds, weights=[weights[k] for k in kinds])[0]
        return rng.choice(by_kind[kind])

    @abstractmethod
    def validate(self, architecture: Architecture, hyperparameters: Hyperparameters) -> None:
        """Raise :class:`SpaceError` saying what is wrong with a member."""

    @abstractmethod
    def describe(self, architecture: Architecture, hyperparameters: Hyperparameters) -> str:
        """One stable line naming the member; equal lines mean the same candidate."""

    @abstractmethod
    def encode(self, architecture: Architecture, hyperparameters: Hyperparameters) -> dict[str, float]:
        """Sparse numeric features of a member, for surrogate models."""

    def size_features(self, architecture: Architecture) -> SizeFeatures:
        """Features of an architecture for a model of its parameter count: its encoding here, without
        interactions; spaces whose sizes follow their structure say more."""
        return SizeFeatures(self.encode(architecture, {}), {})

    def count_params(self, architecture: Architecture, built_on: TowerInput) -> int | None:
        """An architecture's weights, counted without building it, on the input ``built_on`` describes; None where
        the space cannot count them (a searcher then learns sizes from what trainers report)."""
        return None

    def family(self, architecture: Architecture) -> str | None:
        """The family a member belongs to, for searchers that keep families apart (None: the space has none)."""
        return None

    def depth(self, architecture: Architecture) -> int | None:
        """How many blocks deep a member is, for spaces whose depth grows (None otherwise)."""
        return None

    @property
    def max_depth(self) -> int | None:
        return None
