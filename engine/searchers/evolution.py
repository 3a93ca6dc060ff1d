"""Regularized (aging) evolution (Real et al., 2019, "Regularized Evolution for Image Classifier
Architecture Search").

The population is the last ``population`` completed trials: older ones age out whatever their
score. Each proposal draws ``sample`` members of it, mutates the best of them once, and prefers a
child that was not tried before. The first ``population`` proposals are random members.
"""

from __future__ import annotations

import random

from engine.searchers.base import Proposal, Searcher
from engine.state import State


class Evolution(Searcher):
    """Aging evolution with tournament selection."""

    name = "evolution"

    def propose(self, state: State, rng: random.Random) -> Proposal:
        options = self.config.search.evolution
        window = list(state.completed_towers())[-options.population:]
        population = [trial for trial in window if trial.score is not None]
        if state.proposals >= options.population and population:
            contenders = rng.sample(population, min(options.sample, len(population)))
            parent = max(contenders, key=lambda trial: (trial.score, -trial.id))
            child = self.mutate_new(state, parent, rng)
            if child is not None:
                return child
            mutated = self.space.mutate(parent.architecture, parent.hyperparameters, rng,
                                        self.config.search.mutations.weights())
            if mutated is not None:
                return Proposal(mutated.architecture, mutated.hyperparameters, parent.id, mutated.mutation)
        found = self.random_new(state, rng)
        if found is not None:
            return found
        architecture, hyperparameters = self.space.random(rng)
        return Proposal(architecture, hyperparameters, None, None)
