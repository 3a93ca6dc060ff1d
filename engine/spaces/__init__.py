"""Search spaces, by the ``space.kind`` that selects them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.space_options import SpaceOptions, space_options
from engine.spaces.base import Neighbour, SizeFeatures, Space, SpaceError
from engine.spaces.nb201 import NB201Space
from engine.spaces.tower import TowerSpace

SPACES: dict[str, type[Space]] = {cls.kind: cls for cls in (TowerSpace, NB201Space)}


def make_space(options: SpaceOptions | Mapping[str, Any]) -> Space:
    """The space a config's ``space`` section (or a raw ``[space]`` table, read with its defaults) describes;
    its blocks are looked up here, so a space that cannot be made raises ConfigError naming them."""
    if isinstance(options, Mapping):
        options = space_options(options)
    return SPACES[options.kind](options)


__all__ = ["SPACES", "Neighbour", "SizeFeatures", "Space", "SpaceError", "make_space"]
