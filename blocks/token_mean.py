"""The Keras layer of a bag of tokens: the mean of a text's token vectors, padding left out.

Keras' own masked ``GlobalAveragePooling1D`` divides by the number of tokens, so an empty text (all padding,
which csv text columns allow) would give NaN; this mean gives it the zero vector. Imported only where a model
is built or loaded (``trainers.layers`` registers it for exported models), never by the engine.

Example::

    >>> TokenMean()([vectors, token_ids])   # (batch, tokens, d), (batch, tokens) -> (batch, d)
"""

from __future__ import annotations

from typing import Any

import keras


@keras.saving.register_keras_serializable(package="lineage")
class TokenMean(keras.layers.Layer):
    """Averages ``vectors`` over the positions whose token id is not 0 (padding)."""

    def call(self, inputs: list[Any]) -> Any:
        vectors, ids = inputs
        present = keras.ops.expand_dims(keras.ops.cast(keras.ops.not_equal(ids, 0), vectors.dtype), -1)
        total = keras.ops.sum(vectors * present, axis=1)
        return total / keras.ops.maximum(keras.ops.sum(present, axis=1), 1.0)

    def compute_output_shape(self, input_shape: list[tuple]) -> tuple:
        vectors, _ = input_shape
        return (vectors[0], vectors[2])
