"""Checkpoints and resumable backups of a training run.

``AtomicBackupAndRestore`` (``--resume``: model, optimizer, epoch, history and
dropout seeds, surviving a kill at any instant), ``RetainedCheckpoint`` (the
last and best epochs' weights, ``--keep-checkpoints``), ``resume_epoch`` /
``skip_done_epochs`` (a resumed run sees the batches an uninterrupted one would),
and the ``RaiseAtStep`` callback the interruption tests kill a run with.
"""

from __future__ import annotations

import json
import os
from typing import Any

import keras
import numpy as np

from mobilenet_zoo import weights_io
from mobilenet_zoo.tensorflow_support import import_tensorflow
from mobilenet_zoo.training.flags import KEEP_CHECKPOINTS

tf = import_tensorflow("recipe checkpoints")


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
