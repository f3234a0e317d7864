"""Argmax matcher of the TF OD API (``matchers/argmax_matcher.py``), batched, in ``keras.ops``.

Each anchor takes its best ground truth when IoU >= ``matched_threshold``, is a
negative below ``unmatched_threshold`` and ignored in between; with
``force_match_for_each_row`` every ground truth also claims its best anchor
(config: thresholds 0.5 / 0.5, forced matching on).
"""

from __future__ import annotations

import keras

from mobilenet_zoo.utils import ConfigMixin

NEGATIVE = -1
IGNORED = -2


@keras.saving.register_keras_serializable(package="mobilenet_zoo")
class ArgMaxMatcher(ConfigMixin):
    """Matches anchors to ground-truth boxes.

    Args:
        matched_threshold: IoU at or above which an anchor is positive.
        unmatched_threshold: IoU below which an anchor is negative.
        force_match_for_each_row: each ground truth gets its best anchor.

    ``match(gt_boxes, gt_valid, anchors)`` returns ``(B, N)`` int32: the index of
    the matched ground truth, ``-1`` (negative) or ``-2`` (ignored).
    """

    def __init__(
        self,
        matched_threshold: float = 0.5,
        unmatched_threshold: float = 0.5,
        force_match_for_each_row: bool = True,
    ) -> None:
        if not 0 <= unmatched_threshold <= matched_threshold <= 1:
            raise ValueError(
                "Need 0 <= unmatched_threshold <= matched_threshold <= 1, got "
                f"{unmatched_threshold} and {matched_threshold}."
            )
        self.matched_threshold = matched_threshold
        self.unmatched_threshold = unmatched_threshold
        self.force_match_for_each_row = force_match_for_each_row

    def match(self, gt_boxes, gt_valid, anchors):
        """gt_boxes (B, M, 4) yxyx, gt_valid (B, M) bool, anchors (N, 4) -> (B, N) int32.

        Ties (equal IoU) go to the lowest ground-truth / anchor index, as the TF
        OD API's ``tf.argmax``.
        """
        ops = keras.ops
        gt_valid = ops.cast(gt_valid, "bool")
        iou = keras.utils.bounding_boxes.compute_iou(gt_boxes, anchors, "yxyx")  # (B, M, N)
        iou = ops.where(gt_valid[:, :, None], iou, -1.0)
        best_gt = ops.cast(ops.argmax(iou, axis=1), "int32")
        best_iou = ops.max(iou, axis=1)
        matches = ops.where(
            best_iou >= self.matched_threshold,
            best_gt,
            ops.where(best_iou < self.unmatched_threshold, NEGATIVE, IGNORED),
        )
        if self.force_match_for_each_row:
            best_anchor = ops.argmax(iou, axis=2)  # (B, M)
            forced = ops.one_hot(best_anchor, ops.shape(iou)[2], dtype="float32") * ops.cast(
                gt_valid, "float32"
            )[:, :, None]
            forced_gt = ops.cast(ops.argmax(forced, axis=1), "int32")  # first gt wins
            has_forced = ops.max(forced, axis=1) > 0
            matches = ops.where(has_forced, forced_gt, matches)
        # Images with no valid ground truth: every anchor is a negative.
        any_valid = ops.any(gt_valid, axis=1, keepdims=True)
        return ops.cast(ops.where(any_valid, matches, NEGATIVE), "int32")

    def get_config(self) -> dict:
        return {
            "matched_threshold": self.matched_threshold,
            "unmatched_threshold": self.unmatched_threshold,
            "force_match_for_each_row": self.force_match_for_each_row,
        }
