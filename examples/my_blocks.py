"""Your own blocks: a few lines of Keras each, named in a search config as ``my_blocks:<name>``.

    [space]
    block_paths = ["."]                                   # this folder, relative to the config
    blocks = ["conv1d_32_k3", "my_blocks:SqueezeExcite", "my_blocks:dilated_conv", "dense_64"]

``SmallCNN``, ``SmallMLP`` and ``SmallGRU`` are whole networks used as blocks: a tower may start with one
and add dense blocks after it, and with ensembles a search can do nothing but train and combine them.

See examples/user_blocks.toml and examples/ensemble_networks.toml.
"""

from __future__ import annotations

from blocks import Block, Count, function_block, layers
from blocks.network import NetworkBlock


class SqueezeExcite(Block):
    """Squeeze-and-excitation (Hu et al., 2018): reweights channels by their global context."""

    family = "sequence"
    order_matters = True
    keeps_order = True

    def build(self, x, name):
        k = layers()
        channels = x.shape[-1]
        weights = k.GlobalAveragePooling1D(name=f"{name}_squeeze")(x)
        weights = k.Dense(max(channels // 4, 4), activation="relu", name=f"{name}_reduce")(weights)
        weights = k.Dense(channels, activation="sigmoid", name=f"{name}_excite")(weights)
        return k.Multiply(name=f"{name}_scale")([x, k.Reshape((1, channels), name=f"{name}_expand")(weights)])

    def count(self, shape):
        """Its weights on input of ``shape`` (steps, channels), without building it: the two dense layers."""
        channels = shape[-1]
        reduced = max(channels // 4, 4)
        return Count((channels + 1) * reduced + (reduced + 1) * channels, shape)


@function_block(family="sequence", order_matters=True, keeps_order=True)
def dilated_conv(x, name):
    """A 1-D convolution with dilation 2: a wider view for the same parameters."""
    return layers().Conv1D(32, 3, dilation_rate=2, padding="same", activation="relu", name=f"{name}_conv")(x)


class SmallCNN(NetworkBlock):
    """A known-good little 1-D CNN: three strided convolutions, as one block."""

    def network(self, input_shape):
        import keras

        return keras.Sequential([
            keras.Input(input_shape),
            keras.layers.Reshape((input_shape[0], 1)) if len(input_shape) == 1 else keras.layers.Identity(),
            keras.layers.Conv1D(25, 5, strides=2, padding="same", activation="relu"),
            keras.layers.Conv1D(25, 5, strides=2, padding="same", activation="relu"),
            keras.layers.Conv1D(25, 5, strides=2, padding="same", activation="relu"),
            keras.layers.Flatten(),
        ], name="small_cnn")


class SmallMLP(NetworkBlock):
    """A plain two-layer perceptron on the flattened input."""

    def network(self, input_shape):
        import keras

        return keras.Sequential([
            keras.Input(input_shape),
            keras.layers.Flatten(),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dense(64, activation="relu"),
        ], name="small_mlp")


class SmallGRU(NetworkBlock):
    """A strided convolution to shorten the sequence, then a GRU over it."""

    def network(self, input_shape):
        import keras

        return keras.Sequential([
            keras.Input(input_shape),
            keras.layers.Reshape((input_shape[0], 1)) if len(input_shape) == 1 else keras.layers.Identity(),
            keras.layers.Conv1D(16, 5, strides=2, padding="same", activation="relu"),
            keras.layers.GRU(32),
        ], name="small_gru")
