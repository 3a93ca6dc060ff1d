"""The block registry: every block a tower can be built from, by lookup name.

A block is a small class with a few properties the tower needs to place it: its ``family``
(dense, sequence or image), whether the order of its input matters (convolutions, pooling and
recurrent blocks: yes; dense blocks: no) and whether its output still has an order. One class can
be registered under several names with different init arguments.

Example::

    >>> from blocks.registry import Block, register
    >>> @register("dense_64", units=64)
    ... @register("dense_128", units=128)
    ... class Dense(Block):
    ...     family = "dense"
    ...     order_matters = False
    ...     keeps_order = False
    ...     def __init__(self, units: int) -> None:
    ...         self.units = units
    >>> lookup("dense_64").create().units
    64
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any, ClassVar

FAMILIES = ("dense", "sequence", "image")


class BlockError(KeyError):
    """An unknown block name, or a block registered twice."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class Block:
    """Base class of every block. Subclasses set the three class properties."""

    family: ClassVar[str]
    order_matters: ClassVar[bool]
    keeps_order: ClassVar[bool]


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
    """The spec registered under ``name``; an unknown name says which names are close."""
    _load_builtins()
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3)
        hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
        raise BlockError(f"unknown block {name!r}{hint}; `engine blocks` lists them all") from None


def names(family: str | None = None) -> list[str]:
    """Registered block names, optionally of one family, in registration order."""
    _load_builtins()
    return [n for n, spec in _REGISTRY.items() if family is None or spec.family == family]


def _load_builtins() -> None:
    # The built-in families register themselves on import; importing here keeps lookups complete
    # without making every importer of the registry list the family modules.
    from blocks import dense, image, sequence  # noqa: F401
