"""Layers Lineage adds to Keras, saved with exported models (package ``lineage``): filling missing
numbers in preprocessing, the cepstrum of an audio front end, and combining ensemble members; importing this
module also registers the blocks' own layers (a bag of tokens' mean), so exported models load."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from blocks.token_mean import TokenMean  # noqa: F401 - registered for models that hold it


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


@keras.saving.register_keras_serializable(package="lineage")
class MelCepstrum(keras.layers.Layer):
    """The first ``coefficients`` MFCCs of log-mel frames: an orthonormal DCT-II over the last axis (the bands).

    Example::

        >>> MelCepstrum(10)(log_mel)        # (batch, frames, 40) -> (batch, frames, 10)
    """

    def __init__(self, coefficients: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.coefficients = int(coefficients)

    def build(self, input_shape: tuple) -> None:
        bands = int(input_shape[-1])
        n, k = np.meshgrid(np.arange(bands), np.arange(self.coefficients), indexing="ij")
        basis = np.sqrt(2 / bands) * np.cos(np.pi / bands * (n + 0.5) * k)
        basis[:, 0] /= np.sqrt(2)
        self.basis = keras.ops.convert_to_tensor(basis.astype("float32"))

    def call(self, inputs: Any) -> Any:
        return keras.ops.matmul(inputs, self.basis)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (*input_shape[:-1], self.coefficients)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "coefficients": self.coefficients}


@keras.saving.register_keras_serializable(package="lineage")
class WeightedSum(keras.layers.Layer):
    """Combines ensemble members' outputs with fixed weights (the weights the ensemble step chose).

    Example::

        >>> WeightedSum([0.7, 0.3])([probabilities_a, probabilities_b])
    """

    def __init__(self, weights: list[float], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.member_weights = [float(w) for w in weights]

    def call(self, inputs: list[Any]) -> Any:
        return sum(w * x for w, x in zip(self.member_weights, inputs, strict=True))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "weights": self.member_weights}
