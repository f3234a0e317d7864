"""Classification training shared by the ImageNet and Stanford Dogs recipes.

``ClassificationConfig`` holds every hyperparameter with the paper's (or
TF-slim's) value as default and says where it comes from; the recipes expose it
as flags (``training.add_config_flags``). ``run`` builds the model inside the
tf.distribute strategy, trains with the standard callbacks, evaluates top-1 /
top-5 and writes ``results.json`` beside the paper's number.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from typing import Any

import keras
import tensorflow as tf

from mobilenet_zoo import presets, training
from mobilenet_zoo.backbone import MobileNetBackbone
from mobilenet_zoo.classification.classifier import MobileNetClassifier
from mobilenet_zoo.classification.preprocessor import ImageClassifierPreprocessor
from mobilenet_zoo.paper import PAPER_TABLES

IMAGENET_PRESET = presets.IMAGENET


def _f(default, help_text, **meta):
    return field(default=default, metadata={"help": help_text, **meta})


@dataclass
class ClassificationConfig:
    """Hyperparameters; each default cites its source."""

    alpha: float = _f(1.0, "width multiplier (paper s.3.3)")
    image_size: int = _f(224, "input side; rho = image_size / 224 (paper s.3.4)")
    variant: str = _f("separable", "separable | full (Table 4) | shallow (Table 5)",
                      choices=("separable", "full", "shallow"))
    weights: str = _f("scratch", "scratch | imagenet (shipped preset) | a preset name | path to weights")
    batch_size: int = _f(96, "global batch size (our choice; the paper does not give it)")
    epochs: int = _f(100, "training epochs (our choice)")
    steps_per_epoch: int = _f(0, "0 = one pass over the training split")
    learning_rate: float = _f(0.045, "initial RMSprop learning rate (Inception-family RMSprop setup)")
    lr_decay: float = _f(0.94, "learning-rate factor per decay (TF-slim train_image_classifier)")
    epochs_per_decay: float = _f(2.0, "epochs between decays (TF-slim train_image_classifier)")
    rmsprop_decay: float = _f(0.9, "RMSprop rho (TF-slim default)")
    momentum: float = _f(0.9, "RMSprop momentum (TF-slim default)")
    epsilon: float = _f(1.0, "RMSprop epsilon (TF-slim default)")
    weight_decay: float = _f(4e-5, "L2 on conv kernels, none on depthwise or BN (paper s.3.1, TF-slim)")
    bn_momentum: float = _f(0.9997, "BatchNorm decay (TF-slim)")
    dropout: float = _f(1e-3, "dropout before the logits (keras.applications; slim keeps 0.999)")
    label_smoothing: float = _f(0.0, "none: the paper trains without label smoothing (s.4)")
    augment: bool = _f(True, "little augmentation: random crop + flip only (paper s.4)")
    central_fraction: float = _f(0.875, "evaluation central crop (Inception / TF-slim eval); 1.0 = none")


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
) -> dict[str, Any]:
    """Trains and evaluates; returns (and writes) the results.

    Under a multi-worker strategy only the chief writes to ``out_dir``; the other
    workers write to temporary folders (``training.output_dir``).
    """
    out_dir = training.output_dir(out_dir, strategy)
    steps = config.steps_per_epoch or max(1, (num_train_examples or config.batch_size) // config.batch_size)
    with strategy.scope():
        model = build(config, num_classes)
        compile_model(model, config, steps)
    # The model's own preprocessor: its image size and augmentation, nothing to keep in sync.
    train = one_hot(model.preprocessor.pipeline(train_raw, config.batch_size, training=True),
                    num_classes).repeat()
    evaluation = one_hot(model.preprocessor.pipeline(eval_raw, config.batch_size), num_classes)
    callbacks = training.standard_callbacks(out_dir, resume) + list(extra_callbacks or [])
    start = time.time()
    history = model.fit(train, epochs=config.epochs, steps_per_epoch=steps, callbacks=callbacks,
                        verbose=verbose)
    seconds = time.time() - start
    scores = model.evaluate(evaluation, return_dict=True, verbose=0)
    training.save_model(model, os.path.join(out_dir, "model.keras"))
    results = {
        "data": data_description,
        "config": dataclasses.asdict(config),
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
