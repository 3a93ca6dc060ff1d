"""Beam search, the default: mutate one of the top-K completed trials, never repeating a candidate.

This is the adaptive greedy search of Google's Model Search: pick a parent among the best K trials
so far and apply one mutation (add, replace or remove a block, change a hyperparameter), with the
allowed tower depth growing as trials complete. Which (parent, mutation) pair is tried is chosen
by ``search.beam.screen``:

- ``gp`` (default): every new one-mutation child of the beam is scored by a Gaussian-process
  surrogate fitted on the completed trials (failed ones count as poor results), and the child with
  the highest expected improvement wins (ties broken by the proposal's rng);
- ``none``: a uniformly random parent and a random mutation drawn by ``search.mutations`` weights.

The first ``search.beam.initial`` proposals are random members, the beam's seeds. After them, each new best tower
first has every value of the hyperparameters ``search.beam.sweep`` names tried (one at a time, the others kept;
the surrogate orders them). A lineage otherwise keeps the rate its first tower was drawn with: in a spoken-language
search a recurrent tower drawn at a learning rate of 0.001 took the lead early and none of its descendants tried
0.003, which every other run of that space handed back; the surrogate, never shown the rate mattering, ranked
that child among near-equals. Of the other proposals, a share ``search.beam.explore`` are fresh members of the
whole space: on a space where many families do well (MNIST-1D), a greedy beam otherwise fills its top-K with one
lineage. An exploring proposal draws ``search.beam.explore_draws`` random members and keeps one by the same
surrogate, as ``search.beam.explore_pick`` says:

- ``thompson`` (default): the draw that is best under one sample of the GP's posterior. Likely
  towers win more often, but every family keeps its chance in proportion to the surrogate's doubt;
- ``ei``: the draw with the highest expected improvement. On MNIST-1D this collapsed exploration
  onto the surrogate's favourite family (a run whose early GRU tower did well proposed GRUs in 17
  of 21 explorations, against a fifth of random draws).

Random towers of the whole space rarely survive a rung of early stopping once the beam's family has raised
it (a keyword search under a parameter budget scored 94 of them: median 11-15% validation accuracy, two passed
ASHA's first rung), so exploring with them cannot bring a second family in. With ``search.beam.niches = N``
an exploring proposal instead mutates, with probability N / (N + 1), the best towers of one of the N best
families (towers that share their first block, ``Space.family``) other than the best tower's: the child stays
in the family and is screened as ``explore_pick`` says. A family then climbs from its own best towers, as the
beam does from the best of all. The remaining share founds families: a child of the beam that starts with
another block (its first block replaced, removed or preceded by another), so a new family is tried with the
best towers' later blocks rather than as a random tower. Which family is founded is, with ``search.beam.founding
= "fewest"`` (the default), one of those with the fewest towers so far, so every first block is tried from the
beam in turn; ``"screened"`` (before config v16) left the choice to the surrogate.

With ``search.beam.cost`` above 0 the surrogate's choice is cost-aware: a second GP, fitted on the
log of the seconds per epoch each completed trial reported, predicts what a candidate will cost,
and a candidate's expected improvement is divided by that cost raised to ``cost`` (1: expected
improvement per second, Snoek et al., 2012). Thompson draws are ranked by their sampled gain over
the best mean, divided the same way. Cheap towers are then tried before costly variants of equal
promise, which matters when a few blocks (full-resolution convolutions on a CPU) cost ten times
the others.

Under ``space.max_params`` with ``search.beam.budget = "learn"`` (the default) a tower's size is counted where it
can be: once a trainer described the data (a DataDescribed event, ``State.tower_input``), the space counts each
candidate's weights from its blocks (``Space.count_params``, no Keras), and a tower counted over the budget is never
proposed, random draws included (unless every draw is: then its trainer measures one). A measured size that differs
from the count turns counting off for the run. For towers with a block that cannot count its own (and once counting
is off) a Bayesian linear model of the log of the parameter counts trainers reported (towers that failed over the
budget report theirs too) in the blocks gives each candidate its probability of fitting the budget. It reads how
many of each block a tower holds and which block follows which (``search.beam.size_model = "blocks"``,
``Space.size_features``): a block's weights depend on the channels before it, and an inserted block then changes few
features. Reading which block sits at each depth (``"positions"``, runs before config v14) made every child of a
keyword search's best tower that added a convolution look oversized, and that search never grew its best tower past
3,596 parameters of 14,599. Only candidates at least as likely to fit as not are eligible (a probabilistic
constraint, Gelbart et al., 2014), and among them expected improvement is multiplied by that probability
(constrained expected improvement, Gardner et al., 2014); a Thompson pick keeps the best sample among them. A size
is nearly additive over blocks, which a linear model captures and a GP's kernel does not: on a synthetic run it gave
towers that fit a mean chance of 0.77 and oversized ones 0.24, where a GP of the same features gave 0.67 against
0.45. Over-budget failures then no longer count as poor results: the size model explains them. Without it, 29-42% of
a budgeted keyword search's towers were built only to fail; with counts, none of two keyword searches' (counted
from their blocks once the trainers described the data).
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from engine.metrics import seconds_per_epoch
from engine.searchers.base import Proposal, Searcher, SpaceExhausted
from engine.searchers.surrogate import (
    Features,
    GaussianProcess,
    LinearModel,
    Vectorizer,
    expected_improvement,
    normal_cdf,
)
from engine.space_options import TowerOptions
from engine.spaces import Neighbour, SizeFeatures
from engine.state import TOWER, Blame, State, TowerInput, Trial

TIE = 1e-9
FIT_CHANCE = 0.5  # under space.max_params, the least probability of fitting a proposed tower must have
INTERACTIONS = (0.25, 0.5, 1.0)  # weights of a size model's interaction features, chosen by the evidence
MAX_ROWS = 20_000  # dense feature rows kept between proposals


class BeamSearch(Searcher):
    """Adaptive greedy search over the top-K, optionally screened by a GP surrogate."""

    name = "beam"

    def __init__(self, config, space) -> None:
        super().__init__(config, space)
        self.options = config.search.beam
        budgeted = isinstance(config.space, TowerOptions) and self.options.budget == "learn"
        self.max_params = config.space.max_params if budgeted else 0
        self._neighbours: dict[tuple[int, int | None], list[tuple[str, Neighbour]]] = {}
        self._features: dict[str, Features] = {}
        self._columns: dict[str, int] = {}
        self._rows: dict[str, np.ndarray] = {}  # key -> its features as a row over self._columns
        self._counts: dict[tuple[TowerInput, tuple[str, ...]], int | None] = {}  # weights counted from blocks
        self._checked: dict[TowerInput, set[int]] = {}  # trials whose measured size was compared with the count
        self._miscounted: set[TowerInput] = set()  # descriptions a measured size contradicted

    def depth_limit(self, state: State) -> int | None:
        """The deepest tower allowed now: grows by one every ``grow_every`` completed trials."""
        if self.space.max_depth is None:
            return None
        grown = self.options.depth_start + len(state.completed) // self.options.grow_every
        return min(self.space.max_depth, grown)

    def propose(self, state: State, rng: random.Random) -> Proposal:
        limit = self.depth_limit(state)
        parents = [state.trials[t] for t in state.top]
        if state.proposals < self.options.initial or not parents:
            found = self.random_new(state, rng, limit)
            if found is not None:
                return found
        if parents and self.options.sweep:
            sweep = self._sweep(state, parents[0], limit)
            if sweep:
                return self._choose(state, sweep, rng)
        if parents and self.options.explore and rng.random() < self.options.explore:
            found = self._explore(state, rng)
            if found is not None:
                return found
        if parents and self.options.screen == "none":
            found = self.mutate_new(state, rng.choice(parents), rng, limit)
            if found is not None:
                return found
        candidates = self._new_children(state, parents, limit)
        if not candidates:
            # The beam's neighbourhood is spent: widen to the whole leaderboard, best first.
            candidates = self._new_children(state, state.leaderboard(), limit, enough=self.options.candidates)
        if not candidates:
            found = self.random_new(state, rng, limit)
            if found is not None:
                return found
            raise SpaceExhausted(f"no untried candidate found after {state.proposals} proposals")
        return self._choose(state, candidates, rng)

    def _sweep(self, state: State, leader: Trial, limit: int | None) -> list[tuple[Trial, Neighbour]]:
        """The best tower's untried children that change one hyperparameter ``sweep`` names: each new best tower
        has every value of those tried before anything else is proposed."""
        swept = set(self.options.sweep)
        changes = [(child, [name for name, value in child.hyperparameters.items()
                            if value != leader.hyperparameters.get(name)])
                   for _, child in self._new_children(state, [leader], limit)]
        return [(leader, child) for child, changed in changes if len(changed) == 1 and changed[0] in swept]

    def _explore(self, state: State, rng: random.Random) -> Proposal | None:
        """With ``niches``, a mutation of the best towers of a family the beam has left behind or a child of the beam
        that founds a family; else (or when none is left) a fresh member of the whole space: the best of
        ``explore_draws`` untried random draws."""
        if self.options.niches:
            niches = self._niches(state)
            pick = rng.randrange(len(niches) + 1)
            # The last choice founds a family: a child of the beam that starts with another block.
            found = self._from_niche(state, niches[pick], rng) if pick < len(niches) else self._new_family(state, rng)
            if found is not None:
                return found
        draws: dict[str, Proposal] = {}
        for _ in range(self.options.explore_draws):
            found = self.random_new(state, rng)
            if found is None:
                break
            draws.setdefault(self.space.describe(found.architecture, found.hyperparameters), found)
        if len(draws) < 2 or self.options.screen == "none" or len(state.completed) < 2:
            return next(iter(draws.values()), None)
        rows = [(key, draw.architecture, draw.hyperparameters) for key, draw in draws.items()]
        return list(draws.values())[self._most_promising(state, rows, rng, self.options.explore_pick)]

    def _niches(self, state: State) -> list[list[Trial]]:
        """The best towers of each of the ``niches`` best families other than the best tower's, best family
        first; a family ranks by its best tower."""
        families: dict[str, list[Trial]] = {}
        for trial in state.leaderboard():
            family = self.space.family(trial.architecture)
            if family is not None:
                families.setdefault(family, []).append(trial)
        return [towers[: self.options.k] for towers in list(families.values())[1: 1 + self.options.niches]]

    def _from_niche(self, state: State, towers: list[Trial], rng: random.Random) -> Proposal | None:
        """An untried one-mutation child of a family's best ``towers`` that stays in the family, screened by
        the surrogate as ``explore_pick`` says."""
        family = self.space.family(towers[0].architecture)
        return self._pick_child(state, towers, lambda child: child == family, rng)

    def _new_family(self, state: State, rng: random.Random) -> Proposal | None:
        """An untried one-mutation child of the beam that leaves the best tower's family (its first block replaced,
        removed or preceded by another): a new family starts from the best towers' later blocks, not from a random
        tower that an early-stopping rung would end. With ``founding = "fewest"`` the family is one of those with
        the fewest towers so far, drawn uniformly: the surrogate, left to choose, kept founding cheap pooling-first
        families (its cost discount favours them) and tried a keyword search's best family first at its 124th
        tower."""
        parents = [state.trials[t] for t in state.top]
        leader = self.space.family(parents[0].architecture)
        if self.options.founding == "screened":
            return self._pick_child(state, parents, lambda child: child != leader, rng)
        children = [(parent, child, self.space.family(child.architecture))
                    for parent, child in self._new_children(state, parents, None)]
        families = sorted({family for *_, family in children if family is not None and family != leader})
        if not families:
            return None
        towers = Counter(self.space.family(t.architecture) for t in state.trials.values() if t.kind == TOWER)
        fewest = min(towers[family] for family in families)
        target = rng.choice([family for family in families if towers[family] == fewest])
        candidates = [(parent, child) for parent, child, family in children if family == target]
        return self._choose(state, candidates, rng, self.options.explore_pick)

    def _pick_child(self, state: State, parents: list[Trial], keep: Callable[[str | None], bool],
                    rng: random.Random) -> Proposal | None:
        """An untried one-mutation child of ``parents`` whose family ``keep`` accepts, screened by the surrogate as
        ``explore_pick`` says."""
        candidates = [(parent, child) for parent, child in self._new_children(state, parents, None)
                      if keep(self.space.family(child.architecture))]
        return self._choose(state, candidates, rng, self.options.explore_pick) if candidates else None

    def _choose(self, state: State, candidates: list[tuple[Trial, Neighbour]], rng: random.Random,
                pick: str = "ei") -> Proposal:
        """One of the (parent, child) ``candidates`` as a proposal: screened by the surrogate as ``pick`` says, or
        uniform without screening (or before two trials have completed)."""
        if self.options.screen == "none" or len(state.completed) < 2:
            parent, child = rng.choice(candidates)
        else:
            parent, child = self._screen(state, candidates, rng, pick)
        return Proposal(child.architecture, child.hyperparameters, parent.id, child.mutation)

    def _children(self, parent: Trial, limit: int | None) -> list[tuple[str, Neighbour]]:
        cached = self._neighbours.get((parent.id, limit))
        if cached is None:
            weights = self.config.search.mutations.weights()
            children = self.space.neighbours(parent.architecture, parent.hyperparameters, limit, weights)
            cached = [(self.space.describe(c.architecture, c.hyperparameters), c) for c in children]
            self._neighbours[(parent.id, limit)] = cached
        return cached

    def _new_children(self, state: State, parents: Iterable[Trial], limit: int | None,
                      enough: int | None = None) -> list[tuple[Trial, Neighbour]]:
        """Untried children of ``parents`` not counted over ``space.max_params``, each key once, in parent then
        neighbour order."""
        found: dict[str, tuple[Trial, Neighbour]] = {}
        for parent in parents:
            for key, child in self._children(parent, limit):
                if key not in state.keys and key not in found and not self._counted_over(state, child.architecture):
                    found[key] = (parent, child)
            if enough is not None and len(found) >= enough:
                break
        return list(found.values())

    def _encode(self, key: str, architecture, hyperparameters) -> Features:
        features = self._features.get(key)
        if features is None:
            features = self._features[key] = self.space.encode(architecture, hyperparameters)
        return features

    def _matrix(self, vectorizer: Vectorizer, keys: list[str]) -> np.ndarray:
        """The encoded features of ``keys`` (each encoded before) as the rows of a matrix over the
        vectorizer's columns; rows are kept while the columns stay the same (they mostly do)."""
        if vectorizer.columns != self._columns or len(self._rows) > MAX_ROWS:
            self._columns, self._rows = vectorizer.columns, {}
        missing = [key for key in dict.fromkeys(keys) if key not in self._rows]
        for key, row in zip(missing, vectorizer.transform([self._features[key] for key in missing]), strict=True):
            self._rows[key] = row
        return np.array([self._rows[key] for key in keys]).reshape(len(keys), len(self._columns))

    def _history(self, state: State) -> list[Trial]:
        """The trials the surrogate learns from: all scored ones, or the best and the latest."""
        scored = [t for t in state.completed_towers() if t.score is not None]
        cap = self.options.history
        if len(scored) <= cap:
            return scored
        best = sorted(scored, key=lambda t: (-t.score, t.id))[: cap // 2]
        chosen = {t.id for t in best}
        latest = [t for t in reversed(scored) if t.id not in chosen][: cap - len(best)]
        return sorted(best + latest, key=lambda t: t.id)

    def _screen(self, state: State, candidates: list[tuple[Trial, Neighbour]],
                rng: random.Random, pick: str = "ei") -> tuple[Trial, Neighbour]:
        if len(candidates) > self.options.candidates:
            picked = sorted(rng.sample(range(len(candidates)), self.options.candidates))
            candidates = [candidates[i] for i in picked]
        rows = [(self.space.describe(c.architecture, c.hyperparameters), c.architecture, c.hyperparameters)
                for _, c in candidates]
        return candidates[self._most_promising(state, rows, rng, pick)]

    def _most_promising(self, state: State, rows: list[tuple[str, Any, dict[str, Any]]],
                        rng: random.Random, pick: str = "ei") -> int:
        """The index of the row (key, architecture, hyperparameters) that a GP fitted on the completed
        trials likes best: by expected improvement (``pick = "ei"``) or by one posterior sample
        (``"thompson"``); a random one when the GP cannot be fitted."""
        scored = history = self._history(state)
        scores = [t.score for t in history]
        # Failed candidates (over the parameter budget, diverging, unbuildable) count as poor results,
        # so the surrogate steers away from their neighbourhood instead of learning nothing from them;
        # lost leases and transfer failures are not the architecture's fault and do not count.
        failed = [state.trials[t] for t in state.failed[-self.options.history // 4:]
                  if state.trials[t].blame == Blame.CANDIDATE and state.trials[t].kind == TOWER
                  and not self._over_budget(state.trials[t])]
        if failed and scores:
            floor = min(scores) - max(float(np.std(scores)), 1e-3)
            history, scores = history + failed, scores + [floor] * len(failed)
        train = [self._encode(t.key, t.architecture, t.hyperparameters) for t in history]
        features = [self._encode(*row) for row in rows]
        vectorizer = Vectorizer(train + features)
        candidates = self._matrix(vectorizer, [key for key, _, _ in rows])
        try:
            gp = GaussianProcess().fit(self._matrix(vectorizer, [t.key for t in history]), np.array(scores))
            discount = self._cost_discount(scored, vectorizer, candidates)
            chance = self._fit_chance(state, rows)
            # Only candidates more likely to fit the budget than not (or the likeliest, when none is) are eligible.
            eligible = chance >= FIT_CHANCE if (chance >= FIT_CHANCE).any() else chance == chance.max()
            if pick == "thompson":
                sample = np.where(eligible, gp.sample(candidates, rng), -np.inf)
                gain = np.maximum(sample - gp.best_mean, 0.0) * discount
                return int(np.argmax(gain if gain.max() > 0 else sample))
        except np.linalg.LinAlgError:
            return rng.randrange(len(rows))
        mean, std = gp.predict(candidates)
        ei = np.where(eligible, expected_improvement(mean, std, gp.best_mean) * discount * chance, -1.0)
        top = float(ei.max())
        # Scores within a hair of the best are ties, broken by the rng: this keeps the choice exact
        # even where linear algebra differs in its last bits between machines.
        ties = [i for i, value in enumerate(ei) if value >= top - TIE * max(1.0, abs(top))]
        return rng.choice(ties)

    def _over_budget(self, trial: Trial) -> bool:
        """Whether ``trial`` failed for its size: its trainer reported more parameters than the budget."""
        return bool(self.max_params) and (trial.metrics or {}).get("params", 0) > self.max_params

    def _fit_chance(self, state: State, rows: list[tuple[str, Any, dict[str, Any]]]) -> np.ndarray:
        """Each row's probability of having at most ``space.max_params`` parameters (all ones without a budget):
        0 or 1 where the space counts its weights (once a trainer described the data), else learned
        (:meth:`_learned_fit_chance`)."""
        chance = np.ones(len(rows))
        if not self.max_params:
            return chance
        uncounted = []
        for i, (_, architecture, _) in enumerate(rows):
            params = self._count(state, architecture)
            if params is None:
                uncounted.append(i)
            else:
                chance[i] = float(params <= self.max_params)
        if uncounted:
            chance[uncounted] = self._learned_fit_chance(state, [rows[i][1] for i in uncounted])
        return chance

    def _count(self, state: State, architecture: Any) -> int | None:
        """A tower's weights counted from its blocks, or None (no description of the data yet, a block that cannot
        count its own, or counts that a trainer's measurement contradicted)."""
        if state.tower_input is None or not self._counts_hold(state):
            return None
        return self._counted(state.tower_input, architecture)

    def _counted(self, built_on: TowerInput, architecture: Any) -> int | None:
        key = (built_on, tuple(architecture))
        if key not in self._counts:
            self._counts[key] = self.space.count_params(architecture, built_on)
        return self._counts[key]

    def _counts_hold(self, state: State) -> bool:
        """Whether every tower a trainer measured has the size its blocks count on the described input. One that
        does not (a description that does not fit the data, a block that counts wrong) turns counting off for the
        run: sizes are learned from the measurements instead, as they were before any description."""
        built_on = state.tower_input
        if built_on in self._miscounted:
            return False
        checked = self._checked.setdefault(built_on, set())
        for trial_id in (*state.completed, *state.failed):
            if trial_id in checked:
                continue
            checked.add(trial_id)
            trial = state.trials[trial_id]
            measured = (trial.metrics or {}).get("params")
            if trial.kind != TOWER or not measured:
                continue
            counted = self._counted(built_on, trial.architecture)
            if counted is not None and counted != measured:
                self._miscounted.add(built_on)
                return False
        return True

    def _learned_fit_chance(self, state: State, architectures: list[Any]) -> np.ndarray:
        """Each architecture's probability of fitting the budget: known for one a trainer measured, else
        predicted by :func:`fit_chances` from the latest ``history`` measured architectures (all ones before two
        were). Size is the architecture's alone, so it reads no hyperparameters."""
        sizes: dict[str, tuple[Any, float]] = {}
        for trial in state.trials.values():
            params = (trial.metrics or {}).get("params")
            if trial.kind == TOWER and params:
                name = self.space.describe(trial.architecture, {})
                sizes.pop(name, None)  # the latest last
                sizes[name] = (trial.architecture, params)
        measured = list(sizes.values())[-self.options.history:]
        if len(measured) < 2:
            return np.ones(len(architectures))
        chance = fit_chances([(self._size_features(architecture), params) for architecture, params in measured],
                             [self._size_features(architecture) for architecture in architectures], self.max_params)
        for i, architecture in enumerate(architectures):
            known = sizes.get(self.space.describe(architecture, {}))
            if known is not None:
                chance[i] = float(known[1] <= self.max_params)
        return chance

    def random_new(self, state: State, rng: random.Random, max_depth: int | None = None,
                   attempts: int = 200) -> Proposal | None:
        """A random member not tried before and not counted over ``space.max_params``; where every new one drawn in
        ``attempts`` is counted over, the first of them (its trainer then measures it), or None where none was new."""
        over = None
        for _ in range(attempts):
            found = super().random_new(state, rng, max_depth, attempts=1)
            if found is None:
                continue
            if not self._counted_over(state, found.architecture):
                return found
            over = over or found
        return over

    def _counted_over(self, state: State, architecture: Any) -> bool:
        if not self.max_params:
            return False
        params = self._count(state, architecture)
        return params is not None and params > self.max_params

    def _size_features(self, architecture: Any) -> SizeFeatures:
        """What the size model reads of an architecture, as ``search.beam.size_model`` says."""
        if self.options.size_model == "blocks":
            return self.space.size_features(architecture)
        return SizeFeatures(self.space.encode(architecture, {}), {})

    def _cost_discount(self, scored: list[Trial], vectorizer: Vectorizer, candidates: np.ndarray) -> np.ndarray:
        """What each candidate's promise is multiplied by for its predicted cost: 1 / seconds**cost
        (all ones when ``cost`` is 0 or fewer than two of the ``scored`` trials reported their time)."""
        if not self.options.cost:
            return np.ones(len(candidates))
        costed = [(t, seconds_per_epoch(t.metrics)) for t in scored if t.metrics]
        costed = [(t, seconds) for t, seconds in costed if seconds]
        if len(costed) < 2:
            return np.ones(len(candidates))
        train = self._matrix(vectorizer, [t.key for t, _ in costed])
        log_seconds = np.log([seconds for _, seconds in costed])
        mean, _ = GaussianProcess().fit(train, log_seconds).predict(candidates)
        # Relative to the cheapest candidate, so the discount stays near 1 and EI's scale is kept.
        return np.exp(-self.options.cost * (mean - mean.min()))


def fit_chances(measured: list[tuple[SizeFeatures, float]], wanted: list[SizeFeatures], max_params: int,
                interactions: tuple[float, ...] = INTERACTIONS) -> np.ndarray:
    """Each of ``wanted``'s probability of at most ``max_params`` parameters, by a Bayesian linear model of the log
    parameter count fitted on ``measured`` (features, parameter count) pairs. The interactions are weighed by
    whichever of ``interactions`` gives the sizes seen the highest evidence: where sizes add up over blocks they
    only add doubt, where a block's size depends on its neighbour they carry it.

    Example::

        >>> fit_chances([(space.size_features(a), params[a]) for a in seen], [space.size_features(b)], 40_000)
    """
    scales = interactions if any(features.interactions for features, _ in measured) else (0.0,)
    sizes = np.array([math.log(params) for _, params in measured])
    best = None
    for scale in scales:
        train = [features.weighted(scale) for features, _ in measured]
        wanted_rows = [features.weighted(scale) for features in wanted]
        # Features only candidates have are columns too: their weights keep the prior's doubt.
        vectorizer = Vectorizer(train + wanted_rows)
        model = LinearModel().fit(vectorizer.transform(train), sizes)
        if best is None or model.log_evidence > best[0].log_evidence:
            best = (model, vectorizer.transform(wanted_rows))
    mean, std = best[0].predict(best[1])
    return normal_cdf((math.log(max_params) - mean) / std)
