"""One run of a recipe: its context (strategy, output folder, seed, chief-only
writes), the data it got, the training loop, and the finish step.

    run = RunContext.start(flags.run_options(args))   # the strategy first
    choice = ...                                       # a DataChoice
    run.set_seed()
    with run.scope():
        model = ...; model.compile(...)
    fitted = fit(run, model, choice, plan)             # callbacks, --resume, timing
    return finish(run, model, fitted.val, report, {...}, flags.export_options(args))

``finish`` evaluates, saves ``model.keras``, draws a picture of a validation
batch, exports and checks ``model.tflite`` and writes ``results.json``; what is
measured and drawn is the task's ``TaskReport`` (``training.detection.CocoReport``,
``segmentation.recipe.MaskReport``).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import keras
import numpy as np

from mobilenet_zoo import weights_io
from mobilenet_zoo.data.tfds_utils import default_data_dir, tfds_prepared
from mobilenet_zoo.export import TFLiteRunner, to_tflite
from mobilenet_zoo.task import StopOnNonFiniteLoss
from mobilenet_zoo.tensorflow_support import import_tensorflow
from mobilenet_zoo.training.checkpoints import (  # noqa: F401  re-exported for the recipes
    AtomicBackupAndRestore,
    Interrupted,
    RaiseAtStep,
    RetainedCheckpoint,
    resume_epoch,
    skip_done_epochs,
)
from mobilenet_zoo.training.flags import (  # noqa: F401  re-exported for the recipes
    KEEP_CHECKPOINTS,
    RUN_CONTROL_FLAGS,
    SMOKE_SUFFIX,
    STRATEGIES,
    ExportOptions,
    RunOptions,
    add_common_flags,
    add_config_flags,
    add_model_flags,
    config_from_args,
    run_options,
)
from mobilenet_zoo.training.identity import (  # noqa: F401  re-exported for the recipes
    IDENTITY_FILE,
    EarlierRunError,
    RunMismatchError,
    check_run_identity,
    claim_out,
    data_fingerprint,
    identity_of,
    read_run_identity,
)
from mobilenet_zoo.training.schedule import Plan
from mobilenet_zoo.training.strategy import get_strategy, is_chief, output_dir

tf = import_tensorflow("recipe runs (tf.data, tf.distribute)")


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

    ``identity`` (configuration and data fingerprint, e.g. ``identity_of``)
    is recorded in ``out_dir``; with ``resume`` a run of another identity is
    refused before anything is changed (``check_run_identity``). ``keep_checkpoints``
    says which per-epoch checkpoints stay in ``out_dir/checkpoints``
    (``RetainedCheckpoint``); the default keeps the last and the best.
    """
    backup = os.path.join(out_dir, "backup")
    if identity is not None and resume:
        check_run_identity(out_dir, identity, resume)  # refused before anything changes
    if not resume and os.path.isdir(backup):
        shutil.rmtree(backup)  # first: a kill here never leaves a new identity beside an old backup
    if identity is not None and not resume:
        check_run_identity(out_dir, identity, resume)
    return [
        AtomicBackupAndRestore(backup, verbose=resume),
        RetainedCheckpoint(os.path.join(out_dir, "checkpoints"), keep_checkpoints),
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


@dataclass
class DataChoice:
    """The data a recipe got: ``kind`` (``"full"``, ``"embedded"`` or ``"mock"`` for
    ``--smoke``; it picks the ``Schedule``), a ``description`` for people (printed
    as ``data: ...`` and kept in ``results.json``), and the train / eval sources."""

    kind: str
    description: str
    train: Any
    val: Any

    @property
    def line(self) -> str:
        return f"data: {self.description}"


def tfds_data(name: str, data_dir: str | None, smoke: bool, load: Callable[[str, str, bool], Any],
              splits: tuple[str, str | None] = ("train", "test"), mock_examples: int = 16) -> DataChoice:
    """TFDS ``name``'s two ``splits`` (the second may be None) through
    ``load(split, data_dir, check)``: ``tfds.testing.mock_data`` with ``smoke`` (kind
    ``mock``), else prepared under ``data_dir`` (default: ``$TFDS_DATA_DIR``), or a
    ``SystemExit`` saying how to prepare it, before anything is run."""

    data_dir = data_dir or default_data_dir()
    if smoke:
        import tensorflow_datasets as tfds

        with tfds.testing.mock_data(num_examples=mock_examples):
            train, val = (load(s, data_dir, False) if s else None for s in splits)
        return DataChoice("mock", f"tfds.testing.mock_data {name} (--smoke)", train, val)
    if not tfds_prepared(name, data_dir):
        raise SystemExit(f"error: TFDS {name} is not prepared under {data_dir}; run `tfds build {name} "
                         f"--data_dir {data_dir}` with network access. Nothing was run.")
    train, val = (load(s, data_dir, True) if s else None for s in splits)
    return DataChoice("full", f"TFDS {name} from {data_dir}", train, val)


def refused_run(err: Exception) -> SystemExit:
    """A ``SystemExit`` for a refused run: the one-line ``error: ...`` on stderr, no
    traceback, exit status 2 (a usage error: nothing was run or changed)."""
    message = f"error: {err}"
    print(message, file=sys.stderr, flush=True)
    exit_ = SystemExit(message)  # str(exit_) is the message, for callers that catch it
    exit_.code = 2
    return exit_


@dataclass
class RunContext:
    """Strategy, output folder, seed and chief-only writes of one run.

    ``start`` creates the strategy first (multi-worker collectives must be
    configured before any TF op runs) and names the output folder: ``options.out``
    on the chief, a private temporary folder on other workers (``output_dir``), so
    everything written through ``out_dir`` is chief-only in effect. The folder is
    made by the first write (a run refused before training leaves no folder). ``flags`` is
    every flag's value: ``results.json``'s "args" and the run's identity.
    """

    options: RunOptions
    strategy: tf.distribute.Strategy
    out_dir: str

    @classmethod
    def start(cls, options: RunOptions) -> RunContext:
        """Creates the strategy, then the chief claims ``options.out`` (``claim_out``: an
        earlier run there is refused unless ``--resume`` or ``--overwrite``; ``SystemExit``
        with the message and exit status 2, before anything is written)."""
        strategy = get_strategy(options.strategy, options.tpu)
        if is_chief(strategy):  # the chief's folder: other workers write to their own
            try:
                claim_out(options.out, options.resume, options.overwrite)
            except EarlierRunError as err:
                raise refused_run(err) from None
        return cls(options, strategy, output_dir(options.out, strategy))

    @property
    def flags(self) -> dict[str, Any]:
        return self.options.flags

    @property
    def seed(self) -> int:
        return self.options.seed

    @property
    def smoke(self) -> bool:
        return self.options.smoke

    @property
    def verbose(self) -> int:
        return self.options.verbose

    @property
    def chief(self) -> bool:
        return is_chief(self.strategy)

    def set_seed(self) -> None:
        """``keras.utils.set_random_seed(seed)``: Python, NumPy and TF (and Keras) seeds."""
        keras.utils.set_random_seed(self.seed)

    def scope(self):
        return self.strategy.scope()

    def path(self, *names: str) -> str:
        return os.path.join(self.out_dir, *names)

    def callbacks(self, data: str = "", subdir: str | None = None) -> list:
        """``standard_callbacks`` in the output folder (or its ``subdir``): ``--resume``,
        ``--keep-checkpoints``, and the run's identity from its flags and ``data``. A
        refused ``--resume`` exits with its message (``SystemExit``), nothing changed."""
        folder = self.path(subdir) if subdir else self.out_dir
        os.makedirs(folder, exist_ok=True)
        try:
            return standard_callbacks(folder, self.options.resume, self.options.keep_checkpoints,
                                      identity_of(self.flags, data))
        except RunMismatchError as err:
            raise refused_run(err) from None

    def save_model(self, model: keras.Model, name: str = "model.keras") -> str:
        os.makedirs(self.out_dir, exist_ok=True)
        return save_model(model, self.path(name))

    def write_results(self, results: dict[str, Any], summary: str = "") -> dict[str, Any]:
        """Prints ``summary`` (a line for people), writes ``results.json``, prints
        ``results: PATH`` and returns ``results``."""
        if summary:
            print(summary, flush=True)
        print(f"results: {write_results(self.out_dir, results)}", flush=True)
        return results


@dataclass
class Fitted:
    """What ``fit`` returns: the history, the training time, the eval pipeline."""

    history: keras.callbacks.History
    train_seconds: float
    val: tf.data.Dataset

    @property
    def final_loss(self) -> float | None:
        losses = self.history.history.get("loss")
        return float(losses[-1]) if losses else None


def fit(run: RunContext, model: keras.Model, choice: DataChoice, plan: Plan, validate: bool = False,
        **pipeline_kwargs: Any) -> Fitted:
    """Trains ``model`` (built and compiled in ``run.scope()``) on ``choice`` with the
    model's own preprocessor pipelines, ``plan``'s batch, epochs and steps (a
    repeated training set when the steps are fixed) and ``run.callbacks()``;
    ``validate``: evaluate on the eval set after each epoch too."""
    train = model.preprocessor.pipeline(choice.train, plan.batch_size, training=True, seed=run.seed,
                                        **pipeline_kwargs)
    if plan.steps_per_epoch:
        train = train.repeat()
    val = model.preprocessor.pipeline(choice.val, plan.eval_batch)
    start = time.time()
    history = model.fit(train, validation_data=val if validate else None, epochs=plan.epochs,
                        steps_per_epoch=plan.steps_per_epoch, verbose=run.verbose,
                        callbacks=run.callbacks())
    return Fitted(history, round(time.time() - start, 1), val)


class TaskReport(Protocol):
    """What ``finish`` measures and draws for one task."""

    #: the picture's file name and its ``results.json`` key (``detections.png``, ``detections_png``).
    picture: str

    def evaluate(self, model: keras.Model, val: tf.data.Dataset) -> dict[str, Any]:
        """The measurements (``results.json`` entries); prints a summary."""

    def draw(self, model: keras.Model, batch: Any, path: str) -> str:
        """Draws the model's results on ``batch`` (images, labels) into ``path``."""

    def tflite_kwargs(self, model: keras.Model, export: ExportOptions) -> dict[str, Any]:
        """``to_tflite`` keyword arguments beside the path."""

    def check_tflite(self, model: keras.Model, lite: dict, images: np.ndarray,
                     export: ExportOptions) -> tuple[dict[str, Any], str]:
        """(``results.json``'s "tflite" entries, a line for people) from the TFLite
        outputs ``lite`` on ``images`` (one image)."""


def finish(run: RunContext, model: keras.Model, val: tf.data.Dataset, report: TaskReport,
           results: dict[str, Any], export: ExportOptions) -> dict[str, Any]:
    """The end of every detection and segmentation recipe: evaluate (``report``), save
    ``model.keras``, draw the first eval batch, export ``model.tflite`` (unless
    ``export.tflite`` is off) and check it on one image, write ``results.json``
    (``results``, the measurements, the picture, the flags, the TFLite check).
    Returns the results."""

    results = dict(results, **report.evaluate(model, val))
    run.save_model(model)
    batch = next(iter(val))
    images = np.asarray(batch[0])
    key = report.picture.replace(".", "_")
    results = dict(results, **{key: report.draw(model, batch, run.path(report.picture))}, args=run.flags)
    if export.tflite:
        path = run.path("model.tflite")
        to_tflite(model, path, **report.tflite_kwargs(model, export))
        check, line = report.check_tflite(model, TFLiteRunner(path)(images[:1]), images[:1], export)
        results["tflite"] = {"path": path, **check}
        print(f"TFLite: {path} ({os.path.getsize(path) / 1e6:.1f} MB){line}", flush=True)
    return run.write_results(results)
