"""Whole networks as blocks: a user's own Keras model becomes one block of a tower.

With blocks like these, a search composes known-good networks (heads on top of them, or, with
ensembles, several of them) rather than layers. A network takes the data as it comes, so it stands
first in a tower; what follows it sees its flat output.

Example (in a module named in ``space.blocks`` as ``my_blocks:SmallCNN``)::

    >>> class SmallCNN(NetworkBlock):
    ...     def network(self, input_shape):
    ...         return keras.Sequential([keras.Input(input_shape), keras.layers.Conv1D(16, 3), ...])
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

from blocks.registry import Block


class NetworkBlock(Block):
    """Base class of whole-network blocks: subclasses return a Keras model from ``network``."""

    family = "network"
    order_matters = True
    keeps_order = False

    @abstractmethod
    def network(self, input_shape: tuple[int, ...]) -> Any:
        """A Keras model taking examples of ``input_shape``."""

    def build(self, x: Any, name: str) -> Any:
        import keras

        model = self.network(tuple(x.shape[1:]))
        output = keras.layers.Identity(name=f"{name}_in")(x)
        output = model(output)
        return keras.layers.Flatten(name=f"{name}_out")(output) if len(output.shape) > 2 else output
