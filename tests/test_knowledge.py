"""Planning what trials share, engine side (no TensorFlow): weight sources, teachers, ensemble steps."""

from __future__ import annotations

from pathlib import Path

import msgpack
import pytest
from support import tower_config

from engine import events as ev
from engine.config import Config, resolve_config
from engine.ensembles import ensemble_key, plan_ensemble, plan_replica
from engine.inheritance import plan_inheritance, plan_teacher
from engine.log import EventLog
from engine.options import ConfigError
from engine.scheduler import Scheduler
from engine.state import ENSEMBLE, State
from engine.work import WorkItem

DIGEST = "ab" * 32


def keras_config(**sections) -> Config:
    raw = {"space": {"kind": "tower", "max_depth": 3}, "data": {"dataset": "mnist1d"}, **sections}
    return resolve_config(raw)


def run_with(config: Config, results: list[tuple[float, float]]) -> tuple[State, Scheduler]:
    """A state with one completed tower per (val_accuracy, val_loss), each with weights and outputs."""
    state = State()
    scheduler = Scheduler(state, now=0.0, clock=lambda: 0.0)
    scheduler.emit(ev.SEARCH_STARTED, {"run_id": "r", "config": config.to_dict(), "lineage": "test", "bundle": None})
    for accuracy, val_loss in results:
        [item] = scheduler.assign("t", 1)
        assert item.kind == "tower"
        scheduler.complete(item.lease, {"val_accuracy": accuracy, "val_loss": val_loss},
                           {"weights": DIGEST, "outputs": DIGEST})
    return state, scheduler


def test_sharing_from_the_parent_or_averaged_over_the_best() -> None:
    state, _ = run_with(keras_config(sharing={"mode": "parent"}), [(0.5, 1.0), (0.9, 0.25), (0.7, 0.5)])
    ids = sorted(state.trials)[1:]
    assert plan_inheritance(state, parent=ids[1]) == {"mode": "parent", "sources": [ids[1]], "weights": [1.0]}
    assert plan_inheritance(state, parent=None)["mode"] == "off"
    state.config = keras_config(sharing={"mode": "average", "weighting": "loss", "sources": 2})
    plan = plan_inheritance(state, parent=None)
    best, second = state.top[:2]
    assert plan["sources"] == [best, second]
    assert plan["weights"] == pytest.approx([2 / 3, 1 / 3]), "weights follow 1 / val_loss"


def test_the_teacher_is_the_best_tower_or_ensemble_and_ramps_up() -> None:
    config = keras_config(distillation={"teacher": "best", "weight": 0.4, "adaptive": True, "ramp": 4},
                          ensemble={"strategy": "adaptive"})
    state, _ = run_with(config, [(0.5, 1.0), (0.9, 0.25)])
    teacher = plan_teacher(state)
    assert teacher["kind"] == "trial" and teacher["id"] == state.top[0]
    assert teacher["weight"] == pytest.approx(0.4 * 2 / 4), "two of four ramp trials completed"


def test_adaptive_ensembles_grow_only_when_they_improve() -> None:
    state, scheduler = run_with(keras_config(), [(0.80, 1.0), (0.85, 0.9), (0.70, 1.2)])
    # From here on with ensembles, growing one tower at a time only (without the leaderboard's top as a whole).
    state.config = keras_config(ensemble={"strategy": "adaptive", "width": 3, "top": False})
    best, second, third = state.top
    [step] = scheduler.assign("t", 1)
    assert step.kind == ENSEMBLE and step.architecture.members == (best, second)
    assert {m.trial for m in step.members} == {best, second} and DIGEST in step.needs
    scheduler.complete(step.lease, {"val_accuracy": 0.88, "val_loss": 0.8}, {"outputs": DIGEST})
    assert state.ensemble == step.trial
    [worse] = scheduler.assign("t", 1)
    assert worse.architecture.members == (best, second, third)
    scheduler.complete(worse.lease, {"val_accuracy": 0.86, "val_loss": 0.9}, {"outputs": DIGEST})
    assert state.ensemble == step.trial, "an addition that does not help is set aside"
    assert plan_ensemble(state) is None, "every beam tower was tried against the best ensemble"
    [tower] = scheduler.assign("t", 1)
    assert tower.kind == "tower"
    assert state.top == [best, second, third], "ensembles never enter the beam"


def test_a_tower_that_beats_the_best_ensemble_starts_a_new_one() -> None:
    state, scheduler = run_with(keras_config(), [(0.80, 1.0), (0.75, 0.9)])
    state.config = keras_config(ensemble={"strategy": "adaptive", "width": 2})
    first, second = state.top
    [step] = scheduler.assign("t", 1)
    scheduler.complete(step.lease, {"val_accuracy": 0.82, "val_loss": 0.8}, {"outputs": DIGEST})
    assert plan_ensemble(state) is None, "the ensemble is full and beats every tower"
    state.config = keras_config(ensemble={"strategy": "none"})
    [tower] = scheduler.assign("t", 1)
    scheduler.complete(tower.lease, {"val_accuracy": 0.95, "val_loss": 0.2}, {"weights": DIGEST,
                                                                                 "outputs": DIGEST})
    state.config = keras_config(ensemble={"strategy": "adaptive", "width": 2})
    assert plan_ensemble(state)["members"] == [tower.trial, first], "restarted from the new best tower"


def test_an_ensemble_that_ties_the_best_tower_wins_on_validation_loss() -> None:
    state, scheduler = run_with(keras_config(), [(0.99, 0.10), (0.98, 0.12)])
    state.config = keras_config(ensemble={"strategy": "adaptive"})
    [same] = scheduler.assign("t", 1)
    scheduler.complete(same.lease, {"val_accuracy": 0.99, "val_loss": 0.11}, {"outputs": DIGEST})
    assert state.ensemble is None, "a tie on accuracy with a higher loss is no improvement"
    state.config = keras_config(ensemble={"strategy": "adaptive", "combiner": "weighted"})
    [better] = scheduler.assign("t", 1)
    scheduler.complete(better.lease, {"val_accuracy": 0.99, "val_loss": 0.07}, {"outputs": DIGEST})
    assert state.ensemble == better.trial, "the same accuracy with a lower loss is"


@pytest.mark.parametrize("criterion", ["val_loss", "score"])
def test_the_ensemble_criterion_decides_what_an_ensemble_must_beat(criterion: str) -> None:
    """By validation loss, an ensemble that lowers the loss is kept though it ties or trails on accuracy,
    and any tower with a lower loss clears it; by score, accuracy comes first."""
    config = keras_config(ensemble={"strategy": "adaptive", "criterion": criterion})
    state, scheduler = run_with(config, [(0.99, 0.10), (0.98, 0.12)])
    [step] = scheduler.assign("t", 1)
    assert step.kind == ENSEMBLE
    scheduler.complete(step.lease, {"val_accuracy": 0.985, "val_loss": 0.06}, {"outputs": DIGEST})
    assert state.ensemble == (step.trial if criterion == "val_loss" else None)
    if criterion == "val_loss":
        state.config = keras_config(ensemble={"strategy": "none", "criterion": criterion})
        [tower] = scheduler.assign("t", 1)
        scheduler.complete(tower.lease, {"val_accuracy": 0.9, "val_loss": 0.05}, {"outputs": DIGEST})
        assert tower.trial not in state.top[:1] and state.ensemble is None, "a tower with a lower loss clears it"


@pytest.mark.parametrize("start", ["criterion", "leader"])
def test_ensembles_grow_from_the_tower_they_must_beat(start: str) -> None:
    """By validation loss the tower an ensemble must beat need not lead on accuracy; growing from the
    leader then pairs a high-loss tower with others, which seldom clears the low-loss one."""
    config = keras_config(ensemble={"strategy": "adaptive", "start": start, "replicas": 1, "replica_wait": 0,
                                    "top": False})
    state, scheduler = run_with(keras_config(), [(0.99, 0.10), (0.98, 0.06), (0.97, 0.08)])
    state.config = config
    leader, low_loss, third = state.top
    assert state.best_trial().id == leader and state.strongest_tower().id == low_loss
    members = plan_ensemble(state)["members"]
    assert members == ([low_loss, leader] if start == "criterion" else [leader, low_loss])
    assert plan_replica(state).id == (low_loss if start == "criterion" else leader)


def test_a_full_adaptive_ensemble_takes_in_the_new_top_towers() -> None:
    """Growing one tower at a time stops at ``width`` members; the leaderboard's best ``width`` towers, tried
    each time they change, let a later, better tower in."""
    config = keras_config(ensemble={"strategy": "adaptive", "width": 2})
    state, scheduler = run_with(keras_config(), [(0.80, 1.0), (0.85, 0.9), (0.70, 1.2)])
    state.config = config
    best, second, _ = state.top
    [step] = scheduler.assign("t", 1)
    assert step.kind == ENSEMBLE and step.architecture.members == (best, second), "the top two, as one step"
    scheduler.complete(step.lease, {"val_accuracy": 0.86, "val_loss": 0.8}, {"outputs": DIGEST})
    assert state.ensemble == step.trial and plan_ensemble(state) is None, "full, and the top is tried"
    state.config = keras_config(ensemble={"strategy": "none"})
    [tower] = scheduler.assign("t", 1)
    scheduler.complete(tower.lease, {"val_accuracy": 0.75, "val_loss": 0.95}, {"weights": DIGEST, "outputs": DIGEST})
    state.config = config
    assert state.ensemble == step.trial and state.top[:2] == [best, second], "the new tower is third"
    assert plan_ensemble(state) is None, "the top two are the same: nothing new to try"
    state.config = keras_config(ensemble={"strategy": "none"})
    [tower] = scheduler.assign("t", 1)
    scheduler.complete(tower.lease, {"val_accuracy": 0.95, "val_loss": 0.85}, {"weights": DIGEST, "outputs": DIGEST})
    state.config = config
    assert plan_ensemble(state)["members"] == [tower.trial, best], "the new leader and the best, replacing second"
    assert not keras_config(ensemble={"strategy": "adaptive", "top": False}).ensemble.top


def test_intermixed_ensembles_take_every_nth_proposal() -> None:
    config = keras_config(ensemble={"strategy": "intermixed", "every": 3})
    state, scheduler = run_with(config, [(0.8, 1.0), (0.7, 1.0)])
    assert state.proposals == 2
    [step] = scheduler.assign("t", 1)
    assert step.kind == ENSEMBLE and ensemble_key(step.architecture.to_message()).startswith("ensemble ")
    [tower] = scheduler.assign("t", 1)
    assert tower.kind == "tower"


def test_replicas_train_the_ensembles_towers_again_from_fresh_weights() -> None:
    """Deep ensembles: once no ensemble step is due, the towers the ensemble is built from are trained
    again with other seeds, without inherited weights, and the replicas join its pool."""
    config = keras_config(ensemble={"strategy": "adaptive", "replicas": 2, "replica_wait": 1, "top": False},
                          sharing={"mode": "parent"}, distillation={"teacher": "best"})
    state, scheduler = run_with(config, [(0.85, 0.9), (0.80, 1.0)])
    best, second = state.top
    assert state.trials[second].mutation != "replica", "the best tower waited for one more tower to complete"
    outputs = {"weights": DIGEST, "outputs": DIGEST}

    def next_candidate(val_accuracy: float, val_loss: float) -> WorkItem:
        [item] = scheduler.assign("t", 1)
        scheduler.complete(item.lease, {"val_accuracy": val_accuracy, "val_loss": val_loss}, outputs)
        return item

    assert next_candidate(0.84, 0.95).architecture.members == (best, second)  # set aside
    replica, original = state.trials[next_candidate(0.84, 0.92).trial], state.trials[best]
    assert (replica.kind, replica.architecture, replica.hyperparameters, replica.parent) == (
        "tower", original.architecture, original.hyperparameters, best)
    assert replica.mutation == "replica" and replica.key == original.key + " (replica 1)"
    assert replica.seed != original.seed and replica.inherit["mode"] == "off", "fresh weights: its own mistakes"
    assert replica.teacher["id"] == state.top[0], "the teacher any new tower would get"
    pair = next_candidate(0.87, 0.7)
    assert pair.architecture.members == (best, replica.id), "the replica joins the pool"
    assert state.ensemble == pair.trial
    assert next_candidate(0.86, 0.8).architecture.members == (best, replica.id, second)
    again = state.trials[next_candidate(0.83, 0.93).trial]
    assert again.parent == best and again.key.endswith("(replica 2)"), "a replica counts for its original"
    assert next_candidate(0.88, 0.6).architecture.members == (best, replica.id, again.id)
    assert next_candidate(0.87, 0.65).architecture.members == (best, replica.id, again.id, second)
    tower = state.trials[next_candidate(0.5, 2.0).trial]
    assert tower.kind == "tower" and tower.mutation != "replica", "two replicas each, then the search goes on"


@pytest.mark.parametrize(("sections", "message"), [
    ({"sharing": {"mode": "parent"}}, "sharing.mode = 'parent' needs trained networks"),
    ({"distillation": {"teacher": "ensemble"}, "data": {"dataset": "mnist1d"}}, "needs ensembles"),
    ({"distillation": {"teacher": "best"}, "data": {"dataset": "diabetes"}}, "needs a classification task"),
    ({"ensemble": {"replicas": 2}, "data": {"dataset": "mnist1d"}}, "ensemble.replicas .* set ensemble.strategy"),
])
def test_knowledge_sharing_settings_are_checked(sections: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        resolve_config({"space": {"kind": "tower"}, **sections})


def test_version_1_candidates_and_results_are_upcast(tmp_path: Path) -> None:
    config = {key: value for key, value in tower_config().to_dict().items() if key != "version"}  # as v1 stored it
    v1 = [
        msgpack.packb({"type": ev.SEARCH_STARTED, "v": 1, "at": 0.0,
                       "payload": {"run_id": "old", "config": config, "lineage": "0.1.0"}}),
        msgpack.packb({"type": ev.CANDIDATE_PROPOSED, "v": 1, "at": 0.0, "payload": {
            "architecture": ["dense_64"], "hyperparameters": {}, "key": "dense_64", "parent": None, "mutation": None,
            "seed": 1, "position": 0}}),
        msgpack.packb({"type": ev.TRIAL_ASSIGNED, "v": 1, "at": 0.0,
                       "payload": {"trial": 2, "trainer": "t", "deadline": 1.0}}),
        msgpack.packb({"type": ev.TRIAL_COMPLETED, "v": 1, "at": 0.0,
                       "payload": {"trial": 2, "lease": 3, "metrics": {"val_accuracy": 0.5}, "artifacts": {}}}),
    ]
    with EventLog.create(tmp_path, sync=False) as log:
        log.copy(v1, expected_head=0)  # as that Lineage stored them
        events = list(log.read())
        assert [raw for _, raw in log.read_raw()] == v1
    proposed, completed = events[1].payload, events[3].payload
    assert (proposed["kind"], proposed["inherit"]["mode"], proposed["teacher"]) == ("tower", "off", None)
    assert completed["inherited"] == []


# -- combining members (numpy only) -----------------------------------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from trainers.ensembles import evaluate_ensemble, fit_weights, member_predictions, score  # noqa: E402


def split_outputs(rng, n_classes: int = 4, sizes=(30, 40, 20)) -> dict:
    return {split: rng.normal(size=(size, n_classes)) for split, size in zip(("train", "validation", "test"), sizes,
                                                                             strict=True)}


def test_an_ensemble_of_identical_members_predicts_what_one_member_predicts() -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    member = split_outputs(rng)
    targets = {split: rng.integers(0, 4, len(values)) for split, values in member.items()}
    for combiner in ("average", "weighted"):
        report = evaluate_ensemble([member, member, member], targets, combiner, "classification", seed=1)
        for split, values in member.items():
            assert np.allclose(member_predictions(report.outputs[split], "classification"),
                               member_predictions(values, "classification")), "its outputs are the same logits"
        assert report.metrics["val_accuracy"] == score(member_predictions(member["validation"], "classification"),
                                                       targets["validation"], "classification")


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), members=st.integers(2, 5), task=st.sampled_from(["classification", "regression"]))
def test_the_weighted_combiner_never_scores_below_the_best_member_on_its_fitting_data(seed, members, task) -> None:
    import numpy as np

    rng = np.random.default_rng(seed)
    rows = 40
    if task == "classification":
        targets = rng.integers(0, 3, rows)
        predictions = [member_predictions(rng.normal(size=(rows, 3)) + 2 * np.eye(3)[targets] * rng.random(),
                                          task) for _ in range(members)]
    else:
        targets = rng.normal(size=rows)
        predictions = [(targets + rng.normal(scale=rng.random() + 0.1, size=rows))[:, None] for _ in range(members)]
    weights = fit_weights(predictions, targets, task)
    assert abs(sum(weights) - 1) < 1e-9 and min(weights) >= 0
    mixed = score(sum(w * p for w, p in zip(weights, predictions, strict=True)), targets, task)
    singles = [score(p, targets, task) for p in predictions]
    if task == "classification":
        assert mixed >= max(singles) - 1e-12
    else:
        assert mixed <= min(singles) + 1e-12


def test_weights_follow_the_better_member() -> None:
    import numpy as np

    rng = np.random.default_rng(5)
    targets = rng.normal(size=200)
    good = (targets + rng.normal(scale=0.1, size=200))[:, None]
    poor = (targets + rng.normal(scale=1.0, size=200))[:, None]
    good_weight, poor_weight = fit_weights([good, poor], targets, "regression")
    assert good_weight > 0.8 > poor_weight
