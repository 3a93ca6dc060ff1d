"""What each configuration key means, read from the schema: ``engine config --explain`` and the README's table.

The schema (the section classes of ``engine/config.py``) is the one place an option is described;
this module only lays it out, so the help, the README and the checks cannot drift apart.

Example::

    >>> print(explain("search.beam.k"))
    search.beam.k = 8  (an integer, above 0)
      beam width: parents are drawn from the top-k completed trials
    >>> markdown_table().splitlines()[0]
    '| key | default | allowed | meaning |'
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterator
from dataclasses import dataclass

from engine.config import SECTIONS
from engine.options import ConfigError, Option, non_negative, options_of, positive, probability
from engine.space_options import SPACE_KINDS

_BOUNDS = {positive: "above 0", non_negative: "0 or more", probability: "between 0 and 1"}
_TYPES = {int: "an integer", float: "a number", str: "text", bool: "true or false", list: "a list", dict: "a table"}


@dataclass(frozen=True)
class Entry:
    """One key as a person reads it."""

    key: str
    default: str
    allowed: str
    meaning: str


def _allowed(option: Option) -> str:
    if option.choices is not None:
        return " / ".join(json.dumps(choice) for choice in option.choices if choice != "")
    kinds = " or ".join(_TYPES[t] for t in option.types if t in _TYPES and not (t is int and float in option.types))
    bound = _BOUNDS.get(option.check)
    return f"{kinds}, {bound}" if bound else kinds


def _walk(cls: type, prefix: str, note: str = "") -> Iterator[Entry]:
    for key, spec in options_of(cls, prefix):
        if key != "space.kind":
            yield Entry(key, json.dumps(spec.default), _allowed(spec), note + spec.help)


def entries() -> list[Entry]:
    """Every key of a search config, table by table, in the order of the schema."""
    rows = list(_walk(SECTIONS["search"], "search"))
    rows.append(Entry("space.kind", "(required)", " / ".join(json.dumps(kind) for kind in SPACE_KINDS),
                      "the search space; the keys marked with a kind below belong to that space"))
    for kind, cls in SPACE_KINDS.items():
        rows.extend(_walk(cls, "space", note=f"({kind}) "))
    for name in ("evaluator", "data", "training", "sharing", "distillation", "ensemble", "engine"):
        rows.extend(_walk(SECTIONS[name], name))
    return rows


def explain(key: str | None = None) -> str:
    """Each key's default, what it allows and what it means: all of them, one, or those under a table
    (``"search.beam"``). An unknown key is refused with the nearest ones named."""
    rows = entries()
    chosen = [r for r in rows if key is None or r.key == key or r.key.startswith(f"{key}.")]
    if not chosen:
        near = difflib.get_close_matches(key, [r.key for r in rows], n=3)
        raise ConfigError(f"no configuration key {key!r}" + (f" (did you mean {', '.join(near)}?)" if near else ""))
    return "\n".join(f"{r.key} = {r.default}  ({r.allowed})\n  {r.meaning}" for r in chosen)


def markdown_table() -> str:
    """The README's configuration table."""

    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    lines = ["| key | default | allowed | meaning |", "|---|---|---|---|"]
    lines += [f"| `{r.key}` | `{cell(r.default)}` | {cell(r.allowed)} | {cell(r.meaning)} |" for r in entries()]
    return "\n".join(lines)
