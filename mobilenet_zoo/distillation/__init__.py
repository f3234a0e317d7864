"""Distillation (paper s.4.4-4.6): a MobileNet student learns from a frozen teacher.

Built on ``keras.distillation.Distiller`` (teacher frozen, run with
``training=False``). Three losses: ``softmax_distillation`` (KL x T^2),
``SigmoidDistillation`` (multi-label soft targets), ``EmbeddingDistillation``
(squared L2). With ``student_loss_weight=0`` the student needs no labels at all.

Note: in Keras 3.15.1 ``LogitsDistillation()`` with its default
``loss="kl_divergence"`` turns the string into the plain function, misses its
own KL branch, and computes KL on raw logits. ``softmax_distillation`` passes a
``keras.losses.KLDivergence()`` instance, which takes the softmax path.
"""

from __future__ import annotations

import os

import keras
from keras.distillation import Distiller

from mobilenet_zoo import weights_io
from mobilenet_zoo.distillation.losses import (
    EmbeddingDistillation,
    LogitsDistillation,
    SigmoidDistillation,
    as_keras_loss,
)
from mobilenet_zoo.tensorflow_support import import_tensorflow


def softmax_distillation(temperature: float = 10.0) -> LogitsDistillation:
    """KL(softmax(t / T) || softmax(s / T)) x T^2 (keras.io demo: T = 10)."""
    return LogitsDistillation(temperature=temperature, loss=keras.losses.KLDivergence())


def make_distiller(
    teacher: keras.Model,
    student: keras.Model,
    distillation_loss,
    student_loss: str | keras.losses.Loss | None = None,
    student_loss_weight: float = 0.0,
    optimizer: keras.optimizers.Optimizer | str = "adam",
    metrics: list | None = None,
) -> Distiller:
    """A compiled ``keras.distillation.Distiller``.

    Args:
        teacher: frozen, run in inference mode.
        student: trained.
        distillation_loss: one of this module's losses.
        student_loss: label loss; ``None`` trains on unlabeled data (then
            ``student_loss_weight`` must be 0 and ``fit`` takes images only).
        student_loss_weight: weight a of ``a * label_loss + (1 - a) * distill``.
    """
    if student_loss is None and student_loss_weight:
        raise ValueError("`student_loss_weight` > 0 needs a `student_loss` (labels).")
    teacher.trainable = False
    distiller = Distiller(teacher=teacher, student=student,
                          distillation_losses=[distillation_loss],
                          student_loss_weight=student_loss_weight)
    # Keras requires a student loss even when its weight is 0 (it is then skipped).
    distiller.compile(optimizer=optimizer, loss=student_loss or "mse", metrics=metrics)
    return distiller


def _feature(t):
    tf = import_tensorflow("the teacher cache (TFRecord)")
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[tf.io.serialize_tensor(t).numpy()]))


def cache_teacher_outputs(teacher: keras.Model, images, path: str | os.PathLike) -> int:
    """Runs the teacher once over batched ``images`` and writes (image, output) TFRecords.

    For large unlabeled sets: the student then trains from the file with
    ``load_teacher_cache`` + ``as_keras_loss`` without running the teacher again.
    Returns the number of examples written.
    """
    tf = import_tensorflow("the teacher cache (TFRecord)")
    count = [0]

    def write(tmp: str) -> None:
        with tf.io.TFRecordWriter(tmp) as writer:
            for batch in images:
                batch = batch[0] if isinstance(batch, (tuple, list)) else batch
                batch = keras.ops.convert_to_numpy(batch)  # any backend's tensors
                outputs = keras.ops.convert_to_numpy(teacher(batch, training=False))
                for x, y in zip(batch, outputs):
                    ex = tf.train.Example(features=tf.train.Features(feature={
                        "image": _feature(tf.constant(x, tf.float32)),
                        "teacher": _feature(tf.constant(y, tf.float32))}))
                    writer.write(ex.SerializeToString())
                    count[0] += 1

    # Written to a temporary file and renamed: a run killed while caching leaves no
    # truncated cache that a later run would read as complete.
    weights_io.atomic_write(path, write)
    n = count[0]
    return n


def load_teacher_cache(path: str | os.PathLike):
    """(image, teacher output) pairs from ``cache_teacher_outputs``, parsed in graph mode."""
    tf = import_tensorflow("the teacher cache (TFRecord)")
    spec = {"image": tf.io.FixedLenFeature([], tf.string), "teacher": tf.io.FixedLenFeature([], tf.string)}

    def decode(record):
        ex = tf.io.parse_single_example(record, spec)
        return (tf.io.parse_tensor(ex["image"], tf.float32), tf.io.parse_tensor(ex["teacher"], tf.float32))

    records = tf.data.TFRecordDataset(os.fspath(path))
    # Shapes are the same for every record: read them once, so Keras sees static shapes.
    first_image, first_output = decode(next(iter(records)))

    def parse(record):
        image, output = decode(record)
        return tf.ensure_shape(image, first_image.shape), tf.ensure_shape(output, first_output.shape)

    return records.map(parse, num_parallel_calls=tf.data.AUTOTUNE)


def student_from_cache(student: keras.Model, distillation_loss, optimizer="adam") -> keras.Model:
    """Compiles ``student`` to train on cached (image, teacher output) pairs."""
    student.compile(optimizer=optimizer, loss=as_keras_loss(distillation_loss))
    return student



__all__ = [
    "Distiller",
    "EmbeddingDistillation",
    "LogitsDistillation",
    "SigmoidDistillation",
    "as_keras_loss",
    "cache_teacher_outputs",
    "load_teacher_cache",
    "make_distiller",
    "softmax_distillation",
    "student_from_cache",
]
