"""Spaces: random members, mutations and neighbours are valid; descriptions are stable keys."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import nb201_config, tower_config

from engine.spaces import SpaceError, make_space

WEIGHTS = {"add": 1.0, "replace": 1.0, "remove": 1.0, "hparam": 1.0}


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32), kind=st.sampled_from(["tower", "nb201"]), limit=st.integers(1, 6),
       draw=st.sampled_from(["blocks", "positions"]))
def test_random_members_and_their_neighbours_are_valid(seed: int, kind: str, limit: int, draw: str) -> None:
    config = tower_config(space__max_depth=6, space__draw=draw) if kind == "tower" else nb201_config()
    space = make_space(config.space)
    rng = random.Random(seed)
    arch, hp = space.random(rng, max_depth=limit)
    space.validate(arch, hp)
    if kind == "tower":
        assert len(arch) <= limit
    children = space.neighbours(arch, hp, max_depth=limit, weights=WEIGHTS)
    assert children
    keys = [space.describe(c.architecture, c.hyperparameters) for c in children]
    assert len(set(keys)) == len(keys), "each neighbour once"
    assert space.describe(arch, hp) not in keys, "a mutation changes the candidate"
    for child in children:
        space.validate(child.architecture, child.hyperparameters)
        if kind == "tower":
            assert len(child.architecture) <= max(limit, len(arch))
            assert abs(len(child.architecture) - len(arch)) <= 1
        else:
            assert sum(a != b for a, b in zip(arch, child.architecture, strict=True)) == 1
    mutated = space.mutate(arch, hp, rng, WEIGHTS, max_depth=limit)
    assert space.describe(mutated.architecture, mutated.hyperparameters) in keys


def test_random_towers_draw_every_block_alike_then_order_them() -> None:
    """Drawn as a collection, a block is as likely as any other wherever it ends up; drawn left to right,
    a dense block early forces dense blocks after it, so convolutions are rare in deep towers."""
    blocks = ["conv1d_32_k3", "conv1d_64_k3", "maxpool1d", "dense_32", "dense_64", "gru_32"]
    convolutions = {}
    for draw in ("blocks", "positions"):
        space = make_space(tower_config(space__blocks=blocks, space__min_depth=4, space__draw=draw).space)
        rng = random.Random(0)
        towers = [space.random(rng)[0] for _ in range(1500)]
        convolutions[draw] = sum(b.startswith("conv") for t in towers for b in t) / len(towers)
        if draw == "blocks":
            assert all(t.index(b) < t.index("dense_32") for t in towers if "dense_32" in t for b in t
                       if not b.startswith("dense"))
    assert 4 * 2 / 6 - 0.1 < convolutions["blocks"] < 4 * 2 / 6 + 0.1  # 4 blocks, 2 of 6 names convolutions
    assert convolutions["positions"] < 0.8 * convolutions["blocks"]


def test_nb201_has_24_neighbours_and_a_stable_description() -> None:
    space = make_space(nb201_config().space)
    arch = ["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3", "none"]
    assert len(space.neighbours(arch, {})) == 24
    assert space.describe(arch, {}) == "none|skip_connect|nor_conv_1x1|nor_conv_3x3|avg_pool_3x3|none"
    assert space.encode(arch, {})["n:none"] == 2


def test_mutation_weights_select_the_kinds_of_change() -> None:
    space = make_space(tower_config().space)
    arch, hp = ["conv1d_32_k3", "dense_64"], {"learning_rate": 0.001, "dropout": 0.1, "batch_size": 64,
                                               "optimizer": "adam"}
    only_hparams = space.neighbours(arch, hp, weights={"hparam": 1.0})
    assert only_hparams and all(c.mutation.startswith("hparam ") for c in only_hparams)
    assert all(c.architecture == arch for c in only_hparams)
    rng = random.Random(3)
    for _ in range(20):
        assert space.mutate(arch, hp, rng, {"remove": 1.0}).mutation.startswith("remove ")


@pytest.mark.parametrize(("arch", "message"), [
    (["dense_64", "conv1d_32_k3"], "needs ordered input, but 'dense_64' before it loses the order"),
    (["conv1d_32_k3", "conv2d_32"], "not in space.blocks"),
    ([], "outside the depth range"),
    (["dense_64"] * 5, "outside the depth range"),
    ("dense_64", "list of block names"),
])
def test_invalid_towers_say_why(arch, message: str) -> None:
    space = make_space(tower_config().space)
    hp = {"learning_rate": 0.001, "dropout": 0.1, "batch_size": 64, "optimizer": "adam"}
    with pytest.raises(SpaceError, match=message):
        space.validate(arch, hp)


def test_towers_do_not_mix_sequence_and_image_blocks() -> None:
    space = make_space(tower_config(space__blocks=["conv1d_32_k3", "conv2d_32", "dense_64"]).space)
    hp = {"learning_rate": 0.001, "dropout": 0.1, "batch_size": 64, "optimizer": "adam"}
    with pytest.raises(SpaceError, match="mixes image blocks"):
        space.validate(["conv1d_32_k3", "conv2d_32"], hp)
    for seed in range(50):
        arch, _ = space.random(random.Random(seed))
        families = {"conv1d_32_k3": "seq", "conv2d_32": "img"}
        assert len({families[b] for b in arch if b in families}) <= 1


def test_invalid_hyperparameters_say_why() -> None:
    space = make_space(tower_config().space)
    with pytest.raises(SpaceError, match="learning_rate=0.5 is not one of"):
        space.validate(["dense_64"], {"learning_rate": 0.5, "dropout": 0.1, "batch_size": 64, "optimizer": "adam"})
    with pytest.raises(SpaceError, match="must set exactly"):
        space.validate(["dense_64"], {"learning_rate": 0.001})
