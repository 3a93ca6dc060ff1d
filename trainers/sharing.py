"""Weight sharing: a new tower starts from weights other trials learned, where its layers match.

A layer matches when a source tower has a layer of the same name (the same block at the same position:
``b<position>_<block>_...``) whose weights have the same shapes. With one source (the mutated parent)
the weights are copied; with several they are averaged, each source counting by its weight among the
sources that have the layer. The head is shared only between towers of the same architecture (a
hyperparameter mutation), where it sits on the same features. Everything else starts fresh.

Example::

    >>> copied = inherit_weights(child, [(parent_model, 1.0)], same_architecture=False)
    >>> copied   # ['b0_conv1d_32_k3_conv', 'b1_maxpool1d_pool', ...] (layers with weights only)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def _shareable(name: str, same_architecture: bool) -> bool:
    return same_architecture or (name[:1] == "b" and name[1:2].isdigit())


def inherit_weights(model: Any, sources: Sequence[tuple[Any, float]], same_architecture: bool) -> list[str]:
    """Set ``model``'s matching layers from ``sources`` (model, weight); returns the layers it set."""
    inherited = []
    for layer in model.layers:
        mine = layer.get_weights()
        if not mine or not _shareable(layer.name, same_architecture):
            continue
        found = []
        for source, weight in sources:
            try:
                theirs = source.get_layer(layer.name).get_weights()
            except ValueError:
                continue
            if len(theirs) == len(mine) and all(a.shape == b.shape for a, b in zip(theirs, mine, strict=True)):
                found.append((theirs, weight))
        if not found:
            continue
        total = sum(weight for _, weight in found)
        shares = [weight / total for _, weight in found] if total > 0 else [1 / len(found)] * len(found)
        arrays = [theirs for theirs, _ in found]
        layer.set_weights([
            sum(np.asarray(a[i], dtype="float64") * share for a, share in zip(arrays, shares, strict=True))
            .astype(mine[i].dtype)
            for i in range(len(mine))
        ])
        inherited.append(layer.name)
    return inherited
