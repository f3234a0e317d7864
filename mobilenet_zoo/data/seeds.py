"""Per-example seeds for tf.data augmentation, so the same ``--seed`` gives the same run.

A stateful random op (``tf.random.uniform(seed=s)``) inside a ``Dataset.map`` with
``num_parallel_calls`` draws its numbers in whatever order the parallel calls reach
it, so which example gets which flip or crop changes from run to run even with a
fixed seed. Stateless ops keyed on a per-example seed do not: the seeds come from
``tf.data.Dataset.random(seed, rerandomize_each_iteration=True)`` zipped with the
(already shuffled) examples, so example *i* of epoch *e* always gets the same
augmentation, whatever the parallelism ("Randomness in tf.data", TensorFlow guide
on random number generation: stateless RNGs are the deterministic choice).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mobilenet_zoo.tensorflow_support import import_tensorflow

if TYPE_CHECKING:
    import tensorflow as tf


def with_example_seeds(ds: tf.data.Dataset, seed: int | None) -> tf.data.Dataset:
    """``ds`` of ``x`` -> ``ds`` of ``(x, seed)``, ``seed`` an int64 ``[2]`` stateless-op seed.

    With ``seed=None`` the seeds are random (a different run each time), as before.
    Each pass over the data (each epoch) gets new, reproducible seeds.
    """
    tf = import_tensorflow("the tf.data input pipeline")
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2, drop_remainder=True)
    return tf.data.Dataset.zip((ds, seeds))


def fold(seed: tf.Tensor, k: int) -> tf.Tensor:
    """A seed for the ``k``-th random op of one example (``stateless_fold_in``)."""
    tf = import_tensorflow("the tf.data input pipeline")
    return tf.random.experimental.stateless_fold_in(tf.cast(seed, tf.int64), k)
