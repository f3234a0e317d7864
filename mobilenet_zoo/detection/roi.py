"""Faster R-CNN between and after the stages: proposals, ROI crops, the box classifier.

TF OD API ``meta_architectures/faster_rcnn_meta_arch.py`` with
``faster_rcnn_mobilenet_v1_feature_extractor.py`` and the settings of
``faster_rcnn_*_coco.config``; torchvision's counterparts are
``models/detection/rpn.py`` (``filter_proposals``), ``ops.MultiScaleRoIAlign``
and ``models/detection/roi_heads.py``.

- ``ProposalLayer``: RPN outputs -> the ``max_proposals`` best boxes per image, by
  the package's one NMS (``postprocess.non_max_suppression``).
- ``ROICrop``: ``crop_and_resize`` of every proposal from the stride-16 map;
  ``crop_and_resize_builtin`` is the same from TFLite builtins.
- ``box_classifier``: the second stage (``Conv2d_12`` / ``Conv2d_13`` separable
  layers, pooling, class logits and per-class box codes), and
  ``second_stage_targets``, the proposals it trains on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from mobilenet_zoo.detection.matcher import NEGATIVE
from mobilenet_zoo.detection.postprocess import non_max_suppression
from mobilenet_zoo.layers import FoldedConv2D, batch_norm
from mobilenet_zoo.utils import check_fraction, check_int


@keras.saving.register_keras_serializable(package="mobilenet_zoo")
class ProposalLayer(layers.Layer):
    """RPN outputs -> ``max_proposals`` boxes per image (normalised yxyx), by NMS.

    Decodes the box codes against the anchors, clips to the image, scores with the
    objectness softmax and keeps the NMS survivors (TF OD API first stage:
    ``first_stage_nms_iou_threshold`` 0.7, ``first_stage_max_proposals`` 300,
    ``first_stage_nms_score_threshold`` 0). ``tflite_ops=True`` builds the NMS from
    ``NonMaxSuppressionV5`` (a TFLite builtin; needs a static batch).

    The detector binds its anchors and box coder (``bind``); they are not part of
    the config. ``layer(box_codes, objectness_logits)`` returns ``(boxes (B, P, 4),
    scores (B, P), num (B,))``, padding (zeros) after ``num``.
    """

    def __init__(self, max_proposals: int = 300, iou_threshold: float = 0.7,
                 score_threshold: float = 0.0, tflite_ops: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        check_int("max_proposals", max_proposals)
        check_fraction("iou_threshold", iou_threshold)
        self.max_proposals = max_proposals
        self.iou_threshold = float(iou_threshold)
        self.score_threshold = float(score_threshold)
        self.tflite_ops = bool(tflite_ops)
        self.anchors, self.box_coder = None, None

    def bind(self, anchors: np.ndarray, box_coder) -> ProposalLayer:
        """Sets the (N, 4) anchors and the box coder the codes are decoded with."""
        self.anchors = np.asarray(anchors, np.float32)
        self.box_coder = box_coder
        return self

    def call(self, box_codes, objectness_logits):
        if self.anchors is None:
            raise ValueError("ProposalLayer has no anchors: call `bind(anchors, box_coder)` first.")
        boxes = self.box_coder.decode(tf.cast(box_codes, tf.float32), tf.constant(self.anchors))
        # Clipped to the image (TF OD API clip_to_window), the far edge kept 1e-5 inside:
        # a box edge at exactly 1.0 samples position H - 1 in crop_and_resize, which float
        # round-off puts either inside or outside the map (zeros) depending on how the
        # arithmetic is ordered, so the TF kernel and the TFLite builtin crop could disagree.
        boxes = tf.clip_by_value(boxes, 0.0, 1.0 - 1e-5)
        scores = tf.nn.softmax(tf.cast(objectness_logits, tf.float32))[..., 1:]
        k = min(self.max_proposals, self.anchors.shape[0])
        p_boxes, p_scores, _, nums = non_max_suppression(
            boxes, scores, k, k, self.iou_threshold, self.score_threshold, tflite_ops=self.tflite_ops)
        if k < self.max_proposals:  # fewer anchors than proposal slots: pad statically
            pad = self.max_proposals - k
            p_boxes = tf.pad(p_boxes, [[0, 0], [0, pad], [0, 0]])
            p_scores = tf.pad(p_scores, [[0, 0], [0, pad]])
        return tf.stop_gradient(p_boxes), tf.stop_gradient(p_scores), nums

    def compute_output_spec(self, box_codes, objectness_logits):
        b = box_codes.shape[0]
        return (keras.KerasTensor((b, self.max_proposals, 4)), keras.KerasTensor((b, self.max_proposals)),
                keras.KerasTensor((b,), dtype="int32"))

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"max_proposals": self.max_proposals, "iou_threshold": self.iou_threshold,
                       "score_threshold": self.score_threshold, "tflite_ops": self.tflite_ops})
        return config


def crop_and_resize_builtin(features, boxes, box_indices, crop_size: Sequence[int]):
    """``tf.image.crop_and_resize`` (bilinear, extrapolation 0) from gathers and
    arithmetic only, so it converts to TFLite builtins (GATHER, FLOOR, MUL, ADD).

    Args:
        features: (B, H, W, C) with a static H and W.
        boxes: (N, 4) normalised yxyx; box_indices: (N,) int32 image of each box.
        crop_size: (crop_h, crop_w).
    """
    _, h, w, c = features.shape
    ch, cw = crop_size

    def coords(lo, hi, size, n):
        if n > 1:
            step = (hi - lo) * (size - 1) / (n - 1)
            pos = lo[:, None] * (size - 1) + tf.range(n, dtype=tf.float32)[None, :] * step[:, None]
        else:
            pos = 0.5 * (lo + hi)[:, None] * (size - 1)
        # Outside the map -> 0 (extrapolation). A 1e-3 pixel slack keeps a box edge at
        # exactly 1.0 inside whatever order graph optimisations evaluate this in.
        valid = (pos >= -1e-3) & (pos <= size - 1 + 1e-3)
        low = tf.floor(pos)
        frac = pos - low
        low_i = tf.clip_by_value(tf.cast(low, tf.int32), 0, size - 1)
        high_i = tf.clip_by_value(low_i + 1, 0, size - 1)
        return low_i, high_i, frac, valid

    y0, y1, fy, vy = coords(boxes[:, 0], boxes[:, 2], h, ch)
    x0, x1, fx, vx = coords(boxes[:, 1], boxes[:, 3], w, cw)
    flat = tf.reshape(features, (-1, c))
    base = tf.cast(box_indices, tf.int32)[:, None, None] * (h * w)

    def at(yy, xx):
        return tf.gather(flat, base + yy[:, :, None] * w + xx[:, None, :])  # (N, ch, cw, C)

    fx_, fy_ = fx[:, None, :, None], fy[:, :, None, None]
    top = at(y0, x0) + (at(y0, x1) - at(y0, x0)) * fx_
    bottom = at(y1, x0) + (at(y1, x1) - at(y1, x0)) * fx_
    out = top + (bottom - top) * fy_
    valid = tf.cast(vy[:, :, None, None] & vx[:, None, :, None], out.dtype)
    return out * valid


@keras.saving.register_keras_serializable(package="mobilenet_zoo")
class ROICrop(layers.Layer):
    """(features (B, H, W, C), boxes (B, P, 4)) -> crops (B * P, S, S, C).

    ``tf.image.crop_and_resize`` (TF OD API ``_compute_second_stage_input_feature_maps``);
    Args: crop_size: the side of each crop (config: ``initial_crop_size`` 14; no
    ``maxpool_kernel_size``, as the paper's 25.2B mult-adds need the full 14x14 crop).
    ``tflite_ops=True`` computes the same bilinear crops from gathers
    (``crop_and_resize_builtin``), which TFLite converts to builtins.
    """

    def __init__(self, crop_size: int = 14, tflite_ops: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        check_int("crop_size", crop_size)
        self.crop_size = int(crop_size)
        self.tflite_ops = bool(tflite_ops)

    def call(self, features, boxes):
        batch, per_image = tf.shape(boxes)[0], boxes.shape[1]
        flat_boxes = tf.reshape(boxes, (-1, 4))
        index = tf.repeat(tf.range(batch), per_image)
        size = (self.crop_size, self.crop_size)
        if self.tflite_ops:
            return crop_and_resize_builtin(features, flat_boxes, index, size)
        return tf.image.crop_and_resize(features, flat_boxes, index, size)

    def compute_output_spec(self, features, boxes):
        return keras.KerasTensor((None, self.crop_size, self.crop_size, features.shape[-1]))

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"crop_size": self.crop_size, "tflite_ops": self.tflite_ops})
        return config


@keras.saving.register_keras_serializable(package="mobilenet_zoo")
class PerProposal(layers.Layer):
    """(B * P, ...) -> (B, P, ...): undoes the flattening of the crops."""

    def __init__(self, proposals: int, inner_shape: Sequence[int], **kwargs) -> None:
        super().__init__(**kwargs)
        self.proposals = int(proposals)
        self.inner_shape = tuple(int(s) for s in inner_shape)

    def call(self, x):
        return tf.reshape(x, (-1, self.proposals, *self.inner_shape))

    def compute_output_spec(self, x):
        return keras.KerasTensor((None, self.proposals, *self.inner_shape), dtype=x.dtype)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"proposals": self.proposals, "inner_shape": list(self.inner_shape)})
        return config


def box_classifier(in_channels: int, crop_size: int, depth: int, num_classes: int, folded: bool) -> keras.Model:
    """Second stage: slim separable_conv2d ``Conv2d_12_pointwise`` (stride 2) and
    ``Conv2d_13_pointwise`` (BN + ReLU6 after the pointwise conv only), global
    average pooling, then the MaskRCNNBoxPredictor's class and box layers."""
    Conv = FoldedConv2D if folded else layers.Conv2D
    crops = keras.Input((crop_size, crop_size, in_channels), name="crops")
    x = crops
    for block, stride in ((12, 2), (13, 1)):
        x = layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False,
                                   name=f"conv_dw_{block}")(x)
        x = Conv(depth, 1, use_bias=folded, name=f"conv_pw_{block}")(x)
        x = batch_norm(x, f"conv_pw_{block}_bn", folded)
        x = layers.ReLU(6.0, name=f"conv_pw_{block}_relu")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    init = keras.initializers.VarianceScaling(1.0, "fan_avg", "uniform")  # fc_hyperparams: variance_scaling
    logits = layers.Dense(num_classes + 1, kernel_initializer=init, name="ClassPredictor",
                          dtype="float32")(x)
    codes = layers.Dense(num_classes * 4, kernel_initializer=init, name="BoxEncodingPredictor",
                         dtype="float32")(x)
    return keras.Model(crops, [logits, codes], name="box_classifier")


def init_from_backbone(box_classifier: keras.Model, backbone: keras.Model) -> list[str]:
    """Copies the backbone's conv_dw_12 ... conv_pw_13 (and their BN) where shapes fit."""
    copied = []
    for layer in box_classifier.layers:
        if not layer.weights:
            continue
        try:
            source = backbone.get_layer(layer.name)
        except ValueError:
            continue
        src = source.get_weights()
        if [w.shape for w in src] == [tuple(w.shape) for w in layer.weights]:
            layer.set_weights(src)
            copied.append(layer.name)
    return copied


def second_stage_targets(proposals, num_proposals, gt_boxes, gt_classes, matcher, box_coder, sampler,
                         add_groundtruth: bool = True, seed=None):
    """Samples ``sampler.size`` proposals per image and their targets (``matcher``:
    config 0.5 / 0.5, no forced match; ``sampler``: 64 with at most 25% positives).

    Candidates: the valid proposals (plus the ground-truth boxes themselves with
    ``add_groundtruth``, as torchvision's ``roi_heads.add_gt_proposals``, so early
    training has positives). A candidate is positive at IoU >= 0.5 with a ground
    truth (class = its class + 1), else background.

    Returns (boxes (B, S, 4), class targets (B, S) int32 with 0 = background, box
    codes (B, S, 4), weights (B, S) 1 where sampled, positive (B, S) bool).
    """
    p = proposals.shape[1]
    valid = tf.range(p)[None, :] < num_proposals[:, None]
    candidates, cand_valid = proposals, valid
    if add_groundtruth:
        candidates = tf.concat([proposals, gt_boxes], axis=1)
        cand_valid = tf.concat([valid, gt_classes >= 0], axis=1)
    matches = matcher.match(gt_boxes, gt_classes >= 0, candidates)
    pos = (matches >= 0) & cand_valid
    neg = (matches == NEGATIVE) & cand_valid
    chosen = sampler(pos, neg, seed)
    batch = sampler.size
    # A dense (B, batch) selection: chosen candidates first, then unchosen (weight 0).
    order = tf.math.top_k(tf.cast(chosen, tf.float32) + tf.random.uniform(tf.shape(chosen), 0, 0.5, seed=seed),
                          k=batch).indices
    take = tf.gather(chosen, order, batch_dims=1)
    boxes = tf.gather(candidates, order, batch_dims=1)
    m = tf.gather(matches, order, batch_dims=1)
    positive = take & (m >= 0)
    labels = tf.where(positive, tf.gather(gt_classes, tf.maximum(m, 0), batch_dims=1) + 1, 0)
    matched = tf.gather(gt_boxes, tf.maximum(m, 0), batch_dims=1)
    codes = box_coder.encode(matched, boxes)
    return boxes, labels, codes, tf.cast(take, tf.float32), positive


def class_box_codes(box_codes, labels):
    """(B, S, C, 4) per-class box codes -> (B, S, 4) the codes of each proposal's
    target class (``labels``: 0 = background, which takes class 0's, unweighted)."""
    return tf.gather(box_codes, tf.maximum(labels - 1, 0), batch_dims=2)


__all__ = ["ProposalLayer", "ROICrop", "PerProposal", "box_classifier", "class_box_codes",
           "crop_and_resize_builtin", "init_from_backbone", "second_stage_targets"]
