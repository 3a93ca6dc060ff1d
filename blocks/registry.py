"""The block registry: every block a tower can be built from, by lookup name.

A block is a function of tensors: its ``build`` makes Keras layers from its input tensor and
returns the output. Three class properties tell the tower builder where it can go: its ``family``
(dense, sequence or image), whether the order of its input matters (convolutions, pooling and
recurrent blocks: yes; dense blocks: no) and whether its output still has an order. One class can
be registered under several names with different init arguments.

Example::

    >>> from blocks import Block, layers, register
    >>> @register("wide_dense", units=512)
    ... @register("narrow_dense", units=16)
    ... class MyDense(Block):
    ...     family, order_matters, keeps_order = "dense", False, False
    ...     def __init__(self, units: int) -> None:
    ...         self.units = units
    ...     def build(self, x, name):
    ...         return layers().Dense(self.units, activation="relu", name=f"{name}_dense")(x)
    >>> lookup("narrow_dense").create().units
    16

Keras is imported only when a block is built (``layers()``), so the engine, which only needs
names and properties, never loads TensorFlow. For the same reason a block may say how many weights it makes
without building them (``count``, from its input's shape): under ``space.max_params`` the engine then refuses
a tower over the budget before a trainer builds it. A block that does not (a user block, a whole network)
leaves that to a model learned from the sizes trainers report.
"""

from __future__ import annotations

import difflib
import importlib
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

FAMILIES = ("dense", "sequence", "image", "network", "embedding")
#: What the blocks of each family take, as ``engine blocks`` says it; the tower builder reshapes where it can.
TAKES = {
    "dense": "anything (flattened first)",
    "sequence": "sequences (steps x channels): mnist1d, audio as frames x bands, embedded tokens; flat features "
                "as one channel",
    "image": "images (h x w x channels): images, idx; audio spectrograms as one channel",
    "network": "the data as it comes (first in a tower)",
    "embedding": "token ids (a csv text column), first in a tower; without one, a tower on tokens embeds them "
                 "in 64 dimensions",
}


class BlockError(KeyError):
    """An unknown block name, or a block registered twice."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


Shape = tuple[int, ...]  # one example's shape, without the batch axis


@dataclass(frozen=True)
class Count:
    """What a block makes of an input shape, counted without Keras: its weights (``params``, every weight Keras'
    ``count_params`` counts, batch norm's moving statistics too) and the shape of its output."""

    params: int
    shape: Shape


class Block(ABC):
    """Base class of every block. Subclasses set the three class properties and ``build``, and may say what
    ``build`` makes without building it (``count``)."""

    family: ClassVar[str]
    order_matters: ClassVar[bool]
    keeps_order: ClassVar[bool]

    @abstractmethod
    def build(self, x: Any, name: str) -> Any:
        """Apply this block's layers to tensor ``x``; every layer's name starts with ``name``."""

    def count(self, shape: Shape) -> Count | None:
        """The weights ``build`` makes on input of ``shape`` and its output's shape; None: not known without
        building it."""
        return None


def halved(length: int, stride: int = 2) -> int:
    """A length after a stride with "same" padding (rounded up)."""
    return -(-length // stride)


def batch_norm_params(channels: int) -> int:
    """Batch norm's weights: a scale, an offset and two moving statistics per channel."""
    return 4 * channels


def layers() -> Any:
    """``keras.layers``, imported on first use."""
    import keras

    return keras.layers


#: The running statistics' momentum of every batch normalisation in the blocks. Keras' default (0.99) takes a few
#: hundred steps to forget its initial statistics: on a small dataset (about 60 steps an epoch on MNIST-1D) a tower
#: then scores near chance on validation for its first four or five epochs, whatever it learned, and early
#: stopping and stopping rules judge it on that. At 0.9 they follow training within a few dozen steps.
BATCH_NORM_MOMENTUM = 0.9


def batch_norm(name: str) -> Any:
    """A batch normalisation layer for blocks (:data:`BATCH_NORM_MOMENTUM`)."""
    return layers().BatchNormalization(momentum=BATCH_NORM_MOMENTUM, name=name)


@dataclass(frozen=True)
class BlockSpec:
    """A registered name: the block class and the init arguments that name stands for."""

    name: str
    cls: type[Block]
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def family(self) -> str:
        return self.cls.family

    @property
    def order_matters(self) -> bool:
        return self.cls.order_matters

    @property
    def keeps_order(self) -> bool:
        return self.cls.keeps_order

    def create(self) -> Block:
        return self.cls(**self.kwargs)


_REGISTRY: dict[str, BlockSpec] = {}


def register(name: str, **kwargs: Any):
    """Class decorator: register ``cls(**kwargs)`` under ``name``. Stack it for several names."""

    def decorate(cls: type[Block]) -> type[Block]:
        if name in _REGISTRY:
            raise BlockError(f"block name {name!r} is already registered (by {_REGISTRY[name].cls.__name__})")
        if getattr(cls, "family", None) not in FAMILIES:
            raise BlockError(f"{cls.__name__}.family must be one of {FAMILIES}")
        _REGISTRY[name] = BlockSpec(name, cls, dict(kwargs))
        return cls

    return decorate


def lookup(name: str) -> BlockSpec:
    """The spec registered under ``name``; an unknown name says which names are close.

    A name of the form ``module:object`` is a user block: the module is imported and the object (a
    Block subclass, or a function made one by :func:`function_block`) registered under that name.
    """
    _load_builtins()
    if name not in _REGISTRY and ":" in name:
        _load_user_block(name)
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3)
        hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
        raise BlockError(f"unknown block {name!r}{hint}; `engine blocks` lists them all") from None


def _load_user_block(name: str) -> None:
    module_name, _, attribute = name.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BlockError(f"user block {name!r}: cannot import module {module_name!r} ({exc}); list its folder "
                         "in space.block_paths or on PYTHONPATH") from None
    except Exception as exc:  # a user module may fail any way at all (a syntax error, a bad import)
        raise BlockError(f"user block {name!r}: importing {module_name!r} failed: {type(exc).__name__}: {exc}") \
            from None
    obj = getattr(module, attribute, None)
    if not (isinstance(obj, type) and issubclass(obj, Block)):
        raise BlockError(f"user block {name!r}: {module_name}.{attribute} is not a Block class "
                         "(subclass blocks.Block, or decorate a function with blocks.function_block)")
    register(name)(obj)


def use_paths(paths: list[str]) -> None:
    """Make folders of user block modules importable (``space.block_paths``)."""
    for path in paths:
        if path not in sys.path:
            sys.path.insert(0, path)


def function_block(family: str, order_matters: bool, keeps_order: bool) -> Callable[[Callable], type[Block]]:
    """Turn a function ``f(x, name) -> tensor`` into a Block class (for ``module:function`` names).

    Example::

        >>> @function_block(family="sequence", order_matters=True, keeps_order=True)
        ... def squeeze_excite(x, name):
        ...     ...
    """

    def decorate(function: Callable) -> type[Block]:
        def build(self: Block, x: Any, name: str) -> Any:
            return function(x, name)

        attributes = {"family": family, "order_matters": order_matters, "keeps_order": keeps_order,
                      "build": build, "__doc__": function.__doc__, "__module__": function.__module__}
        return type(function.__name__, (Block,), attributes)

    return decorate


def names(family: str | None = None) -> list[str]:
    """Registered block names, optionally of one family, in registration order."""
    _load_builtins()
    return [n for n, spec in _REGISTRY.items() if family is None or spec.family == family]


def _load_builtins() -> None:
    # The built-in families register themselves on import; importing here keeps lookups complete
    # without making every importer of the registry list the family modules.
    from blocks import dense, embedding, image, network, sequence  # noqa: F401
