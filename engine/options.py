"""How a configuration section declares its keys: each key is a dataclass field made by :func:`option` (its
default, help, choices and check) or :func:`section` (a nested table); :func:`read_section` reads a raw TOML
table against such a class, naming the key of the first problem.

Example::

    >>> @dataclass(frozen=True)
    ... class BeamOptions:
    ...     k: int = option(8, "beam width: the top-K trials a proposal may mutate", check=positive)
    >>> read_section(BeamOptions, {"k": 4}, "search.beam").k
    4
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any

Check = Callable[[Any], str | None]


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the key (and the file)."""


_TYPES: dict[type, tuple[type, ...]] = {bool: (bool,), int: (int,), float: (int, float), str: (str,),
                                        tuple: (list, tuple), dict: (dict, MappingProxyType)}
_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false", list: "a list",
               dict: "a table"}


@dataclass(frozen=True)
class Option:
    """One configuration key: its default, help text, allowed choices and check. The types it accepts
    follow from the default (a float option takes integers too; a list is kept as a tuple)."""

    default: Any
    help: str
    choices: tuple[Any, ...] | None = None
    check: Check | None = None

    @property
    def types(self) -> tuple[type, ...]:
        return _TYPES[type(self.default)]

    def validate(self, key: str, value: Any) -> Any:
        """The value, frozen (lists become tuples, tables read-only), or ConfigError naming ``key``."""
        if isinstance(value, bool) and bool not in self.types:
            raise ConfigError(f"{key} must be {_type_names(self.types)}, not a boolean")
        if not isinstance(value, self.types):
            raise ConfigError(f"{key} must be {_type_names(self.types)}, not {type(value).__name__} {value!r}")
        if float in self.types and isinstance(value, int):
            value = float(value)
        if self.choices is not None and value not in self.choices:
            raise ConfigError(f"{key} must be one of {list(self.choices)}, not {value!r}")
        if self.check is not None:
            problem = self.check(value)
            if problem:
                raise ConfigError(f"{key}{'' if problem.startswith('[') else ' '}{problem}")
        return freeze(value)


def _type_names(types: tuple[type, ...]) -> str:
    return " or ".join(_TYPE_NAMES[t] for t in types if t in _TYPE_NAMES)


def freeze(value: Any) -> Any:
    """A value as a config holds it: lists as tuples, tables read-only."""
    if isinstance(value, list | tuple):
        return tuple(freeze(v) for v in value)
    if isinstance(value, Mapping):
        return MappingProxyType({k: freeze(v) for k, v in value.items()})
    return value


def thaw(value: Any) -> Any:
    """A config value back as plain data: tuples as lists, tables as dicts."""
    if isinstance(value, tuple):
        return [thaw(v) for v in value]
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    return value


def option(default: Any, help: str, choices: tuple[Any, ...] | None = None, check: Check | None = None) -> Any:
    """A dataclass field declaring one key of a section."""
    spec = Option(freeze(default) if isinstance(default, list) else default, help, choices, check)
    return field(default_factory=lambda: freeze(spec.default), metadata={"option": spec})


def section(cls: type) -> Any:
    """A dataclass field holding a nested table."""
    return field(default_factory=cls, metadata={"section": cls})


def positive(value: float) -> str | None:
    return None if value > 0 else f"must be greater than 0, not {value}"


def non_negative(value: float) -> str | None:
    return None if value >= 0 else f"must be 0 or more, not {value}"


def probability(value: float) -> str | None:
    return None if 0 <= value <= 1 else f"must be between 0 and 1, not {value}"


def fraction(value: float) -> str | None:
    return None if 0 <= value < 0.5 else f"must be at least 0 and below 0.5, not {value}"


def as_dict(options: Any) -> dict[str, Any]:
    """A section (any options dataclass) as plain msgpack- and JSON-ready data."""
    return {f.name: as_dict(value) if dataclasses.is_dataclass(value) else thaw(value)
            for f in fields(options) for value in (getattr(options, f.name),)}


def options_of(cls: type, prefix: str) -> Iterator[tuple[str, Option]]:
    """Every key of a section class, dotted, with its :class:`Option`, in declaration order."""
    for f in fields(cls):
        if "section" in f.metadata:
            yield from options_of(f.metadata["section"], f"{prefix}.{f.name}")
        else:
            yield f"{prefix}.{f.name}", f.metadata["option"]


def choices_of(cls: type, key: str) -> tuple[Any, ...]:
    """The values a key of a section class allows (``choices_of(SharingOptions, "mode")``)."""
    return next(f.metadata["option"].choices for f in fields(cls) if f.name == key)


def read_section(cls: type, given: Any, prefix: str) -> Any:
    """A raw table read as section class ``cls`` (keys under ``prefix``): defaults filled, values checked."""
    if not isinstance(given, Mapping):
        raise ConfigError(f"[{prefix}] must be a table, not {type(given).__name__}")
    names = [f.name for f in fields(cls)]
    unknown = [k for k in given if k not in names]
    if unknown:
        key = unknown[0]
        hint = difflib.get_close_matches(str(key), names, n=1)
        suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise ConfigError(f"unknown key {f'{prefix}.{key}'!r}{suggestion}; known keys in [{prefix}]: {sorted(names)}")
    values = {}
    for f in fields(cls):
        path = f"{prefix}.{f.name}"
        if "section" in f.metadata:
            values[f.name] = read_section(f.metadata["section"], given.get(f.name, {}), path)
        elif f.name in given:
            values[f.name] = f.metadata["option"].validate(path, given[f.name])
    return cls(**values)
