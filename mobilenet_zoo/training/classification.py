"""Classification training shared by the ImageNet and Stanford Dogs recipes.

``ClassificationConfig`` holds every hyperparameter with the paper's (or
TF-slim's) value as default and says where it comes from; the recipes expose it
as flags (``flags.add_config_flags``). ``run`` builds the model inside the
tf.distribute strategy, trains with the standard callbacks, evaluates top-1 /
top-5 and writes ``results.json`` beside the paper's number.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any

import keras

from mobilenet_zoo import presets
from mobilenet_zoo.backbone import MobileNetBackbone
from mobilenet_zoo.classification.classifier import MobileNetClassifier
from mobilenet_zoo.classification.preprocessor import ImageClassifierPreprocessor
from mobilenet_zoo.paper import PAPER_TABLES
from mobilenet_zoo.tensorflow_support import import_tensorflow
from mobilenet_zoo.training import run as training
from mobilenet_zoo.training.config import ClassificationConfig

tf = import_tensorflow("the classification trainer (tf.data)")

IMAGENET_PRESET = presets.IMAGENET


def build(config: ClassificationConfig, num_classes: int) -> MobileNetClassifier:
    init = presets.resolve_weights(config.weights)
    backbone = MobileNetBackbone(
        alpha=config.alpha, input_shape=(config.image_size, config.image_size, 3),
        variant=config.variant, bn_momentum=config.bn_momentum,
        weight_decay=config.weight_decay, weights=init,
    )
    return MobileNetClassifier(backbone, num_classes, dropout=config.dropout,
                               include_preprocessing=True,
                               preprocessor=ImageClassifierPreprocessor(
                                   config.image_size, config.augment, config.central_fraction))


def compile_model(model, config: ClassificationConfig, steps_per_epoch: int) -> None:
    decay_steps = max(1, int(config.epochs_per_decay * steps_per_epoch))
    schedule = keras.optimizers.schedules.ExponentialDecay(
        config.learning_rate, decay_steps, config.lr_decay, staircase=True)
    model.compile(
        keras.optimizers.RMSprop(schedule, rho=config.rmsprop_decay, momentum=config.momentum,
                                 epsilon=config.epsilon),
        keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
        metrics=[keras.metrics.CategoricalAccuracy(name="top1"),
                 keras.metrics.TopKCategoricalAccuracy(5, name="top5")],
    )


def one_hot(ds: tf.data.Dataset, num_classes: int) -> tf.data.Dataset:
    return ds.map(lambda x, y: (x, tf.one_hot(tf.cast(y, tf.int32), num_classes)),
                  num_parallel_calls=tf.data.AUTOTUNE)


def run(
    config: ClassificationConfig,
    train_raw: tf.data.Dataset,
    eval_raw: tf.data.Dataset,
    num_classes: int,
    out_dir: str,
    strategy: tf.distribute.Strategy,
    resume: bool = False,
    paper: dict[str, Any] | None = None,
    num_train_examples: int | None = None,
    extra_callbacks: list | None = None,
    verbose: int = 1,
    data_description: str = "",
    data_fingerprint: str = "",
    keep_checkpoints: str = "last-best",
    extra_identity: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Trains and evaluates; returns (and writes) the results.

    Under a multi-worker strategy only the chief writes to ``out_dir``; the other
    workers write to temporary folders (``training.output_dir``).

    ``out_dir`` records the run's identity (``run_identity``: ``config``, classes,
    training-set size, ``data_fingerprint`` or else ``data_description``, and
    ``extra_identity`` such as the seed); ``resume`` continues only a run of the
    same identity (``training.RunMismatchError`` otherwise, naming each
    difference). A resumed run skips the batches its finished epochs saw, so with
    the same seeds it trains on the same batches as an uninterrupted run, and its
    history covers every epoch.
    """
    out_dir = training.output_dir(out_dir, strategy)
    steps = config.steps_per_epoch or max(1, (num_train_examples or config.batch_size) // config.batch_size)
    identity = run_identity(config, num_classes, num_train_examples,
                            data_fingerprint or data_description, extra_identity)
    # Checked before anything is built or changed: a refused resume leaves out_dir as it is.
    training.check_run_identity(out_dir, identity, resume)
    with strategy.scope():
        model = build(config, num_classes)
        compile_model(model, config, steps)
    # The model's own preprocessor: its image size and augmentation, nothing to keep in sync.
    train = one_hot(model.preprocessor.pipeline(train_raw, config.batch_size, training=True),
                    num_classes).repeat()
    train = training.skip_done_epochs(train, out_dir, resume, steps)
    evaluation = one_hot(model.preprocessor.pipeline(eval_raw, config.batch_size), num_classes)
    callbacks = training.standard_callbacks(out_dir, resume, keep_checkpoints) + list(extra_callbacks or [])
    start = time.time()
    history = model.fit(train, epochs=config.epochs, steps_per_epoch=steps, callbacks=callbacks,
                        verbose=verbose)
    seconds = time.time() - start
    scores = model.evaluate(evaluation, return_dict=True, verbose=0)
    training.save_model(model, os.path.join(out_dir, "model.keras"))
    results = {
        "data": data_description.removeprefix("data: "),  # the printed line without its label
        "config": dataclasses.asdict(config),
        "identity": identity,
        "measured": {"top1": float(scores["top1"]), "top5": float(scores["top5"]),
                     "loss": float(scores["loss"])},
        "paper": paper or {},
        "train_seconds": round(seconds, 1),
        "optimizer_iterations": int(model.optimizer.iterations.numpy()),
        "history": {k: [float(v) for v in vs] for k, vs in history.history.items()},
        "replicas": strategy.num_replicas_in_sync,
    }
    results["results_json"] = training.write_results(out_dir, results)
    return results


def run_in(context: training.RunContext, config: ClassificationConfig, train_raw: tf.data.Dataset,
           eval_raw: tf.data.Dataset, num_classes: int, out_dir: str, paper: dict[str, Any],
           num_train_examples: int | None, data_description: str,
           extra_callbacks: list | None = None) -> dict[str, Any]:
    """``run`` in a recipe's ``RunContext``: its strategy, ``--resume``, verbosity and
    ``--keep-checkpoints``, and its seed in the run's identity."""
    options = context.options
    return run(config, train_raw, eval_raw, num_classes, out_dir, context.strategy, options.resume, paper,
               num_train_examples, extra_callbacks, options.verbose, data_description,
               keep_checkpoints=options.keep_checkpoints, extra_identity={"seed": options.seed})


def run_identity(config: ClassificationConfig, num_classes: int, num_train_examples: int | None,
                 data: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """What makes two training runs the same run (``training.check_run_identity``): all of
    ``config`` but ``epochs`` (a resume with a larger ``epochs`` extends the same run, as
    Keras' ``initial_epoch`` does; the learning rate decays per step, not per run length)."""
    config = {k: v for k, v in dataclasses.asdict(config).items() if k != "epochs"}
    return {"config": config, "num_classes": num_classes,
            "num_train_examples": num_train_examples, "data": data, **(extra or {})}


def smoke_epochs(config: ClassificationConfig, defaults: ClassificationConfig) -> int:
    """``--smoke`` runs 1 epoch unless ``--epochs`` was given explicitly."""
    return 1 if config.epochs == defaults.epochs else config.epochs


def paper_rows(table: str) -> list[dict[str, Any]]:
    """The MobileNet rows of paper Tables 4-7, 9 (and 8's MobileNet row): config + top-1."""
    if table == "8":
        rows = [PAPER_TABLES["6"]["rows"][0]]
    elif table in PAPER_TABLES:
        rows = PAPER_TABLES[table]["rows"]
    else:
        raise ValueError(f"`--table` must be one of 4, 5, 6, 7, 8, 9; got {table!r}.")
    return [{"label": r["label"], "alpha": r["alpha"], "image_size": r["size"],
             "variant": r["variant"], "paper_top1": r["top1"]} for r in rows]
