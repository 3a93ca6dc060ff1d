"""Blocks and the tower builder, with real Keras: every block builds and trains a step on its data."""

from __future__ import annotations

import re

import numpy as np
import pytest
from support import ROOT

from blocks import BlockError, function_block, layers, lookup, names, register, use_paths
from blocks.network import NetworkBlock
from blocks.tower import BuildError, DataSpec, Head, build_tower

keras = pytest.importorskip("keras")

SHAPES = {"dense": (12,), "sequence": (16, 3), "image": (8, 8, 3)}


def train_step(model, shape: tuple[int, ...], task: str = "classification") -> float:
    """One training step, run eagerly: tracing a graph of a tower of every block costs more than the step."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, *shape)).astype("float32")
    if task == "classification":
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", run_eagerly=True)
        y = rng.integers(0, 3, size=8)
    else:
        model.compile(optimizer="adam", loss="mse", run_eagerly=True)
        y = rng.normal(size=8).astype("float32")
    return float(model.train_on_batch(x, y))


@pytest.mark.parametrize("family", ["dense", "sequence", "image"])
def test_every_block_of_a_family_builds_and_trains_a_step(family: str) -> None:
    shape = SHAPES[family]
    builtin = [name for name in names(family) if ":" not in name]  # not user blocks other tests registered
    ordered = [name for name in builtin if lookup(name).keeps_order]
    tower = ordered + [name for name in builtin if name not in ordered]  # order-losing blocks last
    model = build_tower(tower, {"dropout": 0.1}, DataSpec(shape, "classification", 3), name="t")
    assert np.isfinite(train_step(model, shape))
    assert model.output_shape == (None, 3)
    for position, name in enumerate(tower):
        assert any(layer.name.startswith(f"b{position}_{name}") for layer in model.layers), name


def test_the_same_block_at_the_same_place_has_the_same_layer_names() -> None:
    spec = DataSpec((40,), "classification", 10)
    first = build_tower(["conv1d_32_k3", "maxpool1d", "dense_64"], {}, spec)
    second = build_tower(["conv1d_32_k3", "avgpool1d", "dense_64"], {}, spec)
    shared = {layer.name for layer in first.layers} & {layer.name for layer in second.layers}
    assert {"b0_conv1d_32_k3_conv", "b2_dense_64_dense"} <= shared
    assert "b1_maxpool1d_pool" not in shared


def test_the_builder_adapts_tensors_between_blocks() -> None:
    flat = DataSpec((40,), "classification", 10)
    model = build_tower(["conv1d_16_k3", "dense_32", "dense_32"], {}, flat)
    assert {"b0_conv1d_16_k3_as_sequence", "b1_dense_32_flatten"} <= {layer.name for layer in model.layers}
    grey = build_tower(["conv2d_16"], {}, DataSpec((8, 8), "classification", 2))
    assert grey.get_layer("b0_conv2d_16_as_image").output.shape == (None, 8, 8, 1)


@pytest.mark.parametrize(("architecture", "spec", "message"), [
    (["conv2d_16"], DataSpec((40,), "classification", 10), "block 0 (conv2d_16) takes an image, but gets flat"),
    (["conv1d_16_k3"], DataSpec((8, 8, 3), "classification", 10), "takes a sequence, but gets an image"),
    (["dense_32", "nonsense_block"], DataSpec((4,), "classification", 2), "block 1: unknown block"),
])
def test_towers_that_cannot_be_built_say_which_block_and_why(architecture, spec, message: str) -> None:
    with pytest.raises(BuildError, match=re.escape(message)):
        build_tower(architecture, {}, spec)


def test_a_regression_head_predicts_in_the_targets_units() -> None:
    spec = DataSpec((5,), "regression", 1, target_mean=(150.0,), target_scale=(70.0,))
    model = build_tower(["dense_32"], {}, spec)
    outputs = model.predict(np.zeros((64, 5), dtype="float32"), verbose=0)
    assert abs(float(outputs.mean()) - 150.0) < 70.0
    assert np.isfinite(train_step(model, (5,), task="regression"))


def test_user_blocks_load_from_a_module_path() -> None:
    use_paths([str(ROOT / "examples")])
    squeeze = lookup("my_blocks:SqueezeExcite")
    dilated = lookup("my_blocks:dilated_conv")
    assert (squeeze.family, squeeze.order_matters, dilated.family) == ("sequence", True, "sequence")
    model = build_tower(["my_blocks:dilated_conv", "my_blocks:SqueezeExcite"], {}, DataSpec((16,), "classification", 3))
    assert np.isfinite(train_step(model, (16,)))
    whole = build_tower(["my_blocks:SmallCNN", "dense_32"], {}, DataSpec((40,), "classification", 10))
    assert np.isfinite(train_step(whole, (40,)))
    with pytest.raises(BlockError, match="cannot import module 'no_such_module'"):
        lookup("no_such_module:Thing")
    with pytest.raises(BlockError, match="is not a Block class"):
        lookup("my_blocks:layers")


def test_function_blocks_and_whole_networks_are_blocks() -> None:
    @function_block(family="dense", order_matters=False, keeps_order=False)
    def halve(x, name):
        return layers().Dense(x.shape[-1] // 2, name=f"{name}_half")(x)

    class TinyNet(NetworkBlock):
        def network(self, input_shape):
            return keras.Sequential([keras.Input(input_shape), keras.layers.Conv1D(4, 3), keras.layers.Flatten()],
                                    name="tiny")

    register("test_halve")(halve)
    register("test_tinynet")(TinyNet)
    model = build_tower(["test_tinynet", "test_halve"], {}, DataSpec((10, 2), "classification", 3))
    assert np.isfinite(train_step(model, (10, 2)))
    with pytest.raises(BuildError, match="whole network: it must come first"):
        build_tower(["test_halve", "test_tinynet"], {}, DataSpec((10, 2), "classification", 3))
    with pytest.raises(BlockError, match="already registered"):
        register("test_halve")(halve)


def test_a_pooled_head_averages_the_last_feature_map_over_its_positions() -> None:
    """space.head = "pool": the output layer gets one number a channel, whatever the map's size, so a tower
    costs its blocks' weights and few more (flattening a 25x20x64 map costs 32,000 weights a class)."""
    spectrogram = DataSpec((49, 40), "classification", 12)
    tower = ["stem_conv2d_64_k10x4", "ds_conv2d_64"]
    flat, pooled = (build_tower(tower, {}, spectrogram, head=head) for head in (Head.FLATTEN, Head.POOL))
    assert flat.count_params() - pooled.count_params() == (25 * 20 * 64 - 64) * 12
    assert pooled.get_layer("head_pool").output.shape[1:] == (64,)
    assert np.isfinite(train_step(pooled, (49, 40)))
    sequence = build_tower(["conv1d_16_k3"], {}, DataSpec((40,), "classification", 3), head="pool")
    assert sequence.get_layer("head_pool").output.shape[1:] == (16,)
    assert build_tower(["dense_32"], {}, DataSpec((40,), "classification", 3), head="pool").count_params() == \
        build_tower(["dense_32"], {}, DataSpec((40,), "classification", 3)).count_params(), "flat: nothing to pool"


def test_a_ds_cnn_is_built_from_blocks_over_a_spectrogram() -> None:
    """DS-CNN (Zhang et al., 2017) over (frames, bands): the 10x4 stem halves both, a depthwise-separable
    layer keeps the shape with far fewer weights than a full convolution, and the one-axis strides halve
    only time or only frequency."""
    spectrogram = DataSpec((49, 40), "classification", 12)
    layers_of = ["stem_conv2d_64_k10x4", "ds_conv2d_64", "ds_conv2d_64", "ds_conv2d_64", "ds_conv2d_64",
                 "global_avg_pool2d"]
    model = build_tower(layers_of, {}, spectrogram)
    assert model.get_layer("b0_stem_conv2d_64_k10x4_relu").output.shape[1:] == (25, 20, 64)
    assert model.get_layer("b4_ds_conv2d_64_pointwise_relu").output.shape[1:] == (25, 20, 64)
    full = build_tower(["stem_conv2d_64_k10x4", "conv2d_64", "global_avg_pool2d"], {}, spectrogram)
    separable = build_tower(["stem_conv2d_64_k10x4", "ds_conv2d_64", "global_avg_pool2d"], {}, spectrogram)
    assert separable.count_params() < full.count_params() - 30_000
    assert 20_000 < model.count_params() < 40_000, model.count_params()
    assert np.isfinite(train_step(model, (49, 40)))
    for block, shape in (("downsample_time_conv2d_32", (25, 40, 32)), ("downsample_freq_conv2d_32", (49, 20, 32))):
        tower = build_tower([block], {}, spectrogram)
        assert tower.get_layer(f"b0_{block}_relu").output.shape[1:] == shape
