"""The Searcher API: ``propose(state, rng) -> Proposal``, a pure function of the state and the rng.

The rng of every proposal is seeded from the run seed and the proposal's position (how many
candidates were proposed before it), never from time or process state, so re-running a searcher
at a recorded proposal reproduces it exactly (``engine replay --verify``).

Searchers may keep caches (fitted models, neighbour lists) to stay fast; a cache is derived from
the state it was given and is rebuilt when the state is not its continuation.

Example::

    >>> proposer = Proposer()
    >>> payload = proposer.propose(state)      # what CandidateProposed will hold
"""

from __future__ import annotations

import hashlib
import random
from abc import ABC, abstractmethod
from typing import Any, ClassVar, NamedTuple

from engine.config import Config, SearchOptions
from engine.ensembles import REPLICA, ensemble_key, plan_ensemble, plan_replica, replica_key
from engine.events import NO_INHERITANCE
from engine.inheritance import plan_inheritance, plan_teacher
from engine.space_options import SpaceOptions
from engine.spaces import Space, make_space
from engine.state import ENSEMBLE, TOWER, State, Trial


class SpaceExhausted(RuntimeError):
    """The searcher cannot find a candidate that was not tried before."""


class Proposal(NamedTuple):
    architecture: Any
    hyperparameters: dict[str, Any]
    parent: int | None
    mutation: str | None


def proposal_seed(run_seed: int, position: int) -> int:
    """The seed of the proposal at ``position`` of a run seeded ``run_seed`` (a 63-bit int)."""
    digest = hashlib.blake2b(f"lineage:{run_seed}:{position}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


class Searcher(ABC):
    """Base class of searchers. ``config`` is the run's resolved configuration."""

    name: ClassVar[str]

    def __init__(self, config: Config, space: Space) -> None:
        self.config = config
        self.space = space

    @abstractmethod
    def propose(self, state: State, rng: random.Random) -> Proposal:
        """The next candidate. Raises :class:`SpaceExhausted` when nothing new can be found."""

    # -- helpers shared by searchers ----------------------------------------------------------

    def is_new(self, state: State, architecture: Any, hyperparameters: dict[str, Any]) -> bool:
        return self.space.describe(architecture, hyperparameters) not in state.keys

    def random_new(self, state: State, rng: random.Random, max_depth: int | None = None,
                   attempts: int = 200) -> Proposal | None:
        """A random member not tried before, or None after ``attempts`` draws of tried ones."""
        for _ in range(attempts):
            architecture, hyperparameters = self.space.random(rng, max_depth)
            if self.is_new(state, architecture, hyperparameters):
                return Proposal(architecture, hyperparameters, None, None)
        return None

    def mutate_new(self, state: State, parent: Trial, rng: random.Random, max_depth: int | None = None,
                   attempts: int = 20) -> Proposal | None:
        """A random one-mutation child of ``parent`` not tried before, or None."""
        weights = self.config.search.mutations.weights()
        for _ in range(attempts):
            child = self.space.mutate(parent.architecture, parent.hyperparameters, rng, weights, max_depth)
            if child is None:
                return None
            if self.is_new(state, child.architecture, child.hyperparameters):
                return Proposal(child.architecture, child.hyperparameters, parent.id, child.mutation)
        return None


class Proposer:
    """Runs the searcher a state's config selects and shapes its proposal into an event payload.

    The engine and ``replay --verify`` both go through here, so they cannot drift apart.
    """

    def __init__(self) -> None:
        self._searchers: dict[tuple[SearchOptions, SpaceOptions], Searcher] = {}

    def searcher(self, config: Config) -> Searcher:
        from engine.searchers import SEARCHERS

        fingerprint = (config.search, config.space)
        searcher = self._searchers.get(fingerprint)
        if searcher is None:
            searcher = SEARCHERS[config.search.algorithm](config, make_space(config.space))
            self._searchers[fingerprint] = searcher
        return searcher

    def propose(self, state: State) -> dict[str, Any]:
        """The payload of the next CandidateProposed event: an ensemble step when the ensemble strategy
        calls for one, else a replica of an ensemble's tower when one is due, else the searcher's next
        tower with what it inherits. May raise :class:`SpaceExhausted`."""
        position = state.proposals
        seed = proposal_seed(state.config.search.seed, position)
        step = plan_ensemble(state)
        searcher = self.searcher(state.config)
        replicated = plan_replica(state) if step is None else None
        if step is None and replicated is None:
            try:
                proposal = searcher.propose(state, random.Random(seed))
            except SpaceExhausted:
                step = plan_ensemble(state, scheduled=False)  # no tower left to try: ensembles, off schedule
                if step is None:
                    raise
        if step is not None:
            return {"kind": ENSEMBLE, "architecture": step, "hyperparameters": {}, "key": ensemble_key(step),
                    "parent": None, "mutation": None, "seed": seed, "position": position,
                    "inherit": dict(NO_INHERITANCE), "teacher": None}
        if replicated is not None:  # fresh weights, so its mistakes are its own
            proposal = Proposal(replicated.architecture, replicated.hyperparameters, replicated.id, REPLICA)
            key, inherit = replica_key(state, replicated), dict(NO_INHERITANCE)
        else:
            searcher.space.validate(proposal.architecture, proposal.hyperparameters)
            key = searcher.space.describe(proposal.architecture, proposal.hyperparameters)
            inherit = plan_inheritance(state, proposal.parent)
        return {
            "kind": TOWER,
            "architecture": proposal.architecture,
            "hyperparameters": proposal.hyperparameters,
            "key": key,
            "parent": proposal.parent,
            "mutation": proposal.mutation,
            "seed": seed,
            "position": position,
            "inherit": inherit,
            "teacher": plan_teacher(state),
        }
