"""Training machinery shared by the recipes: flags, tf.distribute, callbacks, results.

Each recipe parses its own flags plus ``add_common_flags``; this module turns
them into a ``tf.distribute`` strategy, the standard callbacks (progress bar,
TensorBoard, a checkpoint every epoch, ``--resume`` through
``AtomicBackupAndRestore``, a clear stop at the first non-finite loss, a CSV
log) and a
``results.json`` with the measured metric beside the paper's number.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from typing import Any

import keras
import tensorflow as tf

from mobilenet_zoo import weights_io
from mobilenet_zoo.task import StopOnNonFiniteLoss, build_from_local_replica

STRATEGIES = ("default", "mirrored", "multiworker", "tpu")


def add_model_flags(
    parser: argparse.ArgumentParser, image_size: int, weights: str | None = "imagenet",
    alpha: float = 1.0,
) -> None:
    """``--alpha``, ``--image-size`` and (unless ``weights`` is None) ``--weights``:
    one flag name per idea in every recipe; resolve ``--weights`` with
    ``mobilenet_zoo.presets.resolve_weights``."""
    g = parser.add_argument_group("model")
    g.add_argument("--alpha", type=float, default=alpha, help="backbone width multiplier (paper s.3.3)")
    g.add_argument("--image-size", type=int, default=image_size, help="input side in pixels")
    if weights is not None:
        g.add_argument("--weights", default=weights,
                       help="backbone init: imagenet (shipped preset, alpha 1.0), scratch, a preset "
                            "name or a weights file")


def add_common_flags(parser: argparse.ArgumentParser, out_default: str) -> None:
    """Flags every recipe has (documented in ``--help``)."""
    g = parser.add_argument_group("run")
    g.add_argument("--out", default=out_default, help="output directory (checkpoints, logs, results)")
    g.add_argument("--resume", action="store_true",
                   help="continue an interrupted run from the backup in --out (model, optimizer, epoch)")
    g.add_argument("--strategy", choices=STRATEGIES, default="default",
                   help="tf.distribute strategy; the global batch is split across replicas")
    g.add_argument("--tpu", default="", help="TPU address for --strategy tpu")
    g.add_argument("--seed", type=int, default=0, help="random seed")
    g.add_argument("--smoke", action="store_true",
                   help="a few steps on tfds.testing.mock_data to check the plumbing")
    g.add_argument("--verbose", type=int, default=1, choices=(0, 1, 2),
                   help="Keras verbosity: 1 progress bar, 2 one line per epoch")


def _patch_keras_multi_worker_reduce() -> None:
    """Keras 3.15's TF trainer reduces each step's logs across workers with
    ``strategy.reduce("MEAN", v, axis=0)``, which fails on the scalar losses and
    metrics ("Invalid reduction dimension 0 for input with 0 dimensions"): no
    multi-worker ``fit`` can run. Scalars are reduced with ``axis=None`` (the
    mean over replicas, what Keras means); everything else is left to Keras."""
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
    _patch_keras_multi_worker_build()


def _patch_keras_multi_worker_build() -> None:
    """``task.build_from_local_replica`` for every Keras model (``Task`` models carry
    it themselves): the distillation recipes' plain models and ``Distiller`` too."""
    from keras.src.backend.tensorflow import trainer as tf_trainer

    original = tf_trainer.TensorFlowTrainer._maybe_symbolic_build
    if getattr(original, "_mobilenet_zoo_patch", False):
        return

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        if not build_from_local_replica(self, iterator):
            return original(self, iterator=iterator, data_batch=data_batch)

    _maybe_symbolic_build._mobilenet_zoo_patch = True
    tf_trainer.TensorFlowTrainer._maybe_symbolic_build = _maybe_symbolic_build


def get_strategy(name: str, tpu: str = "") -> tf.distribute.Strategy:
    """``default`` | ``mirrored`` (all local devices) | ``multiworker`` (TF_CONFIG) | ``tpu``."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        # A dead peer makes collectives fail after this many seconds instead of
        # hanging forever (MOBILENET_ZOO_COLLECTIVE_TIMEOUT, default 600).
        timeout = float(os.environ.get("MOBILENET_ZOO_COLLECTIVE_TIMEOUT", "600"))
        options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=timeout)
        _patch_keras_multi_worker_reduce()
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    raise ValueError(f"`strategy` must be one of {STRATEGIES}, got {name!r}.")


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """``BackupAndRestore`` whose backups survive a kill at any instant.

    Each epoch's backup (weights with the optimizer state, and the epoch
    counter) is written to temporary files, fsynced, then renamed into place
    after the previous backup is moved to ``prev``: at every instant the folder
    holds at least one complete, consistent backup. ``--resume`` loads the newest
    complete one (``latest``, else ``prev``) and says which; a truncated or
    garbage file is skipped with a message, never a crash.
    """

    def __init__(self, backup_dir: str, verbose: bool = True) -> None:
        super().__init__(backup_dir, save_freq="epoch", delete_checkpoint=False)
        self.verbose = verbose
        self.resumed_from: str | None = None

    def _pair(self, tag: str) -> tuple[str, str]:
        return (os.path.join(self.backup_dir, f"{tag}.weights.h5"),
                os.path.join(self.backup_dir, f"{tag}_training_metadata.json"))

    def _save_model(self):
        os.makedirs(self.backup_dir, exist_ok=True)
        tmp_w, tmp_m = self._pair("tmp")
        self.model.save_weights(tmp_w, overwrite=True)
        # The metadata names its weights file by checksum: a kill between the renames
        # below can leave a weights file beside another epoch's metadata, and such a
        # pair must not load (it would resume at the wrong epoch).
        with open(tmp_m, "w") as f:
            json.dump({"epoch": self._current_epoch, "batch": self._last_batch_seen,
                       "weights_sha256": _sha256(tmp_w)}, f)
        for path in (tmp_w, tmp_m):
            with open(path, "rb") as f:
                os.fsync(f.fileno())
        for src, dst in zip(self._pair("latest"), self._pair("prev")):
            if os.path.exists(src):
                os.replace(src, dst)
        for src, dst in zip((tmp_w, tmp_m), self._pair("latest")):
            os.replace(src, dst)

    def _try_load(self, tag: str) -> int | None:
        weights, meta = self._pair(tag)
        if not (os.path.isfile(weights) and os.path.isfile(meta)):
            return None
        try:
            with open(meta) as f:
                info = json.load(f)
            epoch = int(info["epoch"])
            if info.get("weights_sha256") not in (None, _sha256(weights)):
                raise ValueError("its metadata belongs to another epoch's weights (killed between renames)")
            if self.model.optimizer is not None and not self.model.optimizer.built:
                self.model.optimizer.build(self.model.trainable_variables)
            self.model.load_weights(weights)
        except Exception as err:  # truncated / garbage: try the older backup
            print(f"resume: backup {weights} is unreadable ({type(err).__name__}: {err}); "
                  "trying the previous one", flush=True)
            return None
        return epoch

    def on_train_begin(self, logs=None):
        for tag in ("latest", "prev"):
            epoch = self._try_load(tag)
            if epoch is not None:
                self.model._initial_epoch = epoch
                self.resumed_from = os.path.join(self.backup_dir, tag)
                print(f"resume: continuing after epoch {epoch} from {self.resumed_from}", flush=True)
                return
        if self.verbose:
            print(f"resume: no complete backup in {self.backup_dir}; starting from epoch 1",
                  flush=True)

    def on_train_end(self, logs=None):  # keep the backups (resume after a finished run is a no-op)
        pass


def _sha256(path: str) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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


def standard_callbacks(out_dir: str, resume: bool) -> list:
    """TensorBoard, per-epoch checkpoint, atomic backups (resume), non-finite loss stop, CSV log.

    Without ``resume`` an old backup in ``out_dir`` is removed so the run starts
    fresh; with it, ``fit`` continues from the last completed epoch (model,
    optimizer state, epoch and step counter) of the newest complete backup
    (``AtomicBackupAndRestore``), and says which; with nothing to resume it
    says so and starts from epoch 1. Backups are per epoch on purpose:
    Keras restores a mid-epoch backup's weights but replays that epoch from its
    start, training its first steps twice. Shorten epochs with
    ``steps_per_epoch`` on large datasets instead.
    """
    backup = os.path.join(out_dir, "backup")
    if not resume and os.path.isdir(backup):
        shutil.rmtree(backup)
    os.makedirs(os.path.join(out_dir, "checkpoints"), exist_ok=True)
    return [
        AtomicBackupAndRestore(backup, verbose=resume),
        keras.callbacks.ModelCheckpoint(
            os.path.join(out_dir, "checkpoints", "epoch_{epoch:03d}.weights.h5"),
            save_weights_only=True,
        ),
        keras.callbacks.TensorBoard(os.path.join(out_dir, "tensorboard"), write_graph=False),
        keras.callbacks.CSVLogger(os.path.join(out_dir, "log.csv"), append=resume),
        StopOnNonFiniteLoss(),
    ]


def write_results(out_dir: str, results: dict[str, Any]) -> str:
    """Writes ``results.json`` (with a timestamp) and returns its path."""
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "results.json")
    payload = dict(results, written_at=time.strftime("%Y-%m-%dT%H:%M:%S"))
    text = json.dumps(payload, indent=2, default=lambda o: o.item() if hasattr(o, "item") else str(o))
    weights_io.atomic_write(path, lambda tmp: open(tmp, "w").write(text))
    return path


def save_model(model: keras.Model, path: str) -> str:
    """``model.save(path)`` written to a temporary file and renamed: a kill during the
    save leaves the previous file (or none), never a truncated one."""
    weights_io.atomic_write(path, model.save)
    return path


# ----------------------------------------------------------------------------
# Flags mirrored from one config object
# ----------------------------------------------------------------------------
def add_config_flags(parser: argparse.ArgumentParser, config, exclude: tuple[str, ...] = ()) -> None:
    """One ``--flag`` per dataclass field (but ``exclude``), its default the field's,
    its help the field's ``metadata["help"]`` (which says where the default comes from)."""
    import dataclasses

    g = parser.add_argument_group(f"hyperparameters ({type(config).__name__})")
    for f in dataclasses.fields(config):
        if f.name in exclude:
            continue
        default = getattr(config, f.name)
        flag = "--" + f.name.replace("_", "-")
        helptext = f"{f.metadata.get('help', '')} (default: {default})"
        if isinstance(default, bool):
            g.add_argument(flag, type=lambda s: s.lower() in ("1", "true", "yes"), default=default,
                           help=helptext, metavar="BOOL")
        elif "choices" in f.metadata:
            g.add_argument(flag, type=type(default), default=default, choices=f.metadata["choices"],
                           help=helptext)
        else:
            kind = type(default) if default is not None else str
            g.add_argument(flag, type=kind, default=default, help=helptext)


def config_from_args(config_cls, args: argparse.Namespace):
    """The config dataclass filled from parsed flags."""
    import dataclasses

    return config_cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(config_cls)})


class Interrupted(RuntimeError):
    """Raised by ``RaiseAtStep`` to simulate a killed run."""


class RaiseAtStep(keras.callbacks.Callback):
    """Raises ``Interrupted`` after ``step`` training batches (interruption tests)."""

    def __init__(self, step: int) -> None:
        super().__init__()
        self.step = step
        self.seen = 0

    def on_train_batch_end(self, batch, logs=None):
        self.seen += 1
        if self.seen >= self.step:
            raise Interrupted(f"interrupted after {self.seen} steps")
