"""The segmentation recipe's data choice and its part of the finish step.

``choose_data`` returns a ``training.DataChoice`` (the embedded digit masks by
default, TFDS oxford_iiit_pet, PASCAL VOC 2012 folders, or mock pets for
``--smoke``); ``MaskReport`` is what ``training.finish`` measures (mean IoU,
pixel accuracy), draws (``overlays.png``) and checks in ``model.tflite`` (the
largest difference from Keras) for ``recipes/segmentation.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mobilenet_zoo.data import segmentation as sdata
from mobilenet_zoo.segmentation.metrics import confusion_matrix, segmentation_scores
from mobilenet_zoo.segmentation.visualize import save_overlays
from mobilenet_zoo.tensorflow_support import import_tensorflow
from mobilenet_zoo.training.config import ExportOptions
from mobilenet_zoo.training.run import DataChoice

tf = import_tensorflow("the segmentation recipe (tf.data)")


@dataclass(frozen=True)
class SegmentationData:
    """The segmentation recipe's data flags."""

    dataset: str = "embedded"
    data_dir: str | None = None
    voc_root: str | None = None
    embedded_classes: int = 2


def choose_data(data: SegmentationData, smoke: bool = False) -> DataChoice:
    """The data the segmentation recipe trains on (kind ``embedded``, ``full`` or ``mock``)."""
    if smoke:
        import tensorflow_datasets as tfds

        with tfds.testing.mock_data(num_examples=4):
            train = sdata.oxford_pets("train", check=False)
            val = sdata.oxford_pets("test", check=False)

        # mock_data's masks are random and not image-sized: resize them to match.
        def fix(ex):
            mask = tf.image.resize(ex["mask"], tf.shape(ex["image"])[:2], method="nearest")
            return {"image": ex["image"], "mask": tf.where(mask > 1, tf.constant(255, tf.uint8), mask)}

        train.dataset, val.dataset = train.dataset.map(fix), val.dataset.map(fix)
        return DataChoice("mock", "tfds.testing.mock_data oxford_iiit_pet (--smoke)", train, val)
    if data.dataset == "pets":
        return DataChoice("full", "TFDS oxford_iiit_pet", sdata.oxford_pets("train", data.data_dir),
                          sdata.oxford_pets("test", data.data_dir))
    if data.dataset == "voc":
        if not data.voc_root:
            raise SystemExit("error: --dataset voc needs --voc-root (the VOC2012 folder)")
        return DataChoice("full", "PASCAL VOC 2012", sdata.voc2012(data.voc_root, "train"),
                          sdata.voc2012(data.voc_root, "val"))
    binary = data.embedded_classes == 2
    train, val = sdata.embedded_digits("train", binary=binary), sdata.embedded_digits("val", binary=binary)
    return DataChoice("embedded", f"{train.description} (no --dataset given; no download)", train, val)


@dataclass
class MaskReport:
    """``training.finish``'s segmentation part."""

    num_classes: int
    image_size: int
    picture: str = "overlays.png"

    def evaluate(self, model, val) -> dict[str, Any]:
        n = self.num_classes
        cm = np.zeros((n, n), np.int64)
        for images, masks in val:
            cm += confusion_matrix(masks, np.argmax(model.predict_on_batch(images), -1), n)
        scores = segmentation_scores(cm)
        print(f"val mean IoU {scores['mean_iou']:.3f}, pixel accuracy {scores['pixel_accuracy']:.3f}")
        return {"val": scores}

    def draw(self, model, batch, path: str) -> str:
        images, masks = np.asarray(batch[0]), np.asarray(batch[1])
        return save_overlays(images, np.argmax(model.predict_on_batch(images), -1), path, masks)

    def tflite_kwargs(self, model, export: ExportOptions) -> dict[str, Any]:
        return {"image_size": self.image_size, "argmax": export.argmax}

    def check_tflite(self, model, lite, images, export: ExportOptions) -> tuple[dict[str, Any], str]:
        out = next(iter(lite.values()))
        keras_out = model.predict_on_batch(images)
        ref = np.argmax(keras_out, -1) if export.argmax else keras_out
        diff = float(np.abs(out - ref).max())
        return {"max_abs_diff_vs_keras": diff}, f", max |TFLite - Keras| = {diff:.2e}"
