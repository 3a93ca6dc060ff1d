"""Preprocessing layers Lineage adds to Keras, saved with exported models (package ``lineage``)."""

from __future__ import annotations

from typing import Any

import keras


@keras.saving.register_keras_serializable(package="lineage")
class FillMissing(keras.layers.Layer):
    """Replaces NaN (a missing number) with a fixed value, the training mean of its column.

    Example::

        >>> FillMissing(2.5)(keras.ops.convert_to_tensor([[1.0], [float("nan")]]))   # [[1.0], [2.5]]
    """

    def __init__(self, value: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.value = float(value)

    def call(self, inputs: Any) -> Any:
        return keras.ops.where(keras.ops.isnan(inputs), self.value, inputs)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "value": self.value}
