"""Detection post-processing: decode boxes, sigmoid scores, per-class NMS.

TF OD API ``ssd_mobilenet_v1_coco.config`` ``post_processing``: score threshold
1e-8, IoU 0.6, 100 detections per class, 100 in total, sigmoid scores, boxes
clipped to the image window.

One layer, two NMS kernels for the same algorithm (per-class NMS, then the
``max_detections`` best over all classes):

- ``export=False``: ``tf.image.combined_non_max_suppression`` (batched, fast);
- ``export=True``: a loop of single-class ``NonMaxSuppressionV5`` ops, which
  convert to TFLite builtins (``combined_non_max_suppression`` does not), over
  a static batch. ``predict`` uses the first, SavedModel / TFLite export the
  second; tests check they agree.
"""

from __future__ import annotations

import keras
import tensorflow as tf


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

    ``decoder(box_codes, class_logits, anchors, box_coder=..., export=False)``
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

    def call(self, box_codes, class_logits, anchors, box_coder, export: bool = False) -> dict:
        boxes, scores = self.scores_and_boxes(box_codes, class_logits, tf.cast(anchors, tf.float32),
                                              box_coder)
        if export:
            return self._loop_nms(boxes, scores)
        nms = tf.image.combined_non_max_suppression(
            boxes if boxes.shape.rank == 4 else boxes[:, :, None, :],
            scores,
            max_output_size_per_class=self.max_detections_per_class,
            max_total_size=self.max_detections,
            iou_threshold=self.iou_threshold,
            score_threshold=self.score_threshold,
            pad_per_class=False,
            clip_boxes=True,
        )
        return self._pack(nms.nmsed_boxes, tf.cast(nms.nmsed_classes, tf.int32), nms.nmsed_scores,
                          nms.valid_detections)

    def _pack(self, boxes, classes, scores, num):
        valid = tf.range(self.max_detections)[None, :] < num[:, None]
        return {
            "boxes": tf.where(valid[..., None], boxes, -1.0),
            "scores": tf.where(valid, scores, 0.0),
            "classes": tf.where(valid, classes, -1),
            "num_detections": num,
        }

    def _loop_nms(self, boxes, scores):
        """Per-class NMS with TFLite builtins; needs a static batch size."""
        batch = boxes.shape[0]
        if batch is None:
            raise ValueError("export=True needs a static batch size (serving_fn(batch_size=...)).")
        outs = [self._loop_nms_one(boxes[i], scores[i]) for i in range(batch)]
        return self._pack(*(tf.stack([o[k] for o in outs]) for k in range(4)))

    def _loop_nms_one(self, boxes, scores):
        per_class, k_total = self.max_detections_per_class, self.max_detections
        num_classes = scores.shape[-1]
        sel_boxes, sel_scores, sel_classes = [], [], []
        for c in range(num_classes):
            # Padded single-class NMS (NonMaxSuppressionV5): static shapes, which
            # is how the TFLite kernel returns them anyway.
            idx, sc, count = tf.raw_ops.NonMaxSuppressionV5(
                boxes=boxes if boxes.shape.rank == 2 else boxes[:, c], scores=scores[:, c],
                max_output_size=per_class,
                iou_threshold=self.iou_threshold, score_threshold=self.score_threshold,
                soft_nms_sigma=0.0, pad_to_max_output_size=True,
            )
            sel_boxes.append(tf.gather(boxes if boxes.shape.rank == 2 else boxes[:, c], idx))
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
        out_boxes = tf.clip_by_value(tf.gather(all_boxes, top_idx), 0.0, 1.0)
        return out_boxes, tf.gather(all_classes, top_idx), top_scores, num

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
