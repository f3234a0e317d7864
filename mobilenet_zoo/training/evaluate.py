"""Measures a published ImageNet variant against TF-slim's published accuracy.

``python recipes/imagenet.py --evaluate-only --weights imagenet --alpha 0.5
--image-size 160 --data-dir DIR`` runs ``evaluate_pretrained`` on the TFDS
``imagenet2012`` validation split with TF-slim's evaluation preprocessing
(central crop 0.875, bilinear resize, [-1, 1]; ``research/slim/preprocessing/
inception_preprocessing.py``) and prints top-1 / top-5 beside the numbers of
``research/slim/nets/mobilenet_v1.md``.
"""

from __future__ import annotations

from typing import Any

import keras

from mobilenet_zoo import presets
from mobilenet_zoo.backbone import MobileNetBackbone
from mobilenet_zoo.classification.classifier import MobileNetClassifier
from mobilenet_zoo.classification.preprocessor import ImageClassifierPreprocessor
from mobilenet_zoo.tensorflow_support import import_tensorflow

tf = import_tensorflow("ImageNet evaluation (tf.data)")


def evaluate_pretrained(
    val_raw: tf.data.Dataset,
    alpha: float = 1.0,
    image_size: int = 224,
    weights: str = "imagenet",
    batch_size: int = 100,
    central_fraction: float = 0.875,
) -> dict[str, Any]:
    """Top-1 / top-5 of a 1000-class ImageNet preset on ``(uint8 image, label)`` pairs.

    Args:
        val_raw: the validation split, labels 0..999 (TFDS ``imagenet2012``).
        alpha, image_size: pick the published variant when ``weights="imagenet"``.
        weights: ``"imagenet"``, an ImageNet preset name or a weights file.
        batch_size: evaluation batch.
        central_fraction: TF-slim's evaluation crop.

    Returns:
        ``{"preset", "top1", "top5", "published_top1", "published_top5"}`` (fractions for
        the measured values, percentages for the published ones).
    """
    name = presets.imagenet_preset(alpha, image_size) if weights == "imagenet" else weights
    published = presets.get_preset(name) if name in presets.list_presets() else {}
    model = MobileNetClassifier(
        MobileNetBackbone(alpha=alpha, input_shape=(image_size, image_size, 3)),
        num_classes=1000, include_preprocessing=True, weights=name,
        preprocessor=ImageClassifierPreprocessor(image_size, augment=False,
                                                 central_fraction=central_fraction))
    model.compile(metrics=[keras.metrics.SparseCategoricalAccuracy(name="top1"),
                           keras.metrics.SparseTopKCategoricalAccuracy(5, name="top5")],
                  loss="sparse_categorical_crossentropy")
    scores = model.evaluate(model.preprocessor.pipeline(val_raw, batch_size), return_dict=True,
                            verbose=0)
    return {"preset": name, "top1": float(scores["top1"]), "top5": float(scores["top5"]),
            "published_top1": published.get("published_top1"),
            "published_top5": published.get("published_top5")}
