"""Every workaround for a Keras (or TensorFlow) version, in one place.

Each workaround names the versions it applies to (``applies()``, a version guard
checked before anything is patched) and, in its docstring, the upstream problem
it works around. Nothing here changes Keras outside those versions, and a patch
is installed once (``install()`` is idempotent).

The only callers: ``mobilenet_zoo.training.get_strategy("multiworker")`` installs
``MULTI_WORKER`` before it creates the strategy. A program that creates its own
``tf.distribute.MultiWorkerMirroredStrategy`` calls ``install_multi_worker()``
first.
"""

from __future__ import annotations

from typing import Any

import keras


def keras_version() -> tuple[int, ...]:
    """``keras.version()`` as a tuple of ints (``"3.15.1"`` -> ``(3, 15, 1)``)."""
    parts = []
    for piece in keras.version().split(".")[:3]:
        digits = "".join(c for c in piece if c.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


# Keras 3's TensorFlow trainer (keras/src/backend/tensorflow/trainer.py) has both
# problems below since Keras 3.0 and still in 3.15 (the newest checked); no
# release fixes them yet, so the guard is "Keras 3 with the TensorFlow backend".
MULTI_WORKER_VERSIONS = ((3, 0, 0), (4, 0, 0))


def multi_worker_applies() -> bool:
    """True where the multi-worker workarounds are needed: Keras 3 (``MULTI_WORKER_VERSIONS``)
    on the TensorFlow backend (tf.distribute strategies exist only there)."""
    low, high = MULTI_WORKER_VERSIONS
    return low <= keras_version() < high and keras.backend.backend() == "tensorflow"


def _reduce_scalars_over_workers() -> None:
    """Keras 3's TF trainer reduces each step's logs across workers with
    ``strategy.reduce("MEAN", v, axis=0)`` (``reduce_per_replica``), which fails on
    scalar losses and metrics under ``MultiWorkerMirroredStrategy``: "ValueError:
    Invalid reduction dimension 0 for input with 0 dimensions", so no multi-worker
    ``fit`` can run (tensorflow/tensorflow#72388, "tf.distribute and keras 3
    incompatibility", reported on Keras 3 with TF 2.16-2.18; the advice there is
    to go back to Keras 2). Here scalars are reduced with ``axis=None`` (the mean
    over replicas, what Keras means); everything else is left to Keras."""
    import tensorflow as tf
    from keras.src.backend.tensorflow import trainer as tf_trainer

    if getattr(tf_trainer.reduce_per_replica, "_mobilenet_zoo_patch", False):
        return
    original = tf_trainer.reduce_per_replica

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and isinstance(
            strategy, tf.distribute.MultiWorkerMirroredStrategy
        ):
            def reduce_one(v):
                local = v.values[0] if isinstance(v, tf.distribute.DistributedValues) else v
                if hasattr(local, "shape") and local.shape.rank == 0:
                    return strategy.reduce("MEAN", v, axis=None)
                return original(v, strategy, reduction)

            return keras.tree.map_structure(reduce_one, values)
        return original(values, strategy, reduction)

    reduce_per_replica._mobilenet_zoo_patch = True
    tf_trainer.reduce_per_replica = reduce_per_replica


def build_from_local_replica(model: keras.Model, iterator: Any) -> bool:
    """Builds ``model`` from this worker's replica of the first batch; False (nothing
    done) unless the model trains under ``MultiWorkerMirroredStrategy``.

    Keras 3's ``TensorFlowTrainer._maybe_symbolic_build`` (keras/src/backend/
    tensorflow/trainer.py) reduces the first distributed batch with
    ``strategy.reduce("MEAN", batch, axis=None)`` only to learn its shapes;
    ``MultiWorkerMirroredStrategy`` cannot reduce a PerReplica batch eagerly
    ("Attempt to convert a value (PerReplica...)"), so ``fit`` fails on every
    multi-worker run. The local replica's batch has the same structure and dtypes.
    """
    strategy = getattr(model, "_distribute_strategy", None)
    if iterator is None or strategy is None:
        return False
    import tensorflow as tf  # only reached on the TensorFlow backend (a tf.distribute strategy)

    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return False
    for _, _, it in iterator:
        batch = next(it)
        break
    local = keras.tree.map_structure(
        lambda v: strategy.experimental_local_results(v)[0]
        if isinstance(v, tf.distribute.DistributedValues) else v, batch)
    with strategy.scope():
        model._symbolic_build(data_batch=local)
    return True


def _build_from_local_replica_everywhere() -> None:
    """``build_from_local_replica`` for every Keras model on the TF trainer (task
    models, the distillation recipes' plain models, ``Distiller``)."""
    from keras.src.backend.tensorflow import trainer as tf_trainer

    original = tf_trainer.TensorFlowTrainer._maybe_symbolic_build
    if getattr(original, "_mobilenet_zoo_patch", False):
        return

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        if not build_from_local_replica(self, iterator):
            return original(self, iterator=iterator, data_batch=data_batch)

    _maybe_symbolic_build._mobilenet_zoo_patch = True
    tf_trainer.TensorFlowTrainer._maybe_symbolic_build = _maybe_symbolic_build


def install_multi_worker() -> bool:
    """Installs both multi-worker workarounds where ``multi_worker_applies()``;
    returns whether they are in place. Idempotent."""
    if not multi_worker_applies():
        return False
    _reduce_scalars_over_workers()
    _build_from_local_replica_everywhere()
    return True
