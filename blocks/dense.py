"""Dense blocks: fully connected layers, for flat inputs; the order of their input does not matter."""

from __future__ import annotations

from blocks.registry import Block, register


class _DenseFamily(Block):
    family = "dense"
    order_matters = False
    keeps_order = False


@register("dense_32", units=32)
@register("dense_64", units=64)
@register("dense_128", units=128)
@register("dense_256", units=256)
class Dense(_DenseFamily):
    """A fully connected layer with a ReLU."""

    def __init__(self, units: int) -> None:
        self.units = units


@register("residual_dense_64", units=64)
@register("residual_dense_128", units=128)
class ResidualDense(_DenseFamily):
    """Two dense layers and a skip connection around them."""

    def __init__(self, units: int) -> None:
        self.units = units


@register("lowrank_dense_128", units=128, rank=16)
@register("lowrank_dense_256", units=256, rank=32)
class LowRankDense(_DenseFamily):
    """A dense layer factorised through a narrow rank: few parameters for its width."""

    def __init__(self, units: int, rank: int) -> None:
        self.units = units
        self.rank = rank


@register("bottleneck_dense_128", units=128, bottleneck=32)
@register("bottleneck_dense_256", units=256, bottleneck=64)
class BottleneckDense(_DenseFamily):
    """Wide-narrow-wide dense layers with a skip connection."""

    def __init__(self, units: int, bottleneck: int) -> None:
        self.units = units
        self.bottleneck = bottleneck
