"""Faster R-CNN's first stage: the RPN head, the balanced sampler, the RPN targets.

TF OD API ``meta_architectures/faster_rcnn_meta_arch.py`` (first stage) with the
settings of ``faster_rcnn_*_coco.config``; torchvision splits it the same way
(``models/detection/rpn.py``: ``RPNHead``, ``RegionProposalNetwork``, and
``_utils.BalancedPositiveNegativeSampler``). The proposal layer that turns the
RPN outputs into boxes is in ``roi.py``, beside the ROI crop that consumes them.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from mobilenet_zoo.detection.matcher import NEGATIVE
from mobilenet_zoo.utils import ConfigMixin, check_fraction, check_int


def sample_balanced(positive, negative, size: int, positive_fraction: float, seed=None):
    """TF OD API ``BalancedPositiveNegativeSampler``, batched: per row at most
    ``size * positive_fraction`` random positives, negatives fill up to ``size``.

    Args: positive, negative: (B, N) bool, disjoint. Returns (B, N) bool.
    """
    noise = tf.random.uniform(tf.shape(positive), seed=seed)

    def rank(mask):  # rank of each element among the masked ones by noise (0 = first)
        keys = tf.where(mask, noise, -1.0)
        order = tf.argsort(keys, axis=1, direction="DESCENDING")
        return tf.argsort(order, axis=1)

    max_pos = int(size * positive_fraction)
    take_pos = positive & (rank(positive) < max_pos)
    n_pos = tf.reduce_sum(tf.cast(take_pos, tf.int32), axis=1, keepdims=True)
    take_neg = negative & (rank(negative) < size - n_pos)
    return take_pos | take_neg


@keras.saving.register_keras_serializable(package="mobilenet_zoo")
class BalancedSampler(ConfigMixin):
    """Picks the examples a stage trains on (``sample_balanced``).

    Args:
        size: examples per image (RPN: ``first_stage_minibatch_size`` 256; second
            stage: ``second_stage_batch_size`` 64).
        positive_fraction: the most positives can take (RPN:
            ``first_stage_positive_balance_fraction`` 0.5; second stage:
            ``second_stage_balance_fraction`` 0.25).

    ``sampler(positive, negative, seed=None)`` returns the (B, N) bool selection.
    """

    def __init__(self, size: int = 256, positive_fraction: float = 0.5) -> None:
        check_int("size", size)
        check_fraction("positive_fraction", positive_fraction)
        self.size = size
        self.positive_fraction = float(positive_fraction)

    def __call__(self, positive, negative, seed=None):
        return sample_balanced(positive, negative, self.size, self.positive_fraction, seed)

    def get_config(self) -> dict[str, Any]:
        return {"size": self.size, "positive_fraction": self.positive_fraction}


def rpn_head(features, num_anchors: int, depth: int, init_stddev: float):
    """The TF OD API first-stage box predictor (torchvision ``RPNHead``): a 3x3 conv
    of ``depth`` (ReLU6), then 1x1 convs to box codes and 2-way objectness logits.

    Returns ``(box codes (B, N, 4), objectness logits (B, N, 2))``, anchors in the
    order of ``GridAnchorGenerator`` (row-major over the grid, then the anchors).
    """
    init = keras.initializers.TruncatedNormal(stddev=init_stddev)
    h = layers.Conv2D(depth, 3, padding="same", activation="relu6", kernel_initializer=init,
                      name="FirstStageBoxPredictor_conv")(features)
    boxes = layers.Conv2D(num_anchors * 4, 1, kernel_initializer=init,
                          name="FirstStageBoxPredictor_BoxEncoding")(h)
    logits = layers.Conv2D(num_anchors * 2, 1, kernel_initializer=init,
                           name="FirstStageBoxPredictor_Objectness")(h)
    return (layers.Reshape((-1, 4), name="rpn_boxes")(boxes),
            layers.Reshape((-1, 2), name="rpn_objectness")(logits))


def inside_image(anchors: np.ndarray) -> np.ndarray:
    """(N,) bool: the anchors wholly inside the image, the only ones the RPN trains on
    (TF OD API ``clip_anchors_to_image=False``: ``prune_outside_window``)."""
    return ((anchors[:, 0] >= 0) & (anchors[:, 1] >= 0) & (anchors[:, 2] <= 1)
            & (anchors[:, 3] <= 1))


def rpn_targets(gt_boxes, gt_classes, anchors, inside, matcher, box_coder, sampler, seed=None):
    """First-stage targets on the anchors fully inside the image (``inside``, numpy bool).

    Args:
        gt_boxes: (B, M, 4) normalised yxyx; gt_classes: (B, M) int, -1 = padding.
        anchors: (N, 4) numpy; matcher: an ``ArgMaxMatcher`` (config: 0.7 / 0.3);
        box_coder: a ``FasterRCNNBoxCoder``; sampler: a ``BalancedSampler``.

    Returns (objectness (B, N) {0, 1}, box codes (B, N, 4), sampled (B, N) bool,
    positive (B, N) bool), all over every anchor (outside ones never sampled).
    """
    inside_idx = np.flatnonzero(inside).astype(np.int32)
    n = anchors.shape[0]
    a_in = tf.constant(anchors[inside_idx])
    matches = matcher.match(gt_boxes, gt_classes >= 0, a_in)  # (B, N_in)
    pos = matches >= 0
    sampled = sampler(pos, matches == NEGATIVE, seed)
    matched = tf.gather(gt_boxes, tf.maximum(matches, 0), batch_dims=1)
    codes = box_coder.encode(matched, a_in[None])

    def scatter(x):  # (B, N_in, ...) -> (B, N, ...), zeros outside
        x_t = tf.transpose(x, [1, 0] + list(range(2, x.shape.rank)))
        full = tf.scatter_nd(inside_idx[:, None], x_t, [n] + x_t.shape.as_list()[1:])
        return tf.transpose(full, [1, 0] + list(range(2, x.shape.rank)))

    return (scatter(tf.cast(pos, tf.float32)), scatter(codes), scatter(sampled), scatter(pos))


__all__ = ["BalancedSampler", "inside_image", "rpn_head", "rpn_targets", "sample_balanced"]
