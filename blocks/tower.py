"""The tower builder: an architecture (block names, input first) and hyperparameters -> a Keras model.

It adapts the tensor between blocks where needed (a flat input becomes a one-channel sequence for
1-D blocks; an ordered tensor is flattened before a dense block), adds the head the task needs (class
probabilities, or regression outputs), and refuses a tower that cannot be built for the data's shape
with a reason that names the block. Layer names start with ``b<position>_<block>``, so the same block
at the same position has the same layer names in every tower (what weight sharing matches on).

Example::

    >>> model = build_tower(["conv1d_32_k3", "maxpool1d", "dense_64"], {"dropout": 0.1},
    ...                     DataSpec(input_shape=(40,), task="classification", outputs=10))
    >>> model.count_params()
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from blocks.embedding import DEFAULT_DIMENSIONS, EMBEDDING, TokenEmbedding
from blocks.ordering import NETWORK, Problem, Reason
from blocks.registry import BlockError, BlockSpec, Shape, layers, lookup

CLASSIFICATION = "classification"
REGRESSION = "regression"


class InputKind(StrEnum):
    """What one example is, as the tower's blocks see it."""

    FEATURES = "flat features"
    SEQUENCE = "sequences"
    IMAGE = "images"
    TOKENS = "token ids"

    @classmethod
    def of_shape(cls, shape: Sequence[int]) -> InputKind:
        """The kind of numeric features of this shape (one example's)."""
        return {1: cls.FEATURES, 2: cls.SEQUENCE}.get(len(shape), cls.IMAGE)


#: The block families that can take each kind of input: the builder makes flat features a one-channel sequence
#: and a sequence (a spectrogram) a one-channel image; token ids need an embedding first.
FAMILIES_FOR: dict[InputKind, tuple[str, ...]] = {
    InputKind.FEATURES: ("dense", "sequence", NETWORK),
    InputKind.SEQUENCE: ("dense", "sequence", "image", NETWORK),
    InputKind.IMAGE: ("dense", "image", NETWORK),
    InputKind.TOKENS: (EMBEDDING, "dense", "sequence", NETWORK),
}


class Head(StrEnum):
    """How a tower's last feature map meets its output layer (``space.head``)."""

    FLATTEN = "flatten"  # a weight per position and channel
    POOL = "pool"  # each channel averaged over the positions (global average pooling)


class BuildError(ValueError):
    """A tower that cannot be built for the data; the message names the block and the shape."""


@dataclass(frozen=True)
class DataSpec:
    """What the builder needs to know about the data: the shape of one example's features, the task
    and the number of outputs (classes, or regression targets). A regression head ends by rescaling
    with the training targets' mean and scale, so it learns standardised targets but predicts raw ones.
    Token ids (``tokens``, the vocabulary's size) are embedded first: by the tower's embedding block, or
    in :data:`~blocks.embedding.DEFAULT_DIMENSIONS` where it has none."""

    input_shape: tuple[int, ...]
    task: str
    outputs: int
    target_mean: tuple[float, ...] = ()
    target_scale: tuple[float, ...] = ()
    tokens: int = 0  # the vocabulary's size where examples are token ids (0: they are not)

    def __post_init__(self) -> None:
        if self.task not in (CLASSIFICATION, REGRESSION):
            raise BuildError(f"task must be {CLASSIFICATION!r} or {REGRESSION!r}, not {self.task!r}")


def _shape(x: Any) -> tuple:
    return tuple(x.shape[1:])


def _taken(shape: Shape, block: str, position: int, family: str) -> Shape:
    """The shape a block of ``family`` takes ``shape`` as (flattened for a dense block, given one channel where
    it has one axis too few), or why it cannot."""
    rank = len(shape)
    if family in (NETWORK, EMBEDDING):
        if position:
            raise BuildError(str(Problem(position, block, Reason.NETWORK_NOT_FIRST, family=family)))
        return shape
    if family == "dense":
        return (math.prod(shape),)
    wanted = {"sequence": 2, "image": 3}[family]
    if rank == wanted:
        return shape
    if rank == wanted - 1 and family in ("sequence", "image"):
        return (*shape, 1)
    kinds = {1: "flat features", 2: "a sequence", 3: "an image"}
    raise BuildError(
        f"block {position} ({block}) takes {'a sequence' if family == 'sequence' else 'an image'}, "
        f"but gets {kinds.get(rank, f'a rank-{rank} tensor')} of shape {shape}"
    )


def _adapt(x: Any, block: str, position: int, family: str, scope: str) -> Any:
    """Reshape ``x`` into what a block of ``family`` takes, or say why it cannot."""
    shape = _shape(x)
    taken = _taken(shape, block, position, family)
    if taken == shape:
        return x
    if family == "dense":
        return layers().Flatten(name=f"{scope}_flatten")(x)
    return layers().Reshape(taken, name=f"{scope}_as_{family}")(x)


def _specs(architecture: Sequence[str]) -> list[BlockSpec]:
    specs = []
    for position, block in enumerate(architecture):
        try:
            specs.append(lookup(block))
        except BlockError as exc:
            raise BuildError(f"block {position}: {exc}") from None
    return specs


def _need_tokens(data: DataSpec, position: int, block: str, shape: Shape) -> None:
    """Refuses an embedding block on data that is not token ids."""
    if not data.tokens:
        raise BuildError(f"block {position} ({block}) takes token ids (a csv text column), but gets "
                         f"{InputKind.of_shape(shape)} of shape {shape}")


def _head_params(features: int, data: DataSpec) -> int:
    return (features + 1) * data.outputs  # the output layer; the regression head's rescaling has no weights


def count_params(architecture: Sequence[str], data: DataSpec, head: Head | str = Head.FLATTEN) -> int | None:
    """The weights :func:`build_tower` would make (what Keras' ``count_params`` says of its model), counted without
    Keras from each block's :meth:`~blocks.registry.Block.count`; None where a block cannot say (a user block, a
    whole network). Raises :class:`BuildError` where the tower cannot be built.

    Example::

        >>> count_params(["conv1d_32_k3", "maxpool1d", "dense_64"], DataSpec((40,), "classification", 10))
        41802
    """
    specs = _specs(architecture)
    shape, params = tuple(data.input_shape), 0
    if data.tokens and not (specs and specs[0].family == EMBEDDING):
        counted = TokenEmbedding(DEFAULT_DIMENSIONS).counted(shape, data.tokens)
        shape, params = counted.shape, counted.params
    for position, (block, spec) in enumerate(zip(architecture, specs, strict=True)):
        shape = _taken(shape, block, position, spec.family)
        if spec.family == EMBEDDING:
            _need_tokens(data, position, block, shape)
            counted = spec.create().counted(shape, data.tokens)
        else:
            counted = spec.create().count(shape)
        if counted is None:
            return None
        shape, params = counted.shape, params + counted.params
    features = shape[-1] if len(shape) > 1 and Head(head) == Head.POOL else math.prod(shape)
    return params + _head_params(features, data)


def build_tower(architecture: Sequence[str], hyperparameters: Mapping[str, Any], data: DataSpec,
                name: str = "tower", head: Head | str = Head.FLATTEN) -> Any:
    """The Keras model of a tower on ``data``, its last feature map flattened or pooled (``head``) before the
    output layer. Raises :class:`BuildError` when it cannot be built."""
    import keras

    k = keras.layers
    inputs = keras.Input(shape=data.input_shape, name="features")
    x = inputs
    specs = _specs(architecture)
    if data.tokens and not (specs and specs[0].family == EMBEDDING):
        x = TokenEmbedding(DEFAULT_DIMENSIONS).embed(x, "tokens", data.tokens)
    for position, (block, spec) in enumerate(zip(architecture, specs, strict=True)):
        scope = f"b{position}_{block}".replace(":", "_").replace(".", "_")
        x = _adapt(x, block, position, spec.family, scope)
        before = _shape(x)
        if spec.family == EMBEDDING:
            _need_tokens(data, position, block, before)
            x = spec.create().embed(x, scope, data.tokens)
            continue
        try:
            x = spec.create().build(x, scope)
        except (ValueError, TypeError) as exc:
            raise BuildError(f"block {position} ({block}) cannot take input of shape {before}: {exc}") from None
        if any(dim is not None and dim <= 0 for dim in _shape(x)):
            raise BuildError(f"block {position} ({block}) turns shape {before} into {_shape(x)}: nothing is left")
    rank = len(_shape(x))
    if rank > 1 and Head(head) == Head.POOL:
        pool = {2: k.GlobalAveragePooling1D, 3: k.GlobalAveragePooling2D}.get(rank)
        if pool is None:
            raise BuildError(f"the head cannot pool a rank-{rank} feature map of shape {_shape(x)}")
        x = pool(name="head_pool")(x)
    elif rank > 1:
        x = k.Flatten(name="head_flatten")(x)
    dropout = float(hyperparameters.get("dropout") or 0.0)
    if dropout > 0:
        x = k.Dropout(dropout, name="head_dropout")(x)
    if data.task == CLASSIFICATION:
        logits = k.Dense(data.outputs, name="head_logits")(x)
        outputs = k.Activation("softmax", name="head_probabilities", dtype="float32")(logits)
    else:
        outputs = k.Dense(data.outputs, name="head_outputs")(x)
        if data.target_scale:
            outputs = k.Rescaling(list(data.target_scale), offset=list(data.target_mean), name="head_rescale")(outputs)
    return keras.Model(inputs, outputs, name=name)
