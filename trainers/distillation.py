"""Knowledge distillation: a loss term that pulls a student towards a teacher's outputs.

The teacher's outputs on the training data (an artifact of the teacher trial, or of the best
ensemble) ride along with the labels as extra target columns, so Keras' ordinary ``fit`` trains on
both. For a classification task the loss is

    (1 - w) * CE(labels, softmax(z)) + w * T^2 * KL(softmax(t / T) || softmax(z / T))     (soft)
    (1 - w) * CE(labels, softmax(z)) + w * mean((z - t)^2)                                (logits)

with student logits z, teacher logits t, temperature T and teacher weight w (Hinton, Vinyals and
Dean, 2015, "Distilling the Knowledge in a Neural Network"). Distillation is for classification; the
config refuses a teacher for a regression task.

Example::

    >>> targets = pack_targets(labels, teacher_outputs)
    >>> model.compile(optimizer, loss=distillation_loss("soft", 4.0, 0.5),
    ...               metrics=[packed_accuracy()])
"""

from __future__ import annotations

from typing import Any

import numpy as np


def pack_targets(labels: np.ndarray, teacher: np.ndarray) -> np.ndarray:
    """Labels (first column) and the teacher's outputs (the rest), row by row."""
    return np.concatenate([labels.reshape(len(labels), -1).astype("float32"),
                           teacher.reshape(len(teacher), -1).astype("float32")], axis=1)


def distillation_loss(kind: str, temperature: float, weight: float) -> Any:
    """The loss of a student (logits) trained on packed targets; ``kind`` is ``soft`` or ``logits``."""
    import keras
    from keras import ops

    def loss(packed: Any, outputs: Any) -> Any:
        truth, teacher = packed[:, :1], packed[:, 1:]
        hard = keras.losses.sparse_categorical_crossentropy(ops.cast(truth[:, 0], "int32"), outputs,
                                                            from_logits=True)
        if kind == "soft":
            teacher_soft = ops.softmax(teacher / temperature, axis=-1)
            student_log = ops.log_softmax(outputs / temperature, axis=-1)
            teacher_log = ops.log_softmax(teacher / temperature, axis=-1)
            soft = temperature**2 * ops.sum(teacher_soft * (teacher_log - student_log), axis=-1)
        else:
            soft = ops.mean(ops.square(outputs - teacher), axis=-1)
        return (1.0 - weight) * hard + weight * soft

    loss.__name__ = f"distillation_{kind}"
    return loss


def packed_accuracy() -> Any:
    """Accuracy of logits against the label column of packed targets (reported as ``accuracy``)."""
    import keras
    from keras import ops

    def accuracy(packed: Any, logits: Any) -> Any:
        predicted = ops.cast(ops.argmax(logits, axis=-1), "float32")
        return ops.cast(ops.equal(predicted, packed[:, 0]), "float32")

    return keras.metrics.MeanMetricWrapper(accuracy, name="accuracy")
