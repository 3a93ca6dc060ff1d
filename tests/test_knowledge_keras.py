"""Knowledge shared between trials, with real Keras: inherited layers, the teacher's loss, ensembles
exported as one model, and a whole run with all three replayed, verified and forked."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from support import ROOT, status_json, tower_item, write_toml

from blocks.tower import DataSpec, build_tower
from engine.runs import state_at
from engine.state import Kind, Status
from trainers.distillation import distillation_loss, pack_targets
from trainers.sharing import inherit_weights

keras = pytest.importorskip("keras")

SPEC = DataSpec((40,), "classification", 10)


def trained(architecture: list[str], seed: int) -> object:
    keras.utils.set_random_seed(seed)
    model = build_tower(architecture, {}, SPEC, name=f"m{seed}")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(seed)
    model.fit(rng.normal(size=(32, 40)), rng.integers(0, 10, 32), epochs=1, verbose=0)
    return model


def test_copied_layers_hold_the_parents_values_and_the_rest_do_not() -> None:
    parent = trained(["conv1d_16_k3", "maxpool1d", "dense_32"], seed=1)
    keras.utils.set_random_seed(2)
    child = build_tower(["conv1d_16_k3", "avgpool1d", "dense_32"], {}, SPEC, name="child")  # block 1 replaced
    fresh = {layer.name: layer.get_weights() for layer in child.layers}
    copied = inherit_weights(child, [(parent, 1.0)], same_architecture=False)
    assert copied == ["b0_conv1d_16_k3_conv", "b2_dense_32_dense"], "same block, same position, same shapes"
    for name in copied:
        for mine, theirs in zip(child.get_layer(name).get_weights(), parent.get_layer(name).get_weights(),
                                strict=True):
            assert np.array_equal(mine, theirs)
    for mine, initial in zip(child.get_layer("head_logits").get_weights(), fresh["head_logits"], strict=True):
        assert np.array_equal(mine, initial), "the head of another architecture keeps its fresh initialisation"
    assert not np.array_equal(child.get_layer("head_logits").get_weights()[0],
                              parent.get_layer("head_logits").get_weights()[0])


def test_averaged_layers_are_the_weighted_mean_of_the_sources() -> None:
    a, b = trained(["dense_32"], seed=3), trained(["dense_32"], seed=4)
    child = build_tower(["dense_32"], {}, SPEC, name="child")
    copied = inherit_weights(child, [(a, 0.75), (b, 0.25)], same_architecture=True)
    assert set(copied) == {"b0_dense_32_dense", "head_logits"}, "same architecture: the head is shared too"
    expected = 0.75 * a.get_layer("head_logits").get_weights()[0] + 0.25 * b.get_layer("head_logits").get_weights()[0]
    assert np.allclose(child.get_layer("head_logits").get_weights()[0], expected, atol=1e-6)


@pytest.mark.parametrize("kind", ["soft", "logits"])
def test_the_teacher_term_changes_the_loss_as_its_formula_says(kind: str) -> None:
    rng = np.random.default_rng(0)
    labels, student, teacher = rng.integers(0, 5, 8), rng.normal(size=(8, 5)), rng.normal(size=(8, 5))
    temperature, weight = 3.0, 0.4
    got = np.asarray(distillation_loss(kind, temperature, weight)(
        pack_targets(labels, teacher), student.astype("float32")))

    def log_softmax(z):
        z = z - z.max(axis=1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=1, keepdims=True))

    hard = -log_softmax(student)[np.arange(8), labels]
    if kind == "soft":
        p = np.exp(log_softmax(teacher / temperature))
        term = temperature**2 * (p * (log_softmax(teacher / temperature) - log_softmax(student / temperature))).sum(1)
    else:
        term = ((student - teacher) ** 2).mean(1)
    assert np.allclose(got, (1 - weight) * hard + weight * term, atol=1e-5)
    assert np.allclose(np.asarray(distillation_loss(kind, temperature, 0.0)(
        pack_targets(labels, teacher), student.astype("float32"))), hard, atol=1e-5), "weight 0: no teacher"


ALL_THREE = """
[search]
trials = 10
seed = 2
[search.beam]
initial = 3
[space]
kind = "tower"
blocks = ["conv1d_16_k3", "maxpool1d", "dense_32"]
max_depth = 3
[space.hparams]
learning_rate = [0.003]
dropout = [0.0]
batch_size = [64]
optimizer = ["adam"]
[data]
dataset = "mnist1d"
samples = 600
[training]
epochs = 2
patience = 0
[sharing]
mode = "parent"
[distillation]
teacher = "ensemble"
weight = 0.3
[ensemble]
strategy = "adaptive"
combiner = "weighted"
criterion = "score"   # children of 2-epoch parents keep lowering the loss; accuracy lets an ensemble stand
width = 3
replicas = 1
replica_wait = 2
"""


@pytest.fixture(scope="module")
def knowledge_run(tmp_path_factory) -> Path:
    import subprocess
    import sys

    folder = tmp_path_factory.mktemp("knowledge")
    config = write_toml(folder / "all.toml", ALL_THREE)
    # One trainer: with two, which trial completes first depends on timing, and so does the search (under load
    # one run in several kept no ensemble); with one, each trial's seed fixes the whole run.
    subprocess.run([sys.executable, "-m", "engine", "run", "--run", str(folder / "run"), "--config", str(config),
                    "--trainers", "1", "--quiet"], check=True, capture_output=True, timeout=600, cwd=folder)
    return folder / "run"


def test_every_trained_tower_has_its_learning_curve_in_the_log(knowledge_run: Path, engine_here) -> None:
    """Trainers report each epoch as they train; the log keeps the curves, and replay rebuilds them."""
    state = state_at(knowledge_run)
    towers = [t for t in state.trials.values() if t.status is Status.COMPLETED and t.kind is Kind.TOWER]
    assert towers
    for tower in towers:
        assert [epoch.epoch for epoch in tower.curve] == list(range(1, int(tower.metrics["epochs"]) + 1))
        # A student's validation loss is its distillation loss: only its accuracy is reported.
        assert {"val_accuracy"} <= set(tower.curve[-1].metrics) <= {"val_accuracy", "val_loss"}
        assert "val_loss" in tower.curve[-1].metrics or tower.teacher is not None
    replayed = json.loads(engine_here("replay", "--run", str(knowledge_run), "--json").stdout)
    curves = {t["trial"]: t["curve"] for t in replayed["trials"]}
    assert curves[towers[0].id] == [epoch.as_dict() for epoch in towers[0].curve]
    assert "EpochsReported" in engine_here("log", "--run", str(knowledge_run)).stdout


def test_a_run_with_all_three_replays_to_the_same_ensemble_and_verifies(knowledge_run: Path, engine_cli,
                                                                        engine_here) -> None:
    from engine import events as ev
    from engine.log import EventLog

    status = status_json(engine_cli, knowledge_run)
    assert status["completed"] == 10 and status["ensemble"] is not None
    with EventLog.open_reader(knowledge_run) as log:
        events = list(log.read())
    proposals = [e.payload for e in events if e.type == ev.CANDIDATE_PROPOSED]
    assert any(p["kind"] == "ensemble" for p in proposals)
    assert any(p["inherit"]["mode"] == "parent" for p in proposals), "children inherit from their parents"
    assert any(p["teacher"] for p in proposals), "students learn from a teacher"
    replicas = [p for p in proposals if p["mutation"] == "replica"]
    assert replicas and all(p["inherit"]["mode"] == "off" for p in replicas), "replicas start from fresh weights"
    inherited = [e.payload["inherited"] for e in events if e.type == ev.TRIAL_COMPLETED]
    assert any(inherited), "some child copied layers"
    assert "reproduce exactly" in engine_here("replay", "--run", str(knowledge_run), "--verify").stdout
    replayed = json.loads(engine_here("replay", "--run", str(knowledge_run), "--json").stdout)
    assert replayed["ensemble"] == status["ensemble"]


def test_a_fork_taken_after_an_ensemble_step_keeps_that_ensemble(knowledge_run: Path, tmp_path: Path,
                                                                 engine_cli, engine_here) -> None:
    from engine import events as ev
    from engine.log import EventLog

    with EventLog.open_reader(knowledge_run) as log:
        events = list(log.read())
    ensembles = {e.seq for e in events if e.type == ev.CANDIDATE_PROPOSED and e.payload["kind"] == "ensemble"}
    step = next(e for e in events if e.type == ev.TRIAL_COMPLETED and e.payload["trial"] in ensembles)
    parent_view = json.loads(engine_here("replay", "--run", str(knowledge_run), "--at", str(step.seq), "--json").stdout)
    engine_cli("fork", "--run", str(knowledge_run), "--at", str(step.seq), "--into", str(tmp_path / "fork"),
               "--set", "search.algorithm=random")
    forked = status_json(engine_cli, tmp_path / "fork")
    assert forked["ensemble"] is not None and forked["ensemble"]["trial"] == parent_view["ensemble"]["trial"]


def test_the_best_ensemble_exports_as_one_model_and_evaluates_beside_the_best_single(knowledge_run: Path,
                                                                                    tmp_path: Path, engine_here):
    from engine.runs import state_at
    from trainers.export import ExportError, Pick, choose_trial

    engine_here("export", "--run", str(knowledge_run), "--out", str(tmp_path / "ens"))  # what the search hands back
    metadata = json.loads((tmp_path / "ens" / "lineage.json").read_text())
    state = state_at(knowledge_run)
    assert metadata["kind"] == "ensemble" and len(metadata["members"]) >= 2
    assert metadata["trial"] == state.best_ensemble().id == choose_trial(state, None, Pick.ENSEMBLE).id
    assert choose_trial(state, None, Pick.TOWER) is state.best_trial() and state.best_trial().kind == "tower"
    state.ensemble = None  # a run whose ensembles never beat its best tower
    assert choose_trial(state, None, Pick.BEST) is state.best_trial()
    with pytest.raises(ExportError, match="no ensemble that beats its best single tower"):
        choose_trial(state, None, Pick.ENSEMBLE)
    assert abs(sum(m["weight"] for m in metadata["members"]) - 1) < 1e-6
    report = json.loads(engine_here("evaluate", "--model", str(tmp_path / "ens"), "--json").stdout)
    assert 0 <= report["accuracy"] <= 1 and 0 <= report["best_single"]["accuracy"] <= 1
    text = engine_here("evaluate", "--model", str(tmp_path / "ens")).stdout
    assert "best single member:" in text


def test_an_ensemble_of_one_tower_repeated_predicts_like_the_tower(tmp_path: Path) -> None:
    from trainers.layers import WeightedSum

    tower = trained(["dense_32"], seed=7)
    inputs = keras.Input((40,))
    outputs = [tower(inputs), tower(inputs)]
    model = keras.Model(inputs, WeightedSum([0.5, 0.5])(outputs))
    x = np.random.default_rng(1).normal(size=(16, 40)).astype("float32")
    assert np.allclose(model.predict(x, verbose=0), tower.predict(x, verbose=0), atol=1e-6)
    model.save(tmp_path / "m.keras")
    again = keras.saving.load_model(tmp_path / "m.keras")
    assert np.allclose(again.predict(x, verbose=0), tower.predict(x, verbose=0), atol=1e-6)


def test_a_search_of_whole_networks_trains_each_once_then_only_ensembles_them(tmp_path: Path, engine_cli) -> None:
    from engine import events as ev
    from engine.log import EventLog
    run = tmp_path / "nets"
    engine_cli("run", "--run", str(run), "--config", str(ROOT / "examples" / "ensemble_networks.toml"), "--quiet",
               "--set", "data.samples=600", "--set", "training.epochs=2", "--set", "space.hparams.learning_rate=[0.01]",
               "--set", 'space.blocks=["my_blocks:SmallCNN", "my_blocks:SmallMLP"]', timeout=300)
    with EventLog.open_reader(run) as log:
        events = list(log.read())
    proposals = [e.payload for e in events if e.type == ev.CANDIDATE_PROPOSED]
    towers = [p["architecture"] for p in proposals if p["kind"] == "tower"]
    assert sorted(towers) == [["my_blocks:SmallCNN"], ["my_blocks:SmallMLP"]], "each network trained once"
    assert [p["architecture"]["members"] for p in proposals if p["kind"] == "ensemble"], "then combined"
    assert "space exhausted" in events[-1].payload["reason"]
    status = status_json(engine_cli, run)
    scores = [e.payload["metrics"]["val_accuracy"] for e in events if e.type == ev.TRIAL_COMPLETED
              and e.payload["trial"] in {e.seq for e in events if e.type == ev.CANDIDATE_PROPOSED
                                         and e.payload["kind"] == "ensemble"}]
    best_tower = status["best"]["metrics"]["val_accuracy"]
    if status["ensemble"] is None:
        assert max(scores) <= best_tower, "an ensemble that beats every network alone is the best ensemble"
    else:
        assert status["ensemble"]["metrics"]["val_accuracy"] == max(scores) > best_tower


def test_towers_record_outputs_only_on_the_splits_ensembles_and_students_use(knowledge_run: Path) -> None:
    """Never the test split (a search does not look at it); the train split only where students learn from it."""
    from engine.artifacts import ARTIFACTS_DIR, ArtifactStore
    from engine.config import resolve_config
    from engine.state import Artifact
    from engine.work import Teacher
    from trainers.ensembles import outputs_of
    from trainers.evaluator import EvaluationError
    from trainers.keras_trainer import KerasEvaluator

    state, store = state_at(knowledge_run), ArtifactStore(knowledge_run / ARTIFACTS_DIR)
    recorded = [outputs_of(store.read(t.artifacts[Artifact.OUTPUTS])) for t in state.trials.values()
                if t.status is Status.COMPLETED and Artifact.OUTPUTS in (t.artifacts or {})]
    assert recorded and all(set(outputs) == {"train", "validation"} for outputs in recorded)

    config = resolve_config({"space": {"kind": "tower", "max_depth": 2}, "data": {"dataset": "mnist1d", "samples": 300},
                             "training": {"epochs": 1, "patience": 0}, "ensemble": {"strategy": "adaptive"}})
    evaluator = KerasEvaluator(config)
    outcome = evaluator.evaluate(tower_item(1, ["dense_32"]), fetch=store.read)
    outputs = outputs_of(outcome.artifacts[Artifact.OUTPUTS])
    assert set(outputs) == {"validation"}
    assert outputs["validation"].shape == (len(evaluator.data.targets["validation"]), 10)

    # A run forked into distillation finds teachers recorded without it: one clear error, not a KeyError.
    distilling = resolve_config({**config.to_dict(), "distillation": {"teacher": "best"}})
    teacher = Teacher(kind="trial", trial=1, loss="soft", temperature=4.0, weight=0.5, architecture=("dense_32",),
                      hyperparameters={}, outputs="0" * 64)
    with pytest.raises(EvaluationError, match="teacher, trial 1, has no recorded outputs on the train split"):
        KerasEvaluator(distilling).evaluate(tower_item(2, ["dense_32"], teacher=teacher),
                                            fetch=lambda digest: outcome.artifacts[Artifact.OUTPUTS])
