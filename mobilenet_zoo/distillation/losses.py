"""The paper's three distillation losses, as ``keras.distillation.DistillationLoss``.

* ``LogitsDistillation`` (Keras core, re-exported): softmax with temperature,
  KL(softmax(t / T) || softmax(s / T)) x T^2 (Hinton et al.; keras.io demo).
* ``SigmoidDistillation``: multi-label soft targets, binary cross-entropy of the
  student's logits against the teacher's sigmoid probabilities (face
  attributes, paper s.4.4).
* ``EmbeddingDistillation``: squared L2 between teacher and student embeddings,
  optionally L2-normalised first (FaceNet distillation, paper s.4.6).

Each also works as a plain Keras loss on cached teacher outputs
(``as_keras_loss``), for training from teacher outputs stored once on disk.
"""

from __future__ import annotations

import keras
from keras import ops
from keras.distillation import DistillationLoss, LogitsDistillation


@keras.saving.register_keras_serializable(package="mobilenet_zoo")
class SigmoidDistillation(DistillationLoss):
    """BCE(sigmoid(teacher / T), student / T) summed over attributes, mean over batch.

    Args:
        temperature: softens both sides (1 = the teacher's probabilities as given).
    """

    def __init__(self, temperature: float = 1.0) -> None:
        if temperature <= 0:
            raise ValueError(f"`temperature` must be > 0, got {temperature}.")
        self.temperature = float(temperature)

    def compute_loss(self, teacher_outputs, student_outputs, **kwargs):
        t = ops.sigmoid(ops.cast(teacher_outputs, "float32") / self.temperature)
        s = ops.cast(student_outputs, "float32") / self.temperature
        # Stable BCE with logits: max(s, 0) - s * t + log(1 + exp(-|s|)).
        bce = ops.maximum(s, 0.0) - s * t + ops.log1p(ops.exp(-ops.abs(s)))
        return ops.mean(ops.sum(bce, axis=-1)) * self.temperature**2

    def get_config(self):
        return {"temperature": self.temperature}


@keras.saving.register_keras_serializable(package="mobilenet_zoo")
class EmbeddingDistillation(DistillationLoss):
    """Mean over the batch of ``||teacher - student||^2`` (paper s.4.6).

    Args:
        normalize: L2-normalise both embeddings first (FaceNet's embeddings live
            on the unit sphere).
    """

    def __init__(self, normalize: bool = False) -> None:
        self.normalize = bool(normalize)

    def compute_loss(self, teacher_outputs, student_outputs, **kwargs):
        t = ops.cast(teacher_outputs, "float32")
        s = ops.cast(student_outputs, "float32")
        if self.normalize:
            t = t / ops.maximum(ops.norm(t, axis=-1, keepdims=True), 1e-12)
            s = s / ops.maximum(ops.norm(s, axis=-1, keepdims=True), 1e-12)
        return ops.mean(ops.sum(ops.square(t - s), axis=-1))

    def get_config(self):
        return {"normalize": self.normalize}


class _AsKerasLoss(keras.losses.Loss):
    def __init__(self, distillation_loss: DistillationLoss, name: str = "distillation") -> None:
        super().__init__(name=name)
        self.distillation_loss = distillation_loss

    def call(self, y_true, y_pred):
        return self.distillation_loss.compute_loss(y_true, y_pred)


def as_keras_loss(distillation_loss: DistillationLoss) -> keras.losses.Loss:
    """A Keras loss taking cached teacher outputs as ``y_true``."""
    return _AsKerasLoss(distillation_loss)


__all__ = ["LogitsDistillation", "SigmoidDistillation", "EmbeddingDistillation", "as_keras_loss"]
