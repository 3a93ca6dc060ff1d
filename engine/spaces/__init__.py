"""Search spaces, by the ``space.kind`` that selects them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.spaces.base import Neighbour, Space, SpaceError
from engine.spaces.nb201 import NB201Space
from engine.spaces.tower import TowerSpace

SPACES: dict[str, type[Space]] = {cls.kind: cls for cls in (TowerSpace, NB201Space)}


def make_space(config: Mapping[str, Any]) -> Space:
    """The space a resolved ``[space]`` table describes."""
    return SPACES[config["kind"]](config)


__all__ = ["SPACES", "Neighbour", "Space", "SpaceError", "make_space"]
