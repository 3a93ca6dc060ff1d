"""Random search: every candidate is an independent uniform draw from the space.

Draws are with replacement, as in the textbook baseline (and Optuna's RandomSampler), so a small
space such as NAS-Bench-201 can be sampled for any number of trials.
"""

from __future__ import annotations

import random

from engine.searchers.base import Proposal, Searcher
from engine.state import State


class RandomSearch(Searcher):
    """Uniform random members of the space."""

    name = "random"

    def propose(self, state: State, rng: random.Random) -> Proposal:
        architecture, hyperparameters = self.space.random(rng)
        return Proposal(architecture, hyperparameters, None, None)
