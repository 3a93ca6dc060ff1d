"""The ``[space]`` section: one section class per kind of search space (``space.kind``), with its defaults.

Example::

    >>> space_options({"kind": "tower", "max_depth": 4}).blocks[:2]
    ('conv1d_16_k3', 'conv1d_32_k3')
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from engine.options import Check, ConfigError, non_negative, option, positive, read_section, section

DEFAULT_BLOCKS = (
    "conv1d_16_k3", "conv1d_32_k3", "conv1d_32_k5", "conv1d_64_k3", "residual_conv1d_32", "maxpool1d",
    "gru_32", "dense_32", "dense_64", "dense_128", "residual_dense_64", "bottleneck_dense_128",
)


def _check_choices(kind: type) -> Check:
    def check(values: tuple) -> str | None:
        if not values:
            return "needs at least one value"
        if len(set(map(repr, values))) != len(values):
            return f"has repeated values {list(values)}"
        for value in values:
            if kind is str and not isinstance(value, str):
                return f"values must be strings, not {value!r}"
            if kind is not str and (isinstance(value, bool) or not isinstance(value, int | float) or value < 0):
                return f"values must be numbers of 0 or more, not {value!r}"
        return None

    return check


def _check_dropout(values: tuple) -> str | None:
    problem = _check_choices(float)(values)
    too_high = [v for v in values if isinstance(v, int | float) and v >= 1]
    return problem or (f"values must be below 1, not {too_high[0]}" if too_high else None)


def _check_blocks(values: tuple) -> str | None:
    if not values:
        return "needs at least one block"
    for i, name in enumerate(values):
        if not isinstance(name, str):
            return f"[{i}] must be a block name, not {name!r}"
    if len(set(values)) != len(values):
        return f"lists a block twice: {sorted({n for n in values if values.count(n) > 1})}"
    return None


@dataclass(frozen=True)
class HparamChoices:
    learning_rate: tuple[float, ...] = option([0.0003, 0.001, 0.003], "learning rates to choose from",
                                              check=_check_choices(float))
    dropout: tuple[float, ...] = option([0.0, 0.1, 0.25], "dropout rates to choose from", check=_check_dropout)
    batch_size: tuple[int, ...] = option([32, 64, 128], "batch sizes to choose from", check=_check_choices(int))
    optimizer: tuple[str, ...] = option(["adam", "sgd"], "optimizers to choose from", check=_check_choices(str))

    def choices(self) -> dict[str, tuple]:
        """Hyperparameter name -> its choices, in a stable order (proposals draw them in this order)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class TowerOptions:
    """``space.kind = "tower"``: towers of registered blocks."""

    default_metric: ClassVar[str] = "val_accuracy"
    default_mode: ClassVar[str] = "max"
    default_evaluator: ClassVar[str] = "synthetic"

    kind: str = option("tower", "search space", ("tower",))
    block_paths: tuple[str, ...] = option([], "folders of user block modules (relative to the config file)")
    blocks: tuple[str, ...] = option(list(DEFAULT_BLOCKS), "block names the search may use; module:object names "
                                     "a user block", check=_check_blocks)
    min_depth: int = option(1, "fewest blocks in a tower", check=positive)
    max_depth: int = option(6, "most blocks in a tower", check=positive)
    draw: str = option("blocks", "how random towers are drawn: 'blocks' draws each block uniformly and then orders "
                       "them so the tower builds (convolutions before dense blocks); 'positions' draws left to "
                       "right among the blocks that fit, which rarely puts many order-keeping blocks in a tower",
                       ("blocks", "positions"))
    max_params: int = option(0, "most parameters a candidate may have, as Keras counts them (batch norm's "
                             "statistics too; 0: no limit); trainers fail larger ones without training them",
                             check=non_negative)
    head: str = option("flatten", "how a tower's last feature map meets its output layer: 'flatten' gives the "
                       "output layer a weight per position and channel (many weights on a large map), 'pool' "
                       "averages each channel over the positions first (global average pooling, as DS-CNN does: "
                       "small towers under space.max_params)", ("flatten", "pool"))
    hparams: HparamChoices = section(HparamChoices)


NB201_OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
NB201_DATASETS = ("cifar10", "cifar100", "imagenet")


def _check_ops(ops: tuple) -> str | None:
    unknown = [op for op in ops if op not in NB201_OPS]
    if unknown:
        return f"has unknown operation(s) {unknown}; operations are {list(NB201_OPS)}"
    if len(set(ops)) < 2:
        return "needs at least two distinct operations to search over"
    return None


@dataclass(frozen=True)
class NB201Options:
    """``space.kind = "nb201"``: the NAS-Bench-201 cell, looked up in its tables."""

    default_metric: ClassVar[str] = "val_acc"
    default_mode: ClassVar[str] = "max"
    default_evaluator: ClassVar[str] = "table"

    kind: str = option("nb201", "search space", ("nb201",))
    dataset: str = option("cifar10", "NAS-Bench-201 table to evaluate on", NB201_DATASETS)
    ops: tuple[str, ...] = option(list(NB201_OPS), "operations an edge may take", check=_check_ops)


SpaceOptions = TowerOptions | NB201Options
SPACE_KINDS: dict[str, type[TowerOptions] | type[NB201Options]] = {"tower": TowerOptions, "nb201": NB201Options}


def space_options(raw: Mapping[str, Any]) -> SpaceOptions:
    """A raw ``[space]`` table read with its kind's defaults and checks."""
    kind = raw.get("kind") if isinstance(raw, Mapping) else None
    if kind not in SPACE_KINDS:
        raise ConfigError(f"space.kind must be one of {sorted(SPACE_KINDS)}, not {kind!r}")
    return read_section(SPACE_KINDS[kind], raw, "space")
