"""Counting a tower's weights without Keras (blocks' ``count``) agrees with Keras' own count of the built model."""

from __future__ import annotations

import pytest
from support import ROOT

from blocks import lookup, names, use_paths
from blocks.tower import BuildError, DataSpec, Head, build_tower, count_params

keras = pytest.importorskip("keras")

#: Input shapes per family, odd sizes among them (strides round up); a sequence and an image also arrive with an
#: axis too few, and dense blocks also take a sequence (flattened).
SHAPES = {"dense": [(12,), (5, 3)], "sequence": [(15, 3), (9,)], "image": [(11, 9, 3), (10, 7)]}
#: Blocks to put after each block, so its output's channels feed another block's count.
AFTER = {"dense": "residual_dense_64", "sequence": "residual_conv1d_32", "image": "resnet_16"}


def keras_count(architecture: list[str], data: DataSpec, head: Head) -> int:
    return build_tower(architecture, {"dropout": 0.1}, data, head=head).count_params()


def towers(family: str) -> list[list[str]]:
    blocks = [name for name in names(family) if ":" not in name]  # built in: user blocks other tests registered
    return [[name, AFTER[family]] if lookup(name).keeps_order else [name] for name in blocks]


@pytest.mark.parametrize("head", list(Head))
@pytest.mark.parametrize("family", sorted(SHAPES))
def test_each_block_counts_the_weights_keras_makes(family: str, head: Head) -> None:
    for shape in SHAPES[family]:
        for task, outputs in (("classification", 5), ("regression", 2)):
            scale = (1.0,) * outputs if task == "regression" else ()
            data = DataSpec(shape, task, outputs, target_mean=(0.0,) * len(scale), target_scale=scale)
            for tower in towers(family):
                assert count_params(tower, data, head) == keras_count(tower, data, head), (tower, shape, task)


@pytest.mark.parametrize("head", list(Head))
def test_token_towers_count_their_embedding(head: Head) -> None:
    data = DataSpec((16,), "classification", 4, tokens=57)
    for tower in (["embedding_16", "conv1d_16_k3", "gru_32", "attention_2h"], ["bag_of_tokens_32", "dense_32"],
                  ["lstm_32", "global_max_pool1d"], ["bilstm_32"]):  # the last two embedded by default
        assert count_params(tower, data, head) == keras_count(tower, data, head), tower


def test_a_keyword_tower_counts_as_keras_does() -> None:
    data = DataSpec((51, 10, 1), "classification", 12)
    tower = ["stem_conv2d_64_k10x4", "ds_conv2d_64", "downsample_freq_conv2d_32", "nasa_cell_16", "maxpool2d",
             "ds_conv2d_128", "global_avg_pool2d", "lowrank_dense_128"]
    assert count_params(tower, data, Head.POOL) == keras_count(tower, data, Head.POOL)


def test_a_user_block_that_counts_its_weights_counts_as_keras_does() -> None:
    use_paths([str(ROOT / "examples")])
    data = DataSpec((40,), "classification", 10)
    for tower in (["conv1d_32_k3", "my_blocks:SqueezeExcite", "dense_64"], ["my_blocks:SqueezeExcite"]):
        assert count_params(tower, data) == keras_count(tower, data, Head.FLATTEN), tower
    assert count_params(["my_blocks:dilated_conv"], data) is None  # a function block cannot say: learned instead


def test_a_tower_that_cannot_be_built_is_refused_by_the_count_as_by_the_builder() -> None:
    data = DataSpec((12,), "classification", 3)
    for tower in (["dense_32", "embedding_16"], ["embedding_16"], ["no_such_block"]):
        with pytest.raises(BuildError) as counted:
            count_params(tower, data)
        with pytest.raises(BuildError) as built:
            build_tower(tower, {}, data)
        assert str(counted.value) == str(built.value)
