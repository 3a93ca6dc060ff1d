"""Dense blocks: fully connected layers, for flat inputs; the order of their input does not matter."""

from __future__ import annotations

from typing import Any

from blocks.registry import Block, Count, Shape, layers, register


class _DenseFamily(Block):
    family = "dense"
    order_matters = False
    keeps_order = False


def _residual(x: Any, h: Any, units: int, name: str) -> Any:
    """``relu(h + x)``, projecting ``x`` to ``units`` features when its width differs."""
    shortcut = x if x.shape[-1] == units else layers().Dense(units, use_bias=False, name=f"{name}_project")(x)
    return layers().Activation("relu", name=f"{name}_out")(layers().Add(name=f"{name}_add")([shortcut, h]))


def _dense(inputs: int, units: int, bias: bool = True) -> int:
    return inputs * units + (units if bias else 0)


def _residual_count(inputs: int, inner: int, units: int) -> Count:
    """Two dense layers (``inputs`` -> ``inner`` -> ``units``) and the skip around them."""
    project = 0 if inputs == units else _dense(inputs, units, bias=False)
    return Count(_dense(inputs, inner) + _dense(inner, units) + project, (units,))


@register("dense_32", units=32)
@register("dense_64", units=64)
@register("dense_128", units=128)
@register("dense_256", units=256)
class Dense(_DenseFamily):
    """A fully connected layer with a ReLU."""

    def __init__(self, units: int) -> None:
        self.units = units

    def build(self, x: Any, name: str) -> Any:
        return layers().Dense(self.units, activation="relu", name=f"{name}_dense")(x)

    def count(self, shape: Shape) -> Count:
        return Count(_dense(shape[-1], self.units), (self.units,))


@register("residual_dense_64", units=64)
@register("residual_dense_128", units=128)
class ResidualDense(_DenseFamily):
    """Two dense layers and a skip connection around them."""

    def __init__(self, units: int) -> None:
        self.units = units

    def build(self, x: Any, name: str) -> Any:
        h = layers().Dense(self.units, activation="relu", name=f"{name}_dense1")(x)
        h = layers().Dense(self.units, name=f"{name}_dense2")(h)
        return _residual(x, h, self.units, name)

    def count(self, shape: Shape) -> Count:
        return _residual_count(shape[-1], self.units, self.units)


@register("lowrank_dense_128", units=128, rank=16)
@register("lowrank_dense_256", units=256, rank=32)
class LowRankDense(_DenseFamily):
    """A dense layer factorised through a narrow rank: few parameters for its width."""

    def __init__(self, units: int, rank: int) -> None:
        self.units = units
        self.rank = rank

    def build(self, x: Any, name: str) -> Any:
        h = layers().Dense(self.rank, use_bias=False, name=f"{name}_factor")(x)
        return layers().Dense(self.units, activation="relu", name=f"{name}_dense")(h)

    def count(self, shape: Shape) -> Count:
        return Count(_dense(shape[-1], self.rank, bias=False) + _dense(self.rank, self.units), (self.units,))


@register("bottleneck_dense_128", units=128, bottleneck=32)
@register("bottleneck_dense_256", units=256, bottleneck=64)
class BottleneckDense(_DenseFamily):
    """Wide-narrow-wide dense layers with a skip connection."""

    def __init__(self, units: int, bottleneck: int) -> None:
        self.units = units
        self.bottleneck = bottleneck

    def build(self, x: Any, name: str) -> Any:
        h = layers().Dense(self.bottleneck, activation="relu", name=f"{name}_narrow")(x)
        h = layers().Dense(self.units, name=f"{name}_wide")(h)
        return _residual(x, h, self.units, name)

    def count(self, shape: Shape) -> Count:
        return _residual_count(shape[-1], self.bottleneck, self.units)
