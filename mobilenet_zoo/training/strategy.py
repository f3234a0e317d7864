"""The tf.distribute strategy of a run, and which worker writes.

``get_strategy`` turns the ``--strategy`` name into a strategy (installing the
multi-worker workarounds of ``mobilenet_zoo.compat`` first); under a multi-worker
strategy only the chief writes to the output folder (``output_dir``).
"""

from __future__ import annotations

import os

import keras

from mobilenet_zoo import compat
from mobilenet_zoo.tensorflow_support import import_tensorflow
from mobilenet_zoo.training.flags import STRATEGIES

tf = import_tensorflow("tf.distribute strategies")


def get_strategy(name: str, tpu: str = "") -> tf.distribute.Strategy:
    """``default`` | ``mirrored`` (all local devices) | ``multiworker`` (TF_CONFIG) | ``tpu``.

    Only ``default`` exists off the TensorFlow backend: tf.distribute replicates
    TensorFlow variables only (Keras 3 distributes JAX with ``keras.distribution``).
    """
    if name != "default" and keras.backend.backend() != "tensorflow":
        raise ValueError(
            f"--strategy {name} is tf.distribute, which needs the TensorFlow backend; this run "
            f"is on {keras.backend.backend()!r}. Use KERAS_BACKEND=tensorflow, or --strategy "
            "default (one device; on JAX, keras.distribution.DataParallel spreads it)."
        )
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        # A dead peer makes collectives fail after this many seconds instead of
        # hanging forever (MOBILENET_ZOO_COLLECTIVE_TIMEOUT, default 600).
        timeout = float(os.environ.get("MOBILENET_ZOO_COLLECTIVE_TIMEOUT", "600"))
        options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=timeout)
        compat.install_multi_worker()  # Keras 3 cannot fit multi-worker without it
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    raise ValueError(f"`strategy` must be one of {STRATEGIES}, got {name!r}.")


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True unless this process is a non-chief worker of a multi-worker strategy."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


def output_dir(out_dir: str, strategy: tf.distribute.Strategy) -> str:
    """``out_dir`` for the chief; a private temporary folder for other workers.

    Under ``MultiWorkerMirroredStrategy`` every worker runs the same program and
    writes checkpoints, backups and results: only the chief's go to ``--out``
    (TF's multi-worker guide: workers write to temporary directories).
    """
    if is_chief(strategy):
        return out_dir
    import tempfile

    resolver = strategy.cluster_resolver
    return tempfile.mkdtemp(prefix=f"mobilenet_zoo_{resolver.task_type}{resolver.task_id}_")
