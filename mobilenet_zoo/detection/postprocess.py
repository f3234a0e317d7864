"""Detection post-processing: one NMS, and the decoder (boxes, scores, per-class NMS).

TF OD API ``ssd_mobilenet_v1_coco.config`` ``post_processing``: score threshold
1e-8, IoU 0.6, 100 detections per class, 100 in total, sigmoid scores, boxes
clipped to the image window (``faster_rcnn_*_coco.config``: softmax scores, 300 in
total).

``non_max_suppression`` is the one NMS of the package: the detectors' decoder,
Faster R-CNN's proposal layer and the exported graphs all call it. It has two
kernels for the same algorithm (per-class NMS, then the ``max_total`` best over
all classes), chosen by ``tflite_ops``:

- ``tflite_ops=False``: ``tf.image.combined_non_max_suppression`` (batched, fast);
- ``tflite_ops=True``: a loop of single-class ``NonMaxSuppressionV5`` ops, which
  convert to TFLite builtins (``combined_non_max_suppression`` does not), over
  a static batch. ``predict`` uses the first, SavedModel / TFLite export the
  second; tests check they agree.
"""

from __future__ import annotations

import warnings

import keras
import tensorflow as tf


def tflite_ops_argument(tflite_ops: bool, export: bool | None, where: str) -> bool:
    """The ``tflite_ops`` switch, taking the old ``export=`` keyword with a DeprecationWarning."""
    if export is None:
        return bool(tflite_ops)
    warnings.warn(f"{where}(export=...) is deprecated; use tflite_ops=...", DeprecationWarning,
                  stacklevel=3)
    return bool(export)


def non_max_suppression(boxes, scores, max_per_class: int, max_total: int, iou_threshold: float,
                        score_threshold: float, clip_boxes: bool = False, tflite_ops: bool = False):
    """Per-class NMS then the ``max_total`` best detections of each image.

    Args:
        boxes: ``(B, N, 4)`` normalised yxyx shared by the classes, or ``(B, N, C, 4)``
            one box per class (Faster R-CNN's second stage).
        scores: ``(B, N, C)``.
        max_per_class / max_total / iou_threshold / score_threshold: as
            ``tf.image.combined_non_max_suppression``.
        clip_boxes: clip the kept boxes to [0, 1].
        tflite_ops: build it from ``NonMaxSuppressionV5`` (TFLite builtin; needs a
            static batch size).

    Returns:
        ``boxes (B, K, 4)``, ``scores (B, K)``, ``classes (B, K)`` int32 and ``num (B,)``
        int32, best first; entries from ``num`` on are padding (boxes and scores 0,
        classes -1).
    """
    if tflite_ops:
        batch = boxes.shape[0]
        if batch is None:
            raise ValueError("tflite_ops=True needs a static batch size (serving_fn(batch_size=...)).")
        outs = [_nms_one_image(boxes[i], scores[i], max_per_class, max_total, iou_threshold,
                               score_threshold, clip_boxes) for i in range(batch)]
        out_boxes, out_scores, classes, num = (tf.stack([o[k] for o in outs]) for k in range(4))
    else:
        nms = tf.image.combined_non_max_suppression(
            boxes if boxes.shape.rank == 4 else boxes[:, :, None, :], scores,
            max_output_size_per_class=max_per_class, max_total_size=max_total,
            iou_threshold=iou_threshold, score_threshold=score_threshold, pad_per_class=False,
            clip_boxes=clip_boxes)
        out_boxes, out_scores, num = nms.nmsed_boxes, nms.nmsed_scores, nms.valid_detections
        classes = tf.cast(nms.nmsed_classes, tf.int32)
    valid = tf.range(max_total)[None, :] < num[:, None]
    return (tf.where(valid[..., None], out_boxes, 0.0), tf.where(valid, out_scores, 0.0),
            tf.where(valid, classes, -1), num)


def _nms_one_image(boxes, scores, per_class, k_total, iou_threshold, score_threshold, clip_boxes):
    """One image of ``non_max_suppression(tflite_ops=True)``: static shapes throughout."""
    num_classes = scores.shape[-1]
    sel_boxes, sel_scores, sel_classes = [], [], []
    for c in range(num_classes):
        class_boxes = boxes if boxes.shape.rank == 2 else boxes[:, c]
        # Padded single-class NMS (NonMaxSuppressionV5): static shapes, which
        # is how the TFLite kernel returns them anyway.
        idx, sc, count = tf.raw_ops.NonMaxSuppressionV5(
            boxes=class_boxes, scores=scores[:, c], max_output_size=per_class,
            iou_threshold=iou_threshold, score_threshold=score_threshold,
            soft_nms_sigma=0.0, pad_to_max_output_size=True,
        )
        sel_boxes.append(tf.gather(class_boxes, idx))
        sel_scores.append(tf.where(tf.range(per_class) < count, sc, -1.0))
        sel_classes.append(tf.fill([per_class], c))
    all_scores = tf.concat(sel_scores, 0)
    all_boxes = tf.concat(sel_boxes, 0)
    all_classes = tf.concat(sel_classes, 0)
    short = k_total - num_classes * per_class
    if short > 0:  # fewer candidates than output slots: pad statically
        all_scores = tf.pad(all_scores, [[0, short]], constant_values=-1.0)
        all_boxes = tf.pad(all_boxes, [[0, short], [0, 0]])
        all_classes = tf.pad(all_classes, [[0, short]], constant_values=-1)
    num = tf.minimum(tf.reduce_sum(tf.cast(all_scores >= 0, tf.int32)), k_total)
    top_scores, top_idx = tf.math.top_k(all_scores, k_total)
    out_boxes = tf.gather(all_boxes, top_idx)
    if clip_boxes:
        out_boxes = tf.clip_by_value(out_boxes, 0.0, 1.0)
    return out_boxes, top_scores, tf.gather(all_classes, top_idx), num


@keras.saving.register_keras_serializable(package="mobilenet_zoo")
class DetectionDecoder(keras.layers.Layer):
    """Raw detector outputs -> detections (normalised yxyx boxes).

    Args:
        score_threshold: drop scores below (config: 1e-8).
        iou_threshold: per-class NMS IoU (config: 0.6).
        max_detections_per_class: config: 100.
        max_detections: config: 100.
        score_converter: "sigmoid" (SSD configs) or "softmax" (Faster R-CNN
            configs); the background column 0 is dropped after it.
        **kwargs: ``name`` and other ``keras.layers.Layer`` arguments.

    ``decoder(box_codes, class_logits, anchors, box_coder=..., tflite_ops=False)``
    (box codes ``(B, N, 4)`` shared by the classes, or ``(B, N, C, 4)`` one box per
    class as Faster R-CNN's second stage; anchors ``(N, 4)`` or per image ``(B, N, 4)``)
    returns a dict of ``boxes (B, K, 4)``, ``scores (B, K)``, ``classes (B, K)``
    int32 (0-based, no background; -1 on padding) and ``num_detections (B,)``.

    Example:

    ```python
    dets = DetectionDecoder(score_threshold=0.3)(codes, logits, anchors,
                                                 box_coder=FasterRCNNBoxCoder())
    ```
    """

    def __init__(
        self,
        score_threshold: float = 1e-8,
        iou_threshold: float = 0.6,
        max_detections_per_class: int = 100,
        max_detections: int = 100,
        score_converter: str = "sigmoid",
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if score_converter not in ("sigmoid", "softmax"):
            raise ValueError(f"`score_converter` must be 'sigmoid' or 'softmax', got {score_converter!r}.")
        self.score_converter = score_converter
        if not 0 <= iou_threshold <= 1:
            raise ValueError(f"`iou_threshold` must be in [0, 1], got {iou_threshold}.")
        if max_detections < 1 or max_detections_per_class < 1:
            raise ValueError("`max_detections` and `max_detections_per_class` must be >= 1.")
        self.score_threshold = score_threshold
        self.iou_threshold = iou_threshold
        self.max_detections_per_class = max_detections_per_class
        self.max_detections = max_detections

    def scores_and_boxes(self, box_codes, class_logits, anchors, box_coder):
        """Decoded boxes (B, N, 4) and per-class sigmoid scores (B, N, C)."""
        codes = tf.cast(box_codes, tf.float32)
        if codes.shape.rank == 4:  # one box per class: decode each against its anchor
            anchors = anchors[..., None, :]
        boxes = box_coder.decode(codes, anchors)
        convert = tf.sigmoid if self.score_converter == "sigmoid" else tf.nn.softmax
        scores = convert(tf.cast(class_logits, tf.float32))[..., 1:]  # drop background
        return boxes, scores

    def call(self, box_codes, class_logits, anchors, box_coder, tflite_ops: bool = False,
             export: bool | None = None) -> dict:
        tflite_ops = tflite_ops_argument(tflite_ops, export, "DetectionDecoder")
        boxes, scores = self.scores_and_boxes(box_codes, class_logits, tf.cast(anchors, tf.float32),
                                              box_coder)
        boxes, scores, classes, num = non_max_suppression(
            boxes, scores, self.max_detections_per_class, self.max_detections, self.iou_threshold,
            self.score_threshold, clip_boxes=True, tflite_ops=tflite_ops)
        return {"boxes": tf.where(classes[..., None] >= 0, boxes, -1.0), "scores": scores,
                "classes": classes, "num_detections": num}

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({
            "score_threshold": self.score_threshold,
            "iou_threshold": self.iou_threshold,
            "max_detections_per_class": self.max_detections_per_class,
            "max_detections": self.max_detections,
            "score_converter": self.score_converter,
        })
        return config
