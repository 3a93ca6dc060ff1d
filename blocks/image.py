"""2-D image blocks: convolutions, ResNet blocks, NAS-A style cells and pooling over (h, w, channels)."""

from __future__ import annotations

from typing import Any

from blocks.registry import Block, batch_norm, layers, register


class _ImageFamily(Block):
    family = "image"
    order_matters = True
    keeps_order = True


def _conv_bn_relu(x: Any, filters: int, name: str, strides: int = 1) -> Any:
    k = layers()
    x = k.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False, name=f"{name}_conv")(x)
    return k.Activation("relu", name=f"{name}_relu")(batch_norm(f"{name}_bn")(x))


@register("conv2d_16", filters=16)
@register("conv2d_32", filters=32)
@register("conv2d_64", filters=64)
class Conv2D(_ImageFamily):
    """A 3x3 convolution with batch norm and a ReLU."""

    def __init__(self, filters: int) -> None:
        self.filters = filters

    def build(self, x: Any, name: str) -> Any:
        return _conv_bn_relu(x, self.filters, name)


@register("downsample_conv2d_32", filters=32)
@register("downsample_conv2d_64", filters=64)
class DownsampleConv2D(_ImageFamily):
    """A strided 3x3 convolution: halves height and width."""

    def __init__(self, filters: int) -> None:
        self.filters = filters

    def build(self, x: Any, name: str) -> Any:
        return _conv_bn_relu(x, self.filters, name, strides=2)


@register("resnet_16", filters=16)
@register("resnet_32", filters=32)
@register("resnet_64", filters=64)
class ResNetBlock(_ImageFamily):
    """Two 3x3 convolutions and a skip connection (He et al., 2016)."""

    def __init__(self, filters: int) -> None:
        self.filters = filters

    def build(self, x: Any, name: str) -> Any:
        k = layers()
        h = _conv_bn_relu(x, self.filters, f"{name}_a")
        h = k.Conv2D(self.filters, 3, padding="same", use_bias=False, name=f"{name}_b_conv")(h)
        h = batch_norm(f"{name}_b_bn")(h)
        if x.shape[-1] != self.filters:
            x = k.Conv2D(self.filters, 1, use_bias=False, name=f"{name}_project")(x)
        return k.Activation("relu", name=f"{name}_out")(k.Add(name=f"{name}_add")([x, h]))


@register("nasa_cell_16", filters=16)
@register("nasa_cell_32", filters=32)
class NASACell(_ImageFamily):
    """A NASNet-A style normal cell (Zoph et al., 2018): separable-convolution, pooling and identity
    branches combined pairwise by addition, concatenated and projected back to ``filters``."""

    def __init__(self, filters: int) -> None:
        self.filters = filters

    def build(self, x: Any, name: str) -> Any:
        k = layers()
        f = self.filters
        base = k.Conv2D(f, 1, padding="same", name=f"{name}_base")(k.Activation("relu", name=f"{name}_in")(x))

        def separable(kernel: int, tag: str) -> Any:
            return k.SeparableConv2D(f, kernel, padding="same", activation="relu", name=f"{name}_{tag}")(base)

        def pool(tag: str) -> Any:
            return k.AveragePooling2D(3, strides=1, padding="same", name=f"{name}_{tag}")(base)

        branches = [
            k.Add(name=f"{name}_add1")([separable(3, "sep3a"), base]),
            k.Add(name=f"{name}_add2")([separable(5, "sep5"), separable(3, "sep3b")]),
            k.Add(name=f"{name}_add3")([pool("pool_a"), base]),
            k.Add(name=f"{name}_add4")([pool("pool_b"), pool("pool_c")]),
        ]
        merged = k.Concatenate(name=f"{name}_concat")(branches)
        return k.Conv2D(f, 1, padding="same", activation="relu", name=f"{name}_out")(merged)


@register("maxpool2d", kind="max")
@register("avgpool2d", kind="average")
class Pool2D(_ImageFamily):
    """Halves height and width (rounding up)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def build(self, x: Any, name: str) -> Any:
        pool = layers().MaxPooling2D if self.kind == "max" else layers().AveragePooling2D
        return pool(2, padding="same", name=f"{name}_pool")(x)


@register("global_avg_pool2d")
class GlobalAveragePool2D(Block):
    """Averages over height and width: its output has no spatial order left."""

    family = "image"
    order_matters = True
    keeps_order = False

    def build(self, x: Any, name: str) -> Any:
        return layers().GlobalAveragePooling2D(name=f"{name}_pool")(x)
