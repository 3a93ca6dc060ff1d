"""1-D sequence blocks: convolutions, pooling, recurrent and attention blocks over (time, channels)."""

from __future__ import annotations

from blocks.registry import Block, register


class _SequenceFamily(Block):
    family = "sequence"
    order_matters = True
    keeps_order = True


@register("conv1d_16_k3", filters=16, kernel=3)
@register("conv1d_32_k3", filters=32, kernel=3)
@register("conv1d_32_k5", filters=32, kernel=5)
@register("conv1d_64_k3", filters=64, kernel=3)
@register("conv1d_64_k5", filters=64, kernel=5)
class Conv1D(_SequenceFamily):
    """A 1-D convolution with a ReLU."""

    def __init__(self, filters: int, kernel: int) -> None:
        self.filters = filters
        self.kernel = kernel


@register("residual_conv1d_32", filters=32, kernel=3)
@register("residual_conv1d_64", filters=64, kernel=3)
class ResidualConv1D(_SequenceFamily):
    """Two 1-D convolutions and a skip connection."""

    def __init__(self, filters: int, kernel: int) -> None:
        self.filters = filters
        self.kernel = kernel


@register("maxpool1d", kind="max")
@register("avgpool1d", kind="average")
class Pool1D(_SequenceFamily):
    """Halves the sequence length."""

    def __init__(self, kind: str) -> None:
        self.kind = kind


@register("lstm_32", cell="lstm", units=32)
@register("lstm_64", cell="lstm", units=64)
@register("gru_32", cell="gru", units=32)
@register("gru_64", cell="gru", units=64)
class Recurrent(_SequenceFamily):
    """An LSTM or GRU layer that returns the whole sequence."""

    def __init__(self, cell: str, units: int) -> None:
        self.cell = cell
        self.units = units


@register("bilstm_32", units=32)
class BidirectionalLSTM(_SequenceFamily):
    """An LSTM read both ways, outputs concatenated."""

    def __init__(self, units: int) -> None:
        self.units = units


@register("attention_2h", heads=2, key_dim=16)
@register("attention_4h", heads=4, key_dim=16)
class SelfAttention(_SequenceFamily):
    """A transformer encoder block: self-attention and a feed-forward layer, each with a skip."""

    def __init__(self, heads: int, key_dim: int) -> None:
        self.heads = heads
        self.key_dim = key_dim
