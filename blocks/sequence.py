"""1-D sequence blocks: convolutions, pooling, recurrent and attention blocks over (time, channels)."""

from __future__ import annotations

from typing import Any

from blocks.registry import Block, Count, Shape, batch_norm, batch_norm_params, halved, layers, register


class _SequenceFamily(Block):
    family = "sequence"
    order_matters = True
    keeps_order = True


def _conv(kernel: int, inputs: int, filters: int, bias: bool = True) -> int:
    return kernel * inputs * filters + (filters if bias else 0)


@register("conv1d_8_k5", filters=8, kernel=5)
@register("conv1d_16_k3", filters=16, kernel=3)
@register("conv1d_16_k5", filters=16, kernel=5)
@register("conv1d_32_k3", filters=32, kernel=3)
@register("conv1d_32_k5", filters=32, kernel=5)
@register("conv1d_64_k3", filters=64, kernel=3)
@register("conv1d_64_k5", filters=64, kernel=5)
class Conv1D(_SequenceFamily):
    """A 1-D convolution with a ReLU ('same' padding: the length is kept)."""

    def __init__(self, filters: int, kernel: int) -> None:
        self.filters = filters
        self.kernel = kernel

    def build(self, x: Any, name: str) -> Any:
        return layers().Conv1D(self.filters, self.kernel, padding="same", activation="relu", name=f"{name}_conv")(x)

    def count(self, shape: Shape) -> Count:
        return Count(_conv(self.kernel, shape[-1], self.filters), (shape[0], self.filters))


@register("downsample_conv1d_16", filters=16)
@register("downsample_conv1d_25", filters=25)
@register("downsample_conv1d_32", filters=32)
class DownsampleConv1D(_SequenceFamily):
    """A strided 1-D convolution (kernel 5, stride 2) with a ReLU: halves the length. Three of these with 25
    filters are the small CNN of the MNIST-1D paper (Greydanus, 2020)."""

    def __init__(self, filters: int) -> None:
        self.filters = filters

    def build(self, x: Any, name: str) -> Any:
        return layers().Conv1D(self.filters, 5, strides=2, padding="same", activation="relu", name=f"{name}_conv")(x)

    def count(self, shape: Shape) -> Count:
        return Count(_conv(5, shape[-1], self.filters), (halved(shape[0]), self.filters))


@register("residual_conv1d_32", filters=32, kernel=3)
@register("residual_conv1d_64", filters=64, kernel=3)
class ResidualConv1D(_SequenceFamily):
    """Two 1-D convolutions with batch norm and a skip connection."""

    def __init__(self, filters: int, kernel: int) -> None:
        self.filters = filters
        self.kernel = kernel

    def build(self, x: Any, name: str) -> Any:
        k = layers()
        h = k.Conv1D(self.filters, self.kernel, padding="same", name=f"{name}_conv1")(x)
        h = k.Activation("relu", name=f"{name}_relu1")(batch_norm(f"{name}_bn1")(h))
        h = k.Conv1D(self.filters, self.kernel, padding="same", name=f"{name}_conv2")(h)
        h = batch_norm(f"{name}_bn2")(h)
        if x.shape[-1] != self.filters:
            x = k.Conv1D(self.filters, 1, use_bias=False, name=f"{name}_project")(x)
        return k.Activation("relu", name=f"{name}_out")(k.Add(name=f"{name}_add")([x, h]))

    def count(self, shape: Shape) -> Count:
        inputs, f = shape[-1], self.filters
        project = 0 if inputs == f else _conv(1, inputs, f, bias=False)
        params = _conv(self.kernel, inputs, f) + _conv(self.kernel, f, f) + 2 * batch_norm_params(f) + project
        return Count(params, (shape[0], f))


@register("maxpool1d", kind="max")
@register("avgpool1d", kind="average")
class Pool1D(_SequenceFamily):
    """Halves the sequence length (rounding up)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def build(self, x: Any, name: str) -> Any:
        pool = layers().MaxPooling1D if self.kind == "max" else layers().AveragePooling1D
        return pool(2, padding="same", name=f"{name}_pool")(x)

    def count(self, shape: Shape) -> Count:
        return Count(0, (halved(shape[0]), shape[-1]))


@register("global_avg_pool1d", kind="average")
@register("global_max_pool1d", kind="max")
class GlobalPool1D(Block):
    """Averages (or takes the maximum) over the whole sequence: few features for the head, so few parameters,
    and no order left."""

    family = "sequence"
    order_matters = True
    keeps_order = False

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def build(self, x: Any, name: str) -> Any:
        pool = layers().GlobalMaxPooling1D if self.kind == "max" else layers().GlobalAveragePooling1D
        return pool(name=f"{name}_pool")(x)

    def count(self, shape: Shape) -> Count:
        return Count(0, (shape[-1],))


@register("lstm_32", cell="lstm", units=32)
@register("lstm_64", cell="lstm", units=64)
@register("gru_32", cell="gru", units=32)
@register("gru_64", cell="gru", units=64)
class Recurrent(_SequenceFamily):
    """An LSTM or GRU layer that returns the whole sequence."""

    def __init__(self, cell: str, units: int) -> None:
        self.cell = cell
        self.units = units

    def build(self, x: Any, name: str) -> Any:
        cell = layers().LSTM if self.cell == "lstm" else layers().GRU
        return cell(self.units, return_sequences=True, name=f"{name}_{self.cell}")(x)

    def count(self, shape: Shape) -> Count:
        return Count(recurrent_params(self.cell, shape[-1], self.units), (shape[0], self.units))


def recurrent_params(cell: str, inputs: int, units: int) -> int:
    """An LSTM's four gates, or a GRU's three (Keras' GRU keeps a second bias per gate: ``reset_after``)."""
    gates, biases = (4, 1) if cell == "lstm" else (3, 2)
    return gates * units * (inputs + units + biases)


@register("bilstm_32", units=32)
class BidirectionalLSTM(_SequenceFamily):
    """An LSTM read both ways, outputs concatenated."""

    def __init__(self, units: int) -> None:
        self.units = units

    def build(self, x: Any, name: str) -> Any:
        k = layers()
        return k.Bidirectional(k.LSTM(self.units, return_sequences=True), name=f"{name}_bilstm")(x)

    def count(self, shape: Shape) -> Count:
        return Count(2 * recurrent_params("lstm", shape[-1], self.units), (shape[0], 2 * self.units))


@register("attention_2h", heads=2, key_dim=16)
@register("attention_4h", heads=4, key_dim=16)
class SelfAttention(_SequenceFamily):
    """A transformer encoder block: self-attention and a feed-forward layer, each with a skip and
    layer norm (Vaswani et al., 2017), at the width of its input."""

    def __init__(self, heads: int, key_dim: int) -> None:
        self.heads = heads
        self.key_dim = key_dim

    def build(self, x: Any, name: str) -> Any:
        k = layers()
        width = x.shape[-1]
        attended = k.MultiHeadAttention(self.heads, self.key_dim, name=f"{name}_attention")(x, x)
        x = k.LayerNormalization(name=f"{name}_norm1")(k.Add(name=f"{name}_add1")([x, attended]))
        h = k.Dense(2 * width, activation="relu", name=f"{name}_ff1")(x)
        h = k.Dense(width, name=f"{name}_ff2")(h)
        return k.LayerNormalization(name=f"{name}_norm2")(k.Add(name=f"{name}_add2")([x, h]))

    def count(self, shape: Shape) -> Count:
        width, inner = shape[-1], self.heads * self.key_dim
        attention = 3 * (width * inner + inner) + inner * width + width  # query, key, value; output
        feed_forward = (width * 2 * width + 2 * width) + (2 * width * width + width)
        return Count(attention + feed_forward + 2 * 2 * width, shape)  # two layer norms: a scale and an offset
