"""Transfer learning: frozen pretrained backbone + new head, then fine-tune top blocks.

The recipe of the Keras transfer-learning guide, on MobileNet: train the head
with the backbone frozen (BatchNorm in inference mode), then unfreeze the
convolutions of the top ``N`` blocks at a lower learning rate. BatchNorm layers
stay frozen: their statistics come from ImageNet and a small dataset would
wreck them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
from PIL import Image

from mobilenet_zoo import presets
from mobilenet_zoo.backbone import BLOCK_SPECS, MobileNetBackbone
from mobilenet_zoo.classification.classifier import MobileNetClassifier
from mobilenet_zoo.data.seeds import with_example_seeds
from mobilenet_zoo.tensorflow_support import import_tensorflow

tf = import_tensorflow("transfer learning data (tf.data)")

IMAGENET_PRESET = presets.IMAGENET


def build_transfer_classifier(
    num_classes: int,
    image_size: int = 128,
    weights: str | None = "imagenet",
    alpha: float = 1.0,
    dropout: float = 0.2,
    bn_momentum: float = 0.99,
) -> MobileNetClassifier:
    """A classifier taking uint8 pixels, with a (pretrained) backbone and a new head.

    Args:
        num_classes: classes of the new task.
        image_size: square input side (ImageNet weights load at any size).
        weights: "imagenet" (the published weights of `alpha` at `image_size`, or 224),
            a preset name / weights file for the backbone, or None (scratch).
        alpha: width multiplier (must match ``weights``).
        dropout: dropout before the new logits.
        bn_momentum: BatchNorm momentum (lower it, e.g. 0.9, for short runs that
            train BatchNorm from scratch, so its moving statistics catch up).
    """
    backbone = MobileNetBackbone(
        alpha=alpha, input_shape=(image_size, image_size, 3), weights=weights,
        bn_momentum=bn_momentum,
    )
    return MobileNetClassifier(
        backbone, num_classes=num_classes, dropout=dropout, include_preprocessing=True
    )


# The extensions keras.utils.image_dataset_from_directory reads.
FOLDER_IMAGE_SUFFIXES = (".bmp", ".gif", ".jpeg", ".jpg", ".png")


def check_image_folder(root: str | os.PathLike) -> list[str]:
    """Checks a one-sub-folder-per-class image folder before any training starts.

    Returns the class names (sorted, as Keras labels them). Raises ValueError
    for fewer than two classes, a class folder without images, or image files
    that do not decode (all of them named): a corrupt file is found here, not
    mid-epoch.
    """
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{root} is not a directory (expected one sub-folder per class).")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    files = {c: [p for p in sorted((root / c).rglob("*")) if p.suffix.lower() in FOLDER_IMAGE_SUFFIXES]
             for c in classes}
    empty = [c for c, f in files.items() if not f]
    if empty:
        raise ValueError(f"Class folder(s) {empty} in {root} hold no images "
                         f"({', '.join(FOLDER_IMAGE_SUFFIXES)}); remove them or add images.")
    if len(classes) < 2:
        raise ValueError(f"{root} has {len(classes)} class folder(s) {classes}; a classifier needs "
                         "at least two (one sub-folder per class).")
    broken = []
    for path in (p for f in files.values() for p in f):
        try:
            with Image.open(path) as img:
                img.load()
        except (OSError, SyntaxError) as err:
            broken.append(f"{path} ({err})")
    if broken:
        raise ValueError(f"{len(broken)} image(s) in {root} do not decode: {broken[:5]}"
                         + (" ..." if len(broken) > 5 else "") + "; remove or replace them.")
    return classes


def set_trainable_blocks(backbone: MobileNetBackbone, num_blocks: int) -> list[str]:
    """Freezes the backbone except the convolutions of its top ``num_blocks`` blocks.

    ``num_blocks=0`` freezes everything; ``13`` unfreezes every block (the stem
    conv stays frozen). BatchNorm layers always stay frozen. Returns the names
    of the trainable layers.
    """
    if not 0 <= num_blocks <= len(BLOCK_SPECS):
        raise ValueError(
            f"`num_blocks` must be in [0, {len(BLOCK_SPECS)}], got {num_blocks}."
        )
    first = len(BLOCK_SPECS) - num_blocks + 1
    backbone.trainable = num_blocks > 0
    trainable = []
    for layer in backbone.layers:
        parts = layer.name.split("_")
        is_conv = isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D))
        in_top = len(parts) == 3 and parts[0] == "conv" and parts[2].isdigit() and int(parts[2]) >= first
        layer.trainable = bool(num_blocks and is_conv and in_top)
        if layer.trainable:
            trainable.append(layer.name)
    return trainable


def array_dataset(
    x: np.ndarray, y: np.ndarray, batch_size: int, size: int, training: bool, seed: int = 0
) -> tf.data.Dataset:
    """A tf.data pipeline over in-memory uint8 images: resize, flip (train), batch."""
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    if training:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    ds = with_example_seeds(ds, seed)  # stateless flips: same seed, same run
    return ds.map(stretch_and_flip(size, training), num_parallel_calls=tf.data.AUTOTUNE).batch(
        batch_size).prefetch(tf.data.AUTOTUNE)


def stretch_and_flip(size: int, training: bool) -> Callable:
    """The map function of the classifier pipelines over ``((image, label), example_seed)``
    (``with_example_seeds``): the image stretched to ``size`` x ``size`` as float pixels, and
    flipped left-right by its own seed when ``training`` (the paper's little augmentation)."""

    def prepare(example, example_seed):
        image, label = example
        image = tf.image.resize(tf.cast(image, tf.float32), (size, size))
        if training:
            image = tf.image.stateless_random_flip_left_right(image, example_seed)
        return image, label

    return prepare


@dataclass
class TransferResult:
    head_val_accuracy: float
    final_val_accuracy: float
    trainable_layers: list[str] = field(default_factory=list)
    history: dict[str, Any] = field(default_factory=dict)


def fine_tune(
    model: MobileNetClassifier,
    train: tf.data.Dataset,
    val: tf.data.Dataset,
    head_epochs: int = 5,
    fine_tune_epochs: int = 5,
    unfreeze_blocks: int = 2,
    learning_rate: float = 1e-3,
    fine_tune_learning_rate: float = 1e-4,
    callbacks: list | Callable[[str], list] | None = None,
    verbose: int | str = "auto",
) -> TransferResult:
    """Two-stage transfer learning; returns validation accuracy after each stage.

    ``callbacks``: a list used by both stages, or a function of the stage name
    (``"head"``, ``"fine_tune"``) returning that stage's callbacks (for example
    one ``BackupAndRestore`` folder per stage, so ``--resume`` continues the
    stage that was interrupted).
    """

    def stage_callbacks(stage: str):
        return callbacks(stage) if callable(callbacks) else callbacks

    loss = keras.losses.SparseCategoricalCrossentropy()
    set_trainable_blocks(model.backbone, 0)
    model.compile(keras.optimizers.Adam(learning_rate), loss, metrics=["accuracy"])
    history: dict[str, Any] = {}
    if head_epochs:
        h = model.fit(train, validation_data=val, epochs=head_epochs,
                      callbacks=stage_callbacks("head"), verbose=verbose)
        history["head"] = h.history
    head_acc = float(model.evaluate(val, verbose=0, return_dict=True)["accuracy"])
    names = set_trainable_blocks(model.backbone, unfreeze_blocks)
    final_acc = head_acc
    if fine_tune_epochs and unfreeze_blocks:
        model.compile(keras.optimizers.Adam(fine_tune_learning_rate), loss, metrics=["accuracy"])
        h = model.fit(
            train, validation_data=val, epochs=fine_tune_epochs,
            callbacks=stage_callbacks("fine_tune"), verbose=verbose,
        )
        history["fine_tune"] = h.history
        final_acc = float(model.evaluate(val, verbose=0, return_dict=True)["accuracy"])
    return TransferResult(head_acc, final_acc, names, history)
