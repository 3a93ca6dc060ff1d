"""2-D image blocks: convolutions, ResNet blocks, NAS-A style cells and pooling over (h, w, channels)."""

from __future__ import annotations

from blocks.registry import Block, register


class _ImageFamily(Block):
    family = "image"
    order_matters = True
    keeps_order = True


@register("conv2d_16", filters=16)
@register("conv2d_32", filters=32)
@register("conv2d_64", filters=64)
class Conv2D(_ImageFamily):
    """A 3x3 convolution with batch norm and a ReLU."""

    def __init__(self, filters: int) -> None:
        self.filters = filters


@register("downsample_conv2d_32", filters=32)
@register("downsample_conv2d_64", filters=64)
class DownsampleConv2D(_ImageFamily):
    """A strided 3x3 convolution: halves height and width."""

    def __init__(self, filters: int) -> None:
        self.filters = filters


@register("resnet_16", filters=16)
@register("resnet_32", filters=32)
@register("resnet_64", filters=64)
class ResNetBlock(_ImageFamily):
    """Two convolutions and a skip connection (He et al., 2016)."""

    def __init__(self, filters: int) -> None:
        self.filters = filters


@register("nasa_cell_16", filters=16)
@register("nasa_cell_32", filters=32)
class NASACell(_ImageFamily):
    """A NASNet-A style normal cell: separable convolutions and pooling branches, summed."""

    def __init__(self, filters: int) -> None:
        self.filters = filters


@register("maxpool2d", kind="max")
@register("avgpool2d", kind="average")
class Pool2D(_ImageFamily):
    """Halves height and width."""

    def __init__(self, kind: str) -> None:
        self.kind = kind


@register("global_avg_pool2d")
class GlobalAveragePool2D(Block):
    """Averages over height and width: its output has no spatial order left."""

    family = "image"
    order_matters = True
    keeps_order = False
