"""Faster R-CNN's first stage: the RPN head, the balanced sampler, the RPN targets.

TF OD API ``meta_architectures/faster_rcnn_meta_arch.py`` (first stage) with the
settings of ``faster_rcnn_*_coco.config``; torchvision splits it the same way
(``models/detection/rpn.py``: ``RPNHead``, ``RegionProposalNetwork``, and
``_utils.BalancedPositiveNegativeSampler``). The proposal layer that turns the
RPN outputs into boxes is in ``roi.py``, beside the ROI crop that consumes them.

Everything here is ``keras.ops`` / ``keras.random`` (TensorFlow, JAX and PyTorch
backends); randomness takes a ``seed`` (an int or a ``keras.random.SeedGenerator``,
which ``FasterRCNN`` owns so that it also works in JAX's stateless training).
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import layers

from mobilenet_zoo.detection.matcher import NEGATIVE
from mobilenet_zoo.utils import ConfigMixin, check_fraction, check_int


def batch_gather(params: Any, indices: Any) -> Any:
    """``tf.gather(params, indices, batch_dims=1)`` in ``keras.ops``: params (B, M, ...),
    indices (B, K) int in [0, M) -> (B, K, ...)."""
    ops = keras.ops
    indices = ops.cast(indices, "int32")
    for _ in range(len(params.shape) - 2):
        indices = indices[..., None]
    return ops.take_along_axis(params, indices, axis=1)


def sample_balanced(positive: Any, negative: Any, size: int, positive_fraction: float,
                    seed: int | keras.random.SeedGenerator | None = None) -> Any:
    """TF OD API ``core/balanced_positive_negative_sampler.py``
    (``BalancedPositiveNegativeSampler.subsample``), batched: per row at most
    ``int(size * positive_fraction)`` positives picked uniformly at random, then
    random negatives fill up to ``size``.

    Args:
        positive, negative: (B, N) bool, disjoint.
        size, positive_fraction: the sample size and the positives' cap.
        seed: an int or a ``keras.random.SeedGenerator`` (``keras.random.uniform``'s).

    Returns (B, N) bool.
    """
    ops = keras.ops
    positive, negative = ops.cast(positive, "bool"), ops.cast(negative, "bool")
    noise = keras.random.uniform(ops.shape(positive), seed=seed)

    def rank(mask):  # rank of each element among the masked ones by noise (0 = first)
        keys = ops.where(mask, noise, -1.0)
        order = ops.argsort(-keys, axis=1)  # descending noise, the masked ones first
        return ops.cast(ops.argsort(order, axis=1), "int32")

    max_pos = int(size * positive_fraction)
    take_pos = positive & (rank(positive) < max_pos)
    n_pos = ops.sum(ops.cast(take_pos, "int32"), axis=1, keepdims=True)
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

    ``sampler(positive, negative, seed=None)`` returns the (B, N) bool selection
    (``seed``: an int or a ``keras.random.SeedGenerator``).
    """

    def __init__(self, size: int = 256, positive_fraction: float = 0.5) -> None:
        check_int("size", size)
        check_fraction("positive_fraction", positive_fraction)
        self.size = size
        self.positive_fraction = float(positive_fraction)

    def __call__(self, positive: Any, negative: Any,
                 seed: int | keras.random.SeedGenerator | None = None) -> Any:
        return sample_balanced(positive, negative, self.size, self.positive_fraction, seed)

    def get_config(self) -> dict[str, Any]:
        return {"size": self.size, "positive_fraction": self.positive_fraction}


def rpn_head(features: Any, num_anchors: int, depth: int, init_stddev: float) -> tuple[Any, Any]:
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


def rpn_targets(gt_boxes: Any, gt_classes: Any, anchors: np.ndarray, inside: np.ndarray, matcher: Any,
                box_coder: Any, sampler: Any,
                seed: int | keras.random.SeedGenerator | None = None) -> tuple[Any, Any, Any, Any]:
    """First-stage targets on the anchors fully inside the image (``inside``, numpy bool);
    TF OD API ``faster_rcnn_meta_arch._loss_rpn`` (target assignment, then the sampler).

    Args:
        gt_boxes: (B, M, 4) normalised yxyx; gt_classes: (B, M) int, -1 = padding.
        anchors: (N, 4) numpy; matcher: an ``ArgMaxMatcher`` (config: 0.7 / 0.3);
        box_coder: a ``FasterRCNNBoxCoder``; sampler: a ``BalancedSampler``.
        seed: the sampler's (an int or a ``keras.random.SeedGenerator``).

    Returns (objectness (B, N) {0, 1}, box codes (B, N, 4), sampled (B, N) bool,
    positive (B, N) bool), all over every anchor (outside ones never sampled).
    """
    ops = keras.ops
    inside_idx = np.flatnonzero(inside).astype(np.int32)
    n = anchors.shape[0]
    a_in = ops.convert_to_tensor(np.asarray(anchors, np.float32)[inside_idx])
    matches = ops.convert_to_tensor(matcher.match(gt_boxes, ops.convert_to_tensor(gt_classes) >= 0, a_in))
    pos = matches >= 0
    sampled = sampler(pos, matches == NEGATIVE, seed)
    matched = batch_gather(ops.cast(gt_boxes, "float32"), ops.maximum(matches, 0))
    codes = box_coder.encode(matched, a_in[None])
    # Back to every anchor: each takes its row among the inside ones, or a zero row
    # appended after them (a static gather: no scatter, the same on every backend).
    source = np.full(n, len(inside_idx), np.int32)
    source[inside_idx] = np.arange(len(inside_idx), dtype=np.int32)

    def scatter(x):  # (B, N_in, ...) -> (B, N, ...), zeros outside
        padded = ops.concatenate([x, ops.zeros_like(x[:, :1])], axis=1)
        return ops.take(padded, source, axis=1)

    return (scatter(ops.cast(pos, "float32")), scatter(codes), scatter(ops.cast(sampled, "bool")),
            scatter(pos))


__all__ = ["BalancedSampler", "batch_gather", "inside_image", "rpn_head", "rpn_targets", "sample_balanced"]
