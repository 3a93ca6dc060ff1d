"""Searchers: pure functions of (state, rng) that keep their promises about parents and repeats."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from support import ROOT, nb201_config, tower_config

from blocks.tower import DataSpec, count_params
from engine.config import Config
from engine.runs import create_run
from engine.scheduler import Scheduler
from engine.searchers import Proposer, proposal_seed
from engine.searchers.beam import BeamSearch
from engine.spaces import make_space
from engine.state import Blame, State, TowerInput
from trainers.evaluator import EvaluationError, make_evaluator


def search(tmp_path: Path, config: Config, check=None, settle=None, described: TowerInput | None = None,
           evaluator=None) -> State:
    """Run a whole search in-process: one trainer, results from the run's evaluator (or ``evaluator``), handed to
    ``settle(scheduler, item, metrics)`` when given (it may fail the item or change its metrics). ``described``:
    what the trainer says towers are built on, before it asks for work."""
    log, state = create_run(tmp_path, config, sync=False)
    scheduler = Scheduler(state, now=0.0)
    if described is not None:
        scheduler.describe(described)
    evaluator = evaluator or make_evaluator(config)
    settle = settle or (lambda scheduler, item, metrics: scheduler.complete(item.lease, metrics, {}))
    with log:
        while not scheduler.finish_if_done():
            if check is not None and state.queue == type(state.queue)() and state.proposals < state.budget:
                check(state)
            items = scheduler.assign("t", 1)
            if not items:
                scheduler.finish_if_done()
                break
            try:
                metrics = evaluator.evaluate(items[0], fetch=lambda digest: b"").metrics
            except EvaluationError as exc:  # as a trainer daemon reports it
                scheduler.fail(items[0].lease, str(exc), Blame.CANDIDATE, exc.metrics)
            else:
                settle(scheduler, items[0], metrics)
            log.append([raw for _, raw in scheduler.take()], expected_head=log.head)
        log.append([raw for _, raw in scheduler.take()], expected_head=log.head)
    return state


def test_beam_never_reproposes_and_mutates_a_parent_from_the_top_k(tmp_path: Path) -> None:
    config = nb201_config(search__trials=120, search__beam__k=4, search__beam__initial=5)
    parents_at_proposal: dict[int, list[int]] = {}

    def remember(state: State) -> None:
        parents_at_proposal[state.seq + 1] = list(state.top)

    state = search(tmp_path, config, check=remember)
    keys = [t.key for t in state.trials.values()]
    assert len(keys) == len(set(keys)) == 120
    mutated = [t for t in state.trials.values() if t.parent is not None]
    assert len(mutated) >= 110
    for trial in mutated:
        assert trial.parent in parents_at_proposal[trial.id], f"trial {trial.id}'s parent was not in the top-k"
        assert trial.mutation.startswith("replace ")
    assert [t.parent for t in state.trials.values()][:5] == [None] * 5


def test_beam_grows_the_allowed_depth_as_trials_complete(tmp_path: Path) -> None:
    config = tower_config(search__trials=60, search__beam__depth_start=1, search__beam__grow_every=15,
                          space__max_depth=4)
    state = search(tmp_path, config)
    for trial in state.trials.values():
        completed_before = sum(1 for t in state.completed if t < trial.id)
        assert len(trial.architecture) <= min(4, 1 + completed_before // 15)
    assert max(len(t.architecture) for t in state.trials.values()) == 4


def test_beam_explores_fresh_random_members_at_the_configured_rate(tmp_path: Path) -> None:
    config = tower_config(search__trials=80, search__beam__initial=5, search__beam__explore=0.25,
                          search__beam__depth_start=1, search__beam__grow_every=100, space__max_depth=4)
    state = search(tmp_path, config)
    later = [t for t in state.trials.values() if t.position >= 5]
    fresh = [t for t in later if t.parent is None]
    assert 8 <= len(fresh) <= 32, f"about a quarter of 75 proposals, got {len(fresh)}"
    assert max(len(t.architecture) for t in fresh) > 1, "explorations draw from the whole space, not the beam's depth"
    assert not any(t.mutation.startswith("add") for t in later if t.parent is not None), "mutations keep the limit"
    keys = [t.key for t in state.trials.values()]
    assert len(keys) == len(set(keys))


def test_beam_niches_mutate_the_best_towers_of_families_the_beam_left_behind(tmp_path: Path) -> None:
    """With ``niches = 2`` about two in three exploring proposals mutate a tower of another family than the best
    tower's (first block), among that family's best, and keep the family; the rest are children of the beam that
    leave the best tower's family."""
    config = tower_config(search__trials=60, search__beam__initial=6, search__beam__explore=1.0,
                          search__beam__niches=2, search__beam__k=3, space__max_depth=4, search__beam__sweep=[])
    at_proposal: dict[int, tuple[str, list[int], list[list[int]]]] = {}

    def remember(state: State) -> None:
        families: dict[str, list[int]] = {}
        for trial in state.leaderboard():
            families.setdefault(trial.architecture[0], []).append(trial.id)
        leader = state.trials[state.top[0]].architecture[0] if state.top else ""
        at_proposal[state.seq + 1] = (leader, list(state.top), [ids[:3] for ids in list(families.values())[1:3]])

    state = search(tmp_path, config, check=remember)
    later = [t for t in state.trials.values() if t.position >= 6]
    assert all(t.parent is not None for t in later), "no fresh random towers while families can be founded"
    in_niche, founding = [], []  # a tower of the beam can be a niche's best too: then a child may be either
    for trial in later:
        leader, top, niches = at_proposal[trial.id]
        parent = state.trials[trial.parent]
        stays = any(parent.id in niche for niche in niches) and trial.architecture[0] == parent.architecture[0]
        founds = parent.id in top and trial.architecture[0] != leader
        assert stays or founds, f"trial {trial.id} neither stays in a niche nor founds a family from the beam"
        (in_niche if stays else founding).append(trial)
    assert len(in_niche) >= len(later) / 3 and founding, (len(in_niche), len(founding), len(later))
    assert len({t.architecture[0] for t in in_niche}) >= 2, "more than one family is kept"
    keys = [t.key for t in state.trials.values()]
    assert len(keys) == len(set(keys))


def test_beam_founds_the_families_with_the_fewest_towers_first(tmp_path: Path) -> None:
    """With ``founding = "fewest"`` a founding proposal (a child of the beam that leaves the best tower's family)
    starts one of the families with the fewest towers that the beam's children reach, so every first block is
    tried before any is tried twice."""
    config = tower_config(search__trials=50, search__beam__initial=4, search__beam__explore=1.0,
                          search__beam__niches=1, search__beam__k=3, space__max_depth=3)
    at_proposal: dict[int, tuple[str, list[int], dict[str, int], set[str]]] = {}

    def remember(state: State) -> None:
        towers: dict[str, int] = {}
        for trial in state.trials.values():
            towers[trial.architecture[0]] = towers.get(trial.architecture[0], 0) + 1
        leader = state.trials[state.top[0]].architecture[0] if state.top else ""
        at_proposal[state.seq + 1] = (leader, list(state.top), towers, set(state.keys))

    state = search(tmp_path, config, check=remember)
    space = make_space(config.space)
    founded = []
    for trial in state.trials.values():
        if trial.position < 4 or trial.parent not in at_proposal[trial.id][1]:
            continue
        leader, top, towers, tried = at_proposal[trial.id]
        if trial.architecture[0] in (leader, state.trials[trial.parent].architecture[0]):
            continue  # the beam's own mutation, or a niche's from a tower that is in the beam too
        children = [child for t in top for child in space.neighbours(
            state.trials[t].architecture, state.trials[t].hyperparameters, None, config.search.mutations.weights())]
        reachable = {child.architecture[0] for child in children
                     if space.describe(child.architecture, child.hyperparameters) not in tried} - {leader}
        assert towers.get(trial.architecture[0], 0) == min(towers.get(family, 0) for family in reachable), trial.id
        founded.append(trial.architecture[0])
    assert len(founded) >= 10 and len(set(founded)) >= 5, founded


@pytest.mark.parametrize("sweep", [["learning_rate"], []])
def test_beam_tries_every_learning_rate_of_each_new_best_tower_first(tmp_path: Path, sweep: list[str]) -> None:
    """With ``sweep = ["learning_rate"]`` (the default) every proposal after the initial ones, while the best tower
    has a learning rate untried, is one of them; exploring proposals (here half of all) wait. Without it they are
    left to the surrogate and to exploring."""
    config = tower_config(search__trials=40, search__beam__initial=4, search__beam__explore=0.5,
                          search__beam__sweep=sweep)
    space = make_space(config.space)
    at_proposal: dict[int, tuple[int | None, set[str]]] = {}

    def remember(state: State) -> None:
        at_proposal[state.seq + 1] = (state.top[0] if state.top else None, set(state.keys))

    state = search(tmp_path, config, check=remember)
    rates = config.space.hparams.learning_rate
    owed, swept = 0, 0
    for trial in state.trials.values():
        leader, tried = at_proposal[trial.id]
        if trial.position < 4 or leader is None:
            continue
        best = state.trials[leader]
        untried = {space.describe(best.architecture, {**best.hyperparameters, "learning_rate": rate})
                   for rate in rates} - tried
        if untried:
            owed += 1
            swept += trial.key in untried and trial.parent == leader
    assert owed >= 4
    if sweep:
        assert swept == owed, (swept, owed)
    else:
        assert swept < owed / 2, (swept, owed)


def test_beam_without_screening_draws_mutations_by_their_weights(tmp_path: Path) -> None:
    config = tower_config(search__trials=40, search__beam__screen="none", search__mutations__add=0,
                          search__mutations__remove=0, search__mutations__replace=0, search__mutations__hparam=1)
    state = search(tmp_path, config)
    mutations = [t.mutation for t in state.trials.values() if t.mutation]
    assert mutations and all(m.startswith("hparam ") for m in mutations)


def test_evolution_mutates_the_best_of_a_sample_of_the_latest_trials(tmp_path: Path) -> None:
    config = nb201_config(search__algorithm="evolution", search__trials=60, search__evolution__population=8,
                          search__evolution__sample=3)
    state = search(tmp_path, config)
    for trial in state.trials.values():
        if trial.parent is not None:
            window = [t for t in state.completed if t < trial.id][-8:]
            assert trial.parent in window, "parents come from the last `population` completed trials"
    assert [t.parent for t in state.trials.values()][:8] == [None] * 8


def test_a_search_that_exhausts_its_space_finishes_early(tmp_path: Path) -> None:
    config = nb201_config(search__trials=100, space__ops=["none", "nor_conv_3x3"])
    state = search(tmp_path, config)
    assert state.proposals == 64 == len({t.key for t in state.trials.values()})
    assert state.finished.startswith("space exhausted")


SEEDS = [5229719403380803477, 1421326009363657605, 4465364758653794682]


def test_proposal_seeds_depend_only_on_the_run_seed_and_position() -> None:
    # Fixed values: a change here would change every recorded run's proposals (and fail replay --verify).
    assert [proposal_seed(0, 0), proposal_seed(0, 1), proposal_seed(7, 0)] == SEEDS
    assert len({proposal_seed(seed, position) for seed in range(5) for position in range(50)}) == 250
    assert all(0 <= proposal_seed(7, p) < 2**63 for p in range(100))


def test_a_searcher_gives_the_same_proposal_for_the_same_state(tmp_path: Path) -> None:
    state = search(tmp_path, nb201_config(search__trials=30))
    state.config = dataclasses.replace(state.config, search=dataclasses.replace(state.config.search, trials=31))
    first, second = Proposer().propose(state), Proposer().propose(state)
    assert first == second
    again = Proposer()
    again.propose(state)  # a warm cache gives the same answer as a cold one
    assert again.propose(state) == first


def test_beam_depth_limit_follows_its_schedule() -> None:
    config = tower_config(search__beam__depth_start=2, search__beam__grow_every=10, space__max_depth=4)
    beam = BeamSearch(config, make_space(config.space))
    state = State(config=config)
    assert beam.depth_limit(state) == 2
    state.completed = list(range(25))
    assert beam.depth_limit(state) == 4
    state.completed = list(range(100))
    assert beam.depth_limit(state) == 4


def test_screened_beam_finds_good_nb201_cells_quickly(tmp_path: Path) -> None:
    """A cheap check of search quality; the benchmark measures it properly (500+ seeds)."""
    from trainers.table import load_table

    means = load_table("cifar10").mean_accuracies()
    threshold = np.percentile(list(means.values()), 95)
    reached = []
    for seed in range(6):
        state = search(tmp_path / str(seed), nb201_config(search__trials=40, search__seed=seed))
        reached.append(any(means[t.key] >= threshold for t in state.trials.values()))
    assert sum(reached) >= 5, "beam should reach the top 5% of NAS-Bench-201 within 40 trials almost always"


def test_random_search_draws_uniformly(tmp_path: Path) -> None:
    state = search(tmp_path, nb201_config(search__algorithm="random", search__trials=300))
    first_edge = [t.architecture[0] for t in state.trials.values()]
    counts = {op: first_edge.count(op) for op in set(first_edge)}
    assert len(counts) == 5 and min(counts.values()) > 30
    assert all(t.parent is None for t in state.trials.values())


def test_beam_steers_away_from_candidates_that_fail(tmp_path: Path) -> None:
    """Failed trials count as poor results for the surrogate: a block that always fails is avoided."""

    def proposals_with_failing_block(screen: str, seed: int) -> int:
        config = tower_config(search__trials=60, search__seed=seed, search__beam__screen=screen,
                              search__beam__depth_start=3, space__max_depth=4)

        def settle(scheduler: Scheduler, item, metrics: dict) -> None:
            if "dense_128" in item.architecture:
                scheduler.fail(item.lease, "over budget")
            else:
                scheduler.complete(item.lease, metrics, {})

        state = search(tmp_path / f"{screen}-{seed}", config, settle=settle)
        return sum("dense_128" in t.architecture for t in state.trials.values() if t.position >= 20)

    screened = sum(proposals_with_failing_block("gp", seed) for seed in range(3))
    uniform = sum(proposals_with_failing_block("none", seed) for seed in range(3))
    assert screened < uniform / 2, (screened, uniform)


def test_a_budget_aware_beam_builds_fewer_towers_over_max_params_or_finds_better_ones(tmp_path: Path) -> None:
    """Under ``space.max_params`` the synthetic trainer fails towers over it, reporting their size. With
    ``search.beam.budget = "learn"`` the beam learns the sizes. Reading positions, the size model is sure of
    itself: far fewer towers fail than when the beam only counts their failures as poor results, at as good a
    best tower. Reading blocks and their neighbours it doubts more, admits towers near the budget, and finds
    better ones (8 seeds: 50 failures against 43 blind and 14 with positions, best 0.899 against 0.887 and
    0.885)."""
    from trainers.synthetic import synthetic_accuracy, synthetic_params

    def run(budget: str, size_model: str, seed: int) -> tuple[int, float]:
        config = tower_config(search__trials=60, search__seed=seed, search__beam__budget=budget,
                              search__beam__size_model=size_model, search__beam__explore=0.3, space__max_depth=5,
                              space__max_params=40_000, search__beam__sweep=[])
        state = search(tmp_path / f"{budget}-{size_model}-{seed}", config)
        late = [t for t in state.trials.values() if t.position >= 20]
        assert all(t.metrics["params"] == synthetic_params(t.architecture) for t in late if t.metrics), \
            "failed towers carry the size their trainer reported"
        fitting = [synthetic_accuracy(t.architecture, t.hyperparameters) for t in state.trials.values()
                   if synthetic_params(t.architecture) <= 40_000]
        return sum(t.id in state.failed for t in late), max(fitting)

    positions = [run("learn", "positions", seed) for seed in range(4)]
    blocks = [run("learn", "blocks", seed) for seed in range(4)]
    blind = [run("ignore", "blocks", seed) for seed in range(4)]
    assert sum(n for n, _ in positions) < sum(n for n, _ in blind) / 2, (positions, blind)
    assert np.median([b for _, b in positions]) >= np.median([b for _, b in blind]) - 0.01, (positions, blind)
    assert np.median([b for _, b in blocks]) >= np.median([b for _, b in positions]), (blocks, positions)


def test_a_beam_told_what_towers_are_built_on_proposes_none_over_max_params(tmp_path: Path) -> None:
    """Once a trainer described the data (a DataDescribed event), the beam counts each candidate's weights from
    its blocks and proposes no tower over ``space.max_params``; before that, and for blocks that cannot count
    their own, it learns sizes from what trainers report, and some towers are built only to fail."""
    described = TowerInput((40,), 10, 0, "classification")
    data = DataSpec(described.shape, described.task, described.outputs)
    budget = 20_000

    def settle(scheduler: Scheduler, item, metrics: dict[str, float]) -> None:  # a trainer's Keras count
        params = count_params(item.architecture, data)
        if params > budget:
            scheduler.fail(item.lease, f"{params:,} parameters exceed space.max_params", Blame.CANDIDATE,
                           {"params": float(params)})
        else:
            scheduler.complete(item.lease, {**metrics, "params": float(params)}, {})

    def failures(told: bool, seed: int) -> int:
        config = tower_config(search__trials=40, search__seed=seed, space__max_depth=5, space__max_params=budget)
        unbounded = make_evaluator(tower_config(search__seed=seed, space__max_depth=5))
        state = search(tmp_path / f"{told}-{seed}", config, settle=settle, described=described if told else None,
                       evaluator=unbounded)
        assert (state.tower_input == described) is told
        return len(state.failed)

    assert [failures(True, seed) for seed in range(3)] == [0, 0, 0]
    assert sum(failures(False, seed) for seed in range(3)) > 0  # 19 here


def test_a_description_that_measured_sizes_contradict_turns_counting_off(tmp_path: Path) -> None:
    """A trainer that describes the data wrongly (here 25,000 times the features it trains on, so every tower is
    counted over the budget) cannot end the search: the beam still proposes a tower, its trainer measures it,
    and from the first size that contradicts the count the beam learns sizes instead, proposing what it would
    have proposed without the description."""
    data = DataSpec((40,), "classification", 10)
    wrong = TowerInput((1_000_000,), 10, 0, "classification")

    def settle(scheduler: Scheduler, item, metrics: dict[str, float]) -> None:
        params = count_params(item.architecture, data)
        if params > 20_000:
            scheduler.fail(item.lease, "over", Blame.CANDIDATE, {"params": float(params)})
        else:
            scheduler.complete(item.lease, {**metrics, "params": float(params)}, {})

    config = tower_config(search__trials=30, space__max_depth=5, space__max_params=20_000)
    unbounded = make_evaluator(tower_config(space__max_depth=5))
    misled = search(tmp_path / "misled", config, settle=settle, described=wrong, evaluator=unbounded)
    untold = search(tmp_path / "untold", config, settle=settle, evaluator=unbounded)
    assert misled.proposals == 30 and len(misled.completed) > 20
    assert [t.key for t in misled.trials.values()] == [t.key for t in untold.trials.values()]


def test_a_cost_aware_beam_tries_fewer_costly_towers(tmp_path: Path) -> None:
    """With ``search.beam.cost = 1`` the block whose towers report 20 times the seconds per epoch (the block that
    scores best, so the cost-blind beam seeks it out) is proposed far less often, at little loss of quality."""
    from trainers.synthetic import synthetic_accuracy

    costly = "bottleneck_dense_128"

    def costly_proposals(cost: float, seed: int) -> tuple[int, float]:
        config = tower_config(search__trials=60, search__seed=seed, search__beam__cost=cost,
                              search__beam__depth_start=3, space__max_depth=4)

        def settle(scheduler: Scheduler, item, metrics: dict) -> None:
            metrics["train_seconds"] = 20.0 if costly in item.architecture else 1.0
            scheduler.complete(item.lease, metrics, {})

        state = search(tmp_path / f"{cost}-{seed}", config, settle=settle)
        late = [t for t in state.trials.values() if t.position >= 20]
        best = max(synthetic_accuracy(t.architecture, t.hyperparameters) for t in state.trials.values())
        return sum(costly in t.architecture for t in late), best

    aware = [costly_proposals(1.0, seed) for seed in range(8)]
    blind = [costly_proposals(0.0, seed) for seed in range(8)]
    assert sum(n for n, _ in aware) < sum(n for n, _ in blind) / 2, (aware, blind)
    assert np.median([b for _, b in aware]) >= np.median([b for _, b in blind]) - 0.03, (aware, blind)


@pytest.mark.parametrize("pick", ["thompson", "ei"])
def test_screened_exploration_keeps_promising_random_draws(tmp_path: Path, pick: str) -> None:
    """Every proposal after the seeds explores; screening 32 draws finds better towers than one draw."""
    screened = [explored(tmp_path, pick, 32, seed)[0] for seed in range(3)]
    plain = [explored(tmp_path, pick, 1, seed)[0] for seed in range(3)]
    assert all(s > p for s, p in zip(screened, plain, strict=True)), (screened, plain)


def test_thompson_exploration_spreads_over_more_blocks_than_expected_improvement(tmp_path: Path) -> None:
    """Picking by expected improvement crowds exploration onto the surrogate's favourite blocks; a posterior
    sample keeps the mix of blocks nearer to plain random draws."""
    thompson = [explored(tmp_path, "thompson", 32, seed)[1] for seed in range(3)]
    ei = [explored(tmp_path, "ei", 32, seed)[1] for seed in range(3)]
    assert sum(thompson) < sum(ei), (thompson, ei)


def explored(tmp_path: Path, pick: str, draws: int, seed: int) -> tuple[float, float]:
    """The mean synthetic accuracy of a run's explored towers, and the share of their blocks that the
    commonest block takes."""
    from trainers.synthetic import synthetic_accuracy

    config = tower_config(search__trials=40, search__seed=seed, search__beam__initial=5, search__beam__explore=1.0,
                          search__beam__explore_draws=draws, search__beam__explore_pick=pick,
                          search__beam__sweep=[])
    state = search(tmp_path / f"{pick}-{draws}-{seed}", config)
    fresh = [t for t in state.trials.values() if t.position >= 10]
    assert all(t.parent is None for t in fresh), "explorations are fresh members, not mutations"
    blocks = [block for t in fresh for block in t.architecture]
    commonest = max(blocks.count(block) for block in set(blocks)) / len(blocks)
    return float(np.mean([synthetic_accuracy(t.architecture, t.hyperparameters) for t in fresh])), commonest


def test_the_size_model_reading_blocks_lets_the_best_tower_of_a_budgeted_search_grow() -> None:
    """A keyword search under ``space.max_params`` (its towers recorded by benchmarks/keywords_search.py) stalled
    on towers of a stem and pooling: reading which block sits at each depth, the size model put every child of
    the best tower that adds a convolution over the budget, though Keras counts many of them well under it.
    Reading block counts and neighbour pairs, it admits most of those that fit."""
    import json

    from blocks.tower import DataSpec, build_tower
    from engine.config import load_config
    from engine.searchers.beam import fit_chances
    from engine.spaces import SizeFeatures

    recorded = json.loads((ROOT / "benchmarks/results/keywords_small_learn_24min_seed1_towers.json").read_text())
    config = load_config(ROOT / "examples/keywords.toml", recorded["overrides"])
    space, budget = make_space(config.space), config.space.max_params
    towers = sorted(recorded["runs"][0]["towers"], key=lambda t: t["trial"])[:60]
    best = max((t for t in towers if t["val_accuracy"] is not None), key=lambda t: t["val_accuracy"])
    deeper = [c.architecture for c in space.neighbours(best["architecture"], best["hp"], 7)
              if c.mutation.startswith("add") and c.mutation.split(": ")[1].startswith(("conv", "ds_conv"))]
    mfccs = DataSpec((51, 10), "classification", 12)  # a second of 20 ms hops, 10 MFCCs, 12 classes
    fitting = [a for a in deeper if build_tower(a, {}, mfccs, head="pool").count_params() <= budget]
    assert len(fitting) >= 10, "the best tower had room to grow"
    measured = [t for t in towers if t["params"]]

    def admitted(features) -> float:
        chance = fit_chances([(features(t["architecture"]), t["params"]) for t in measured],
                             [features(a) for a in fitting], budget)
        return float(np.mean(chance >= 0.5))

    assert admitted(lambda architecture: SizeFeatures(space.encode(architecture, {}), {})) == 0.0
    assert admitted(space.size_features) >= 0.5
