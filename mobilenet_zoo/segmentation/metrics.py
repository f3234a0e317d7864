"""Segmentation metrics over classes, honouring an ignore label.

``MeanIoU`` is Keras core's (``keras.metrics.MeanIoU`` with ``ignore_class``,
taking logits); ``PixelAccuracy`` and the numpy ``confusion_matrix`` /
``segmentation_scores`` use the same conventions: pixels labelled
``ignore_label`` count nowhere, classes absent from both truth and prediction
are left out of the mean.
"""

from __future__ import annotations

import keras
import numpy as np

from mobilenet_zoo.segmentation.deeplab import IGNORE_LABEL


def MeanIoU(num_classes: int, ignore_label: int = IGNORE_LABEL, name: str = "mean_iou"):
    """Keras core ``MeanIoU`` on logits ``(B, H, W, C)`` and integer masks."""
    return keras.metrics.MeanIoU(
        num_classes, name=name, ignore_class=ignore_label, sparse_y_pred=False
    )


@keras.saving.register_keras_serializable(package="mobilenet_zoo")
class PixelAccuracy(keras.metrics.Metric):
    """Fraction of labelled pixels whose argmax prediction is right."""

    def __init__(self, ignore_label: int = IGNORE_LABEL, name: str = "pixel_accuracy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.ignore_label = ignore_label
        self.correct = self.add_variable(shape=(), initializer="zeros", name="correct")
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = keras.ops.cast(keras.ops.reshape(y_true, (-1,)), "int32")
        y_pred = keras.ops.reshape(keras.ops.argmax(y_pred, axis=-1), (-1,))
        valid = keras.ops.not_equal(y_true, self.ignore_label)
        hit = keras.ops.logical_and(valid, keras.ops.equal(y_true, keras.ops.cast(y_pred, "int32")))
        self.correct.assign_add(keras.ops.sum(keras.ops.cast(hit, "float32")))
        self.total.assign_add(keras.ops.sum(keras.ops.cast(valid, "float32")))

    def result(self):
        return self.correct / keras.ops.maximum(self.total, 1.0)

    def reset_state(self):
        self.correct.assign(0.0)
        self.total.assign(0.0)

    def get_config(self):
        return {**super().get_config(), "ignore_label": self.ignore_label}


def confusion_matrix(y_true, y_pred_labels, num_classes: int, ignore_label: int = IGNORE_LABEL) -> np.ndarray:
    """``(C, C)`` counts, rows = truth, columns = prediction; ignored pixels dropped."""
    t = np.asarray(y_true).reshape(-1).astype(np.int64)
    p = np.asarray(y_pred_labels).reshape(-1).astype(np.int64)
    keep = t != ignore_label
    t, p = t[keep], p[keep]
    if t.size and (t.min() < 0 or t.max() >= num_classes):
        raise ValueError(
            f"Mask labels must be in [0, {num_classes}) or {ignore_label} (ignore); found "
            f"{sorted(set(np.unique(t)) - set(range(num_classes)))[:5]}."
        )
    return np.bincount(t * num_classes + p, minlength=num_classes**2).reshape(num_classes, num_classes)


def segmentation_scores(cm: np.ndarray) -> dict:
    """Mean IoU, per-class IoU (NaN for absent classes) and pixel accuracy."""
    tp = np.diag(cm).astype(np.float64)
    denom = cm.sum(0) + cm.sum(1) - tp
    iou = np.where(denom > 0, tp / np.maximum(denom, 1), np.nan)
    return {
        "mean_iou": float(np.nanmean(iou)) if np.isfinite(iou).any() else 0.0,
        "per_class_iou": [None if np.isnan(v) else float(v) for v in iou],
        "pixel_accuracy": float(tp.sum() / max(cm.sum(), 1)),
    }
