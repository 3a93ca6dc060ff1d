"""2-D blocks over (h, w, channels): images, and spectrograms as one-channel images (frames x bands).

Convolutions, ResNet blocks, NAS-A style cells, pooling, and the blocks of keyword-spotting networks:
depthwise-separable convolutions (DS-CNN, Zhang et al. 2017, "Hello Edge"), a 10x4 strided stem over
time x frequency, and convolutions that halve only time or only frequency.
"""

from __future__ import annotations

from typing import Any

from blocks.registry import Block, Count, Shape, batch_norm, batch_norm_params, halved, layers, register


class _ImageFamily(Block):
    family = "image"
    order_matters = True
    keeps_order = True


def _conv_bn_relu(x: Any, filters: int, name: str, strides: int | tuple[int, int] = 1,
                  kernel: int | tuple[int, int] = 3) -> Any:
    k = layers()
    x = k.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False, name=f"{name}_conv")(x)
    return k.Activation("relu", name=f"{name}_relu")(batch_norm(f"{name}_bn")(x))


def _pair(value: int | tuple[int, int]) -> tuple[int, int]:
    return value if isinstance(value, tuple) else (value, value)


def _conv_bn_relu_count(shape: Shape, filters: int, strides: int | tuple[int, int] = 1,
                        kernel: int | tuple[int, int] = 3) -> Count:
    (kh, kw), (sh, sw) = _pair(kernel), _pair(strides)
    params = kh * kw * shape[-1] * filters + batch_norm_params(filters)
    return Count(params, (halved(shape[0], sh), halved(shape[1], sw), filters))


@register("conv2d_16", filters=16)
@register("conv2d_32", filters=32)
@register("conv2d_64", filters=64)
class Conv2D(_ImageFamily):
    """A 3x3 convolution with batch norm and a ReLU."""

    def __init__(self, filters: int) -> None:
        self.filters = filters

    def build(self, x: Any, name: str) -> Any:
        return _conv_bn_relu(x, self.filters, name)

    def count(self, shape: Shape) -> Count:
        return _conv_bn_relu_count(shape, self.filters)


@register("downsample_conv2d_32", filters=32)
@register("downsample_conv2d_64", filters=64)
class DownsampleConv2D(_ImageFamily):
    """A strided 3x3 convolution: halves height and width."""

    def __init__(self, filters: int) -> None:
        self.filters = filters

    def build(self, x: Any, name: str) -> Any:
        return _conv_bn_relu(x, self.filters, name, strides=2)

    def count(self, shape: Shape) -> Count:
        return _conv_bn_relu_count(shape, self.filters, strides=2)


@register("downsample_time_conv2d_32", filters=32, strides=(2, 1))
@register("downsample_freq_conv2d_32", filters=32, strides=(1, 2))
class AxisDownsampleConv2D(_ImageFamily):
    """A 3x3 convolution strided along one axis only: on a spectrogram (frames, bands), ``time`` halves the
    frames and keeps every band, ``freq`` halves the bands and keeps every frame."""

    def __init__(self, filters: int, strides: tuple[int, int]) -> None:
        self.filters, self.strides = filters, strides

    def build(self, x: Any, name: str) -> Any:
        return _conv_bn_relu(x, self.filters, name, strides=self.strides)

    def count(self, shape: Shape) -> Count:
        return _conv_bn_relu_count(shape, self.filters, strides=self.strides)


@register("stem_conv2d_64_k10x4", filters=64)
class StemConv2D(_ImageFamily):
    """The first layer of DS-CNN: a 10x4 convolution (10 frames by 4 bands) with stride 2 on both axes."""

    def __init__(self, filters: int) -> None:
        self.filters = filters

    def build(self, x: Any, name: str) -> Any:
        return _conv_bn_relu(x, self.filters, name, strides=2, kernel=(10, 4))

    def count(self, shape: Shape) -> Count:
        return _conv_bn_relu_count(shape, self.filters, strides=2, kernel=(10, 4))


@register("ds_conv2d_32", filters=32)
@register("ds_conv2d_64", filters=64)
@register("ds_conv2d_128", filters=128)
class DepthwiseSeparableConv2D(_ImageFamily):
    """A DS-CNN layer: a 3x3 depthwise convolution then a 1x1 pointwise one, each with batch norm and a ReLU;
    about ``9 c + c f`` weights where a full 3x3 convolution has ``9 c f``."""

    def __init__(self, filters: int) -> None:
        self.filters = filters

    def build(self, x: Any, name: str) -> Any:
        k = layers()
        x = k.DepthwiseConv2D(3, padding="same", use_bias=False, name=f"{name}_depthwise")(x)
        x = k.Activation("relu", name=f"{name}_depthwise_relu")(batch_norm(f"{name}_depthwise_bn")(x))
        return _conv_bn_relu(x, self.filters, f"{name}_pointwise", kernel=1)

    def count(self, shape: Shape) -> Count:
        depthwise = 9 * shape[-1] + batch_norm_params(shape[-1])
        pointwise = _conv_bn_relu_count(shape, self.filters, kernel=1)
        return Count(depthwise + pointwise.params, pointwise.shape)


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

    def count(self, shape: Shape) -> Count:
        first = _conv_bn_relu_count(shape, self.filters)
        second = _conv_bn_relu_count(first.shape, self.filters)
        project = 0 if shape[-1] == self.filters else shape[-1] * self.filters
        return Count(first.params + second.params + project, first.shape)


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

    def count(self, shape: Shape) -> Count:
        f = self.filters
        separable = sum(kernel * kernel * f + f * f + f for kernel in (3, 5, 3))  # depthwise, pointwise, bias
        params = (shape[-1] * f + f) + separable + (4 * f * f + f)  # base, branches, projection of the four
        return Count(params, (*shape[:2], f))


@register("maxpool2d", kind="max")
@register("avgpool2d", kind="average")
class Pool2D(_ImageFamily):
    """Halves height and width (rounding up)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def build(self, x: Any, name: str) -> Any:
        pool = layers().MaxPooling2D if self.kind == "max" else layers().AveragePooling2D
        return pool(2, padding="same", name=f"{name}_pool")(x)

    def count(self, shape: Shape) -> Count:
        return Count(0, (halved(shape[0]), halved(shape[1]), shape[-1]))


@register("global_avg_pool2d")
class GlobalAveragePool2D(Block):
    """Averages over height and width: its output has no spatial order left."""

    family = "image"
    order_matters = True
    keeps_order = False

    def build(self, x: Any, name: str) -> Any:
        return layers().GlobalAveragePooling2D(name=f"{name}_pool")(x)

    def count(self, shape: Shape) -> Count:
        return Count(0, (shape[-1],))
