"""Training machinery shared by the recipes: flags, tf.distribute, callbacks, results.

Each recipe parses its own flags plus ``add_common_flags``; this module turns
them into a ``tf.distribute`` strategy, the standard callbacks (progress bar,
TensorBoard, the last and best epochs' checkpoints (``--keep-checkpoints``),
``--resume`` through ``AtomicBackupAndRestore`` for a run of the same identity
(configuration and data, ``check_run_identity``), a clear stop at the first
non-finite loss, a CSV log) and a
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
import numpy as np
import tensorflow as tf

from mobilenet_zoo import weights_io
from mobilenet_zoo.flags import (  # noqa: F401  re-exported: the recipes' flags, TF-free
    KEEP_CHECKPOINTS,
    RUN_CONTROL_FLAGS,
    SMOKE_SUFFIX,
    STRATEGIES,
    _DefaultOut,
    _SmokeAction,
    add_common_flags,
    add_config_flags,
    add_model_flags,
    config_from_args,
)
from mobilenet_zoo.task import StopOnNonFiniteLoss, build_from_local_replica


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

    The metadata also carries the history of every finished epoch and the state
    of the model's random seed generators (dropout masks; Keras keeps them out of
    ``save_weights``): after a resume, ``fit``'s ``History`` (and so
    ``results.json``) covers all epochs, not only those after the resume, and the
    dropout masks continue as in an uninterrupted run.
    """

    def __init__(self, backup_dir: str, verbose: bool = True) -> None:
        super().__init__(backup_dir, save_freq="epoch", delete_checkpoint=False)
        self.verbose = verbose
        self.resumed_from: str | None = None
        self.resumed_epoch = 0
        self._epochs_history: dict[str, list[float]] = {}

    def _pair(self, tag: str) -> tuple[str, str]:
        return _backup_pair(self.backup_dir, tag)

    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            self._epochs_history.setdefault(key, []).append(_to_float(value))
        super().on_epoch_end(epoch, logs)

    def _save_model(self):
        os.makedirs(self.backup_dir, exist_ok=True)
        tmp_w, tmp_m = self._pair("tmp")
        self.model.save_weights(tmp_w, overwrite=True)
        # The metadata names its weights file by checksum: a kill between the renames
        # below can leave a weights file beside another epoch's metadata, and such a
        # pair must not load (it would resume at the wrong epoch).
        with open(tmp_m, "w") as f:
            json.dump({"epoch": self._current_epoch, "batch": self._last_batch_seen,
                       "weights_sha256": _sha256(tmp_w), "history": self._epochs_history,
                       "seed_states": _seed_states(self.model)}, f)
        for path in (tmp_w, tmp_m):
            with open(path, "rb") as f:
                os.fsync(f.fileno())
        for src, dst in zip(self._pair("latest"), self._pair("prev")):
            if os.path.exists(src):
                os.replace(src, dst)
        for src, dst in zip((tmp_w, tmp_m), self._pair("latest")):
            os.replace(src, dst)

    def _try_load(self, tag: str) -> dict | None:
        weights, _ = self._pair(tag)
        try:
            info = _read_backup_metadata(self.backup_dir, tag)
            if info is None:
                return None
            if self.model.optimizer is not None and not self.model.optimizer.built:
                self.model.optimizer.build(self.model.trainable_variables)
            self.model.load_weights(weights)
            _restore_seed_states(self.model, info.get("seed_states") or [])
        except Exception as err:  # truncated / garbage: try the older backup
            print(f"resume: backup {weights} is unreadable ({type(err).__name__}: {err}); "
                  "trying the previous one", flush=True)
            return None
        return info

    def on_train_begin(self, logs=None):
        for tag in ("latest", "prev"):
            info = self._try_load(tag)
            if info is not None:
                epoch = int(info["epoch"])
                self.model._initial_epoch = epoch
                self.resumed_from = os.path.join(self.backup_dir, tag)
                self.resumed_epoch = epoch
                history = info.get("history")
                if history is None or any(len(v) != epoch for v in history.values()):
                    print("resume: this backup has no complete history of its first "
                          f"{epoch} epochs (written by an older version); the returned history "
                          "starts after them", flush=True)
                    history = {}
                self._epochs_history = {k: list(v) for k, v in history.items()}
                print(f"resume: continuing after epoch {epoch} from {self.resumed_from}", flush=True)
                return
        if self.verbose:
            print(f"resume: no complete backup in {self.backup_dir}; starting from epoch 1",
                  flush=True)

    def on_train_end(self, logs=None):  # keep the backups (resume after a finished run is a no-op)
        history = getattr(self.model, "history", None)
        if self.resumed_epoch and isinstance(history, keras.callbacks.History):
            # fit's History saw only the epochs after the resume: put the earlier ones first.
            done = self.resumed_epoch
            for key, values in self._epochs_history.items():
                history.history[key] = list(values[:done]) + list(history.history.get(key, []))
            history.epoch = list(range(done)) + list(getattr(history, "epoch", []))


def _to_float(value) -> float:
    return float(keras.ops.convert_to_numpy(value))


def _backup_pair(backup_dir: str, tag: str) -> tuple[str, str]:
    return (os.path.join(backup_dir, f"{tag}.weights.h5"),
            os.path.join(backup_dir, f"{tag}_training_metadata.json"))


def _read_backup_metadata(backup_dir: str, tag: str) -> dict | None:
    """The metadata of backup ``tag`` if both files exist (else None); ValueError when
    the metadata is unreadable or belongs to other weights."""
    weights, meta = _backup_pair(backup_dir, tag)
    if not (os.path.isfile(weights) and os.path.isfile(meta)):
        return None
    with open(meta) as f:
        info = json.load(f)
    int(info["epoch"])
    if info.get("weights_sha256") not in (None, _sha256(weights)):
        raise ValueError("its metadata belongs to another epoch's weights (killed between renames)")
    return info


def resume_epoch(out_dir: str) -> int:
    """The epoch ``--resume`` will continue after (0: none), read from the newest
    complete backup in ``out_dir`` by the same rules as ``AtomicBackupAndRestore``
    (a backup that then fails to load makes ``fit`` fall back and say so)."""
    backup = os.path.join(out_dir, "backup")
    for tag in ("latest", "prev"):
        try:
            info = _read_backup_metadata(backup, tag)
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if info is not None:
            return int(info["epoch"])
    return 0


def skip_done_epochs(dataset: tf.data.Dataset, out_dir: str, resume: bool,
                     steps_per_epoch: int) -> tf.data.Dataset:
    """``dataset`` (a repeated training stream) without the batches of the epochs a
    resumed run already trained on: with the same seeds, a resumed run then sees the
    batches an uninterrupted run would (``tf.data.Dataset.skip`` still produces the
    skipped elements, so random shuffles and augmentations advance as they would have)."""
    done = resume_epoch(out_dir) if resume else 0
    return dataset.skip(done * steps_per_epoch) if done else dataset


def _seed_variables(model: keras.Model) -> list:
    # In model.variables order (same architecture, same order); their names carry a
    # process-wide counter (seed_generator_2...), so they are matched by position.
    return [v for v in model.variables if v.path.endswith("seed_generator_state")]


def _seed_states(model: keras.Model) -> list[list]:
    """The state of every ``keras.random.SeedGenerator`` the model owns (dropout)."""
    return [keras.ops.convert_to_numpy(v).tolist() for v in _seed_variables(model)]


def _restore_seed_states(model: keras.Model, states: list[list]) -> None:
    variables = _seed_variables(model)
    if len(states) != len(variables):  # another architecture or an older backup: keep fresh seeds
        return
    for v, state in zip(variables, states):
        v.assign(np.asarray(state, dtype=keras.backend.standardize_dtype(v.dtype)))


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


class RunMismatchError(ValueError):
    """``--resume`` on a folder that holds a run of another configuration or data."""


IDENTITY_FILE = "run_identity.json"


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, sort_keys=True, default=lambda o: o.item() if hasattr(o, "item")
                                 else str(o)))


def _differences(recorded: Any, current: Any, prefix: str = "") -> list[str]:
    if isinstance(recorded, dict) and isinstance(current, dict):
        out = []
        for key in sorted(set(recorded) | set(current)):
            name = f"{prefix}.{key}" if prefix else str(key)
            if key not in recorded:
                out.append(f"{name}: not recorded, now {current[key]!r}")
            elif key not in current:
                out.append(f"{name}: {recorded[key]!r} there, absent now")
            else:
                out += _differences(recorded[key], current[key], name)
        return out
    return [] if recorded == current else [f"{prefix}: {recorded!r} there, {current!r} now"]


def identity_from_args(args: argparse.Namespace, data: str = "") -> dict[str, Any]:
    """A run's identity from its flags (all but ``RUN_CONTROL_FLAGS``) and ``data``,
    a description or fingerprint of the data it trains on."""
    flags = {k: v for k, v in sorted(vars(args).items()) if k not in RUN_CONTROL_FLAGS}
    return {"flags": flags, "data": data}


def data_fingerprint(*arrays) -> str:
    """sha256 of the arrays' shapes, dtypes and bytes: two runs with equal
    fingerprints saw the same examples in the same order."""
    import hashlib

    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.shape}{array.dtype}".encode())
        digest.update(array.tobytes())
    return "sha256:" + digest.hexdigest()


def check_run_identity(out_dir: str, identity: dict[str, Any], resume: bool) -> None:
    """Records ``identity`` (configuration and data fingerprint) in ``out_dir``, or,
    with ``resume``, checks it against the recorded one.

    A resume continues only the same run: another configuration or data raises
    ``RunMismatchError`` listing each difference, and so does a folder with a
    backup but no record (written by an older version or another program: it
    cannot be verified). Nothing in ``out_dir`` is changed then. Without ``resume``
    the run starts anew and its identity replaces any earlier one.
    """
    path = os.path.join(out_dir, IDENTITY_FILE)
    current = _jsonable(identity)
    if resume:
        recorded = None
        if os.path.isfile(path):
            try:
                with open(path) as f:
                    recorded = json.load(f)
            except (OSError, ValueError) as err:
                raise RunMismatchError(
                    f"--resume: {path} is unreadable ({err}), so the run in {out_dir} cannot be "
                    "verified; nothing was changed. Drop --resume to start anew there.") from err
        elif resume_epoch(out_dir) or os.path.isfile(os.path.join(out_dir, "results.json")):
            raise RunMismatchError(
                f"--resume: {out_dir} holds a run without a record of its configuration and data "
                f"({IDENTITY_FILE}; written by an older version or another program), so it cannot be "
                "verified; nothing was changed. Drop --resume to start anew there, or choose "
                "another --out.")
        if recorded is not None:
            diffs = _differences(recorded, current)
            if diffs:
                raise RunMismatchError(
                    f"--resume: {out_dir} holds a run of another configuration or data; nothing was "
                    "changed. Differences (recorded there, given now): " + "; ".join(diffs)
                    + ". Resume with the same flags and data, choose another --out, or drop "
                    "--resume to start anew there.")
            return
    text = json.dumps(current, indent=2, sort_keys=True)
    weights_io.atomic_write(path, lambda tmp: open(tmp, "w").write(text))


def read_run_identity(out_dir: str) -> dict[str, Any] | None:
    """The identity recorded in ``out_dir`` (``check_run_identity``), or None."""
    try:
        with open(os.path.join(out_dir, IDENTITY_FILE)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


class RetainedCheckpoint(keras.callbacks.Callback):
    """Saves ``checkpoints/epoch_NNN.weights.h5`` after every epoch (atomically) and
    keeps only what ``keep`` asks for:

    * ``"last-best"``: the last epoch's and the best one's by ``val_loss`` (``loss``
      when there is no validation), as ``keras.callbacks.ModelCheckpoint``'s
      ``save_best_only`` compares them;
    * ``"last"``, ``"all"`` (every epoch, the old behaviour), ``"none"``.

    ``checkpoints/best.json`` records the best epoch and value, so a resumed run keeps
    comparing with the best before the interruption.
    """

    PATTERN = "epoch_{epoch:03d}.weights.h5"

    def __init__(self, directory: str, keep: str = "last-best") -> None:
        super().__init__()
        if keep not in KEEP_CHECKPOINTS:
            raise ValueError(f"`keep` must be one of {KEEP_CHECKPOINTS}, got {keep!r}.")
        self.directory = directory
        self.keep = keep
        self.best: dict[str, Any] | None = None
        if keep != "none":
            os.makedirs(directory, exist_ok=True)

    def _best_path(self) -> str:
        return os.path.join(self.directory, "best.json")

    def on_train_begin(self, logs=None):
        self.best = None
        if self.keep == "last-best" and getattr(self.model, "_initial_epoch", 0):  # resumed
            try:
                with open(self._best_path()) as f:
                    self.best = json.load(f)
            except (OSError, ValueError):
                self.best = None

    def on_epoch_end(self, epoch, logs=None):
        if self.keep == "none":
            return
        logs = logs or {}
        name = self.PATTERN.format(epoch=epoch + 1)
        path = os.path.join(self.directory, name)
        tmp = os.path.join(self.directory, f".tmp-{os.getpid()}.weights.h5")
        try:  # write then rename: a kill leaves the previous checkpoints, never a partial one
            self.model.save_weights(tmp, overwrite=True)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        if self.keep == "all":
            return
        keep = {name}
        if self.keep == "last-best":
            monitor = "val_loss" if "val_loss" in logs else "loss"
            value = logs.get(monitor)
            value = None if value is None else _to_float(value)
            best = self.best if self.best and self.best.get("monitor") == monitor else None
            if value is not None and np.isfinite(value) and (best is None or value < best["value"]):
                best = {"epoch": epoch + 1, "file": name, "monitor": monitor, "value": value}
                text = json.dumps(best)
                weights_io.atomic_write(self._best_path(), lambda t: open(t, "w").write(text))
            self.best = best
            if best:
                keep.add(best["file"])
        for old in os.listdir(self.directory):
            if old.startswith("epoch_") and old.endswith(".weights.h5") and old not in keep:
                os.remove(os.path.join(self.directory, old))


def standard_callbacks(out_dir: str, resume: bool, keep_checkpoints: str = "last-best",
                       identity: dict[str, Any] | None = None) -> list:
    """TensorBoard, per-epoch checkpoints, atomic backups (resume), non-finite loss stop, CSV log.

    Without ``resume`` an old backup in ``out_dir`` is removed so the run starts
    fresh; with it, ``fit`` continues from the last completed epoch (model,
    optimizer state, epoch and step counter, history, dropout seeds) of the
    newest complete backup (``AtomicBackupAndRestore``), and says which; with
    nothing to resume it says so and starts from epoch 1. Backups are per epoch on purpose:
    Keras restores a mid-epoch backup's weights but replays that epoch from its
    start, training its first steps twice. Shorten epochs with
    ``steps_per_epoch`` on large datasets instead.

    ``identity`` (configuration and data fingerprint, e.g. ``identity_from_args``)
    is recorded in ``out_dir``; with ``resume`` a run of another identity is
    refused before anything is changed (``check_run_identity``). ``keep_checkpoints``
    says which per-epoch checkpoints stay in ``out_dir/checkpoints``
    (``RetainedCheckpoint``); the default keeps the last and the best.
    """
    if identity is not None:
        check_run_identity(out_dir, identity, resume)
    backup = os.path.join(out_dir, "backup")
    if not resume and os.path.isdir(backup):
        shutil.rmtree(backup)
    return [
        AtomicBackupAndRestore(backup, verbose=resume),
        RetainedCheckpoint(os.path.join(out_dir, "checkpoints"), keep_checkpoints),
        keras.callbacks.TensorBoard(os.path.join(out_dir, "tensorboard"), write_graph=False),
        keras.callbacks.CSVLogger(os.path.join(out_dir, "log.csv"), append=resume),
        StopOnNonFiniteLoss(),
    ]


def callbacks_for(args: argparse.Namespace, data: str = "", out_dir: str | None = None) -> list:
    """``standard_callbacks`` for a recipe's parsed flags: ``--out`` (or ``out_dir``),
    ``--resume``, ``--keep-checkpoints``, and the run's identity from its other flags
    and ``data`` (``identity_from_args``). A refused ``--resume`` exits with its
    message (``SystemExit``), nothing changed."""
    try:
        return standard_callbacks(out_dir or args.out, args.resume,
                                  getattr(args, "keep_checkpoints", "last-best"),
                                  identity_from_args(args, data))
    except RunMismatchError as err:
        raise SystemExit(f"error: {err}") from err


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
