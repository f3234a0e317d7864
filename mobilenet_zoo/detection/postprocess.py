"""SSD post-processing: decode boxes, sigmoid scores, per-class NMS.

TF OD API ``ssd_mobilenet_v1_coco.config`` ``post_processing``: score threshold
1e-8, IoU 0.6, 100 detections per class, 100 in total, sigmoid scores, boxes
clipped to the image window.
"""

from __future__ import annotations

import tensorflow as tf


class DetectionDecoder:
    """Raw SSD outputs -> detections (normalised yxyx boxes).

    Args:
        score_threshold: drop scores below (config: 1e-8).
        iou_threshold: per-class NMS IoU (config: 0.6).
        max_detections_per_class: config: 100.
        max_detections: config: 100.

    ``__call__(box_codes, class_logits, anchors, box_coder)`` returns a dict of
    ``boxes (B, K, 4)``, ``scores (B, K)``, ``classes (B, K)`` int32 (0-based, no
    background; -1 on padding) and ``num_detections (B,)``.
    """

    def __init__(
        self,
        score_threshold: float = 1e-8,
        iou_threshold: float = 0.6,
        max_detections_per_class: int = 100,
        max_detections: int = 100,
    ) -> None:
        if not 0 <= iou_threshold <= 1:
            raise ValueError(f"`iou_threshold` must be in [0, 1], got {iou_threshold}.")
        if max_detections < 1 or max_detections_per_class < 1:
            raise ValueError("`max_detections` and `max_detections_per_class` must be >= 1.")
        self.score_threshold = score_threshold
        self.iou_threshold = iou_threshold
        self.max_detections_per_class = max_detections_per_class
        self.max_detections = max_detections

    def scores_and_boxes(self, box_codes, class_logits, anchors, box_coder):
        boxes = box_coder.decode(tf.cast(box_codes, tf.float32), anchors)
        scores = tf.sigmoid(tf.cast(class_logits, tf.float32))[..., 1:]  # drop background
        return boxes, scores

    def __call__(self, box_codes, class_logits, anchors, box_coder) -> dict:
        boxes, scores = self.scores_and_boxes(box_codes, class_logits, anchors, box_coder)
        nms = tf.image.combined_non_max_suppression(
            boxes[:, :, None, :],
            scores,
            max_output_size_per_class=self.max_detections_per_class,
            max_total_size=self.max_detections,
            iou_threshold=self.iou_threshold,
            score_threshold=self.score_threshold,
            pad_per_class=False,
            clip_boxes=True,
        )
        k = tf.range(self.max_detections)[None, :]
        valid = k < nms.valid_detections[:, None]
        classes = tf.where(valid, tf.cast(nms.nmsed_classes, tf.int32), -1)
        return {
            "boxes": tf.where(valid[..., None], nms.nmsed_boxes, -1.0),
            "scores": tf.where(valid, nms.nmsed_scores, 0.0),
            "classes": classes,
            "num_detections": nms.valid_detections,
        }

    def get_config(self) -> dict:
        return {
            "score_threshold": self.score_threshold,
            "iou_threshold": self.iou_threshold,
            "max_detections_per_class": self.max_detections_per_class,
            "max_detections": self.max_detections,
        }
