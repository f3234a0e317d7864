"""Faster R-CNN between and after the stages: proposals, ROI crops, the box classifier.

TF OD API ``meta_architectures/faster_rcnn_meta_arch.py`` with
``faster_rcnn_mobilenet_v1_feature_extractor.py`` and the settings of
``faster_rcnn_*_coco.config``; torchvision's counterparts are
``models/detection/rpn.py`` (``filter_proposals``), ``ops.MultiScaleRoIAlign``
and ``models/detection/roi_heads.py``.

- ``ProposalLayer``: RPN outputs -> the ``max_proposals`` best boxes per image, by
  the package's one NMS (``postprocess.non_max_suppression``).
- ``ROICrop``: ``crop_and_resize`` of every proposal from the stride-16 map:
  ``tf.image.crop_and_resize`` on the TensorFlow backend, else
  ``crop_and_resize_builtin``, the same bilinear sampling from ``keras.ops`` gathers
  and arithmetic (which also converts to TFLite builtins).
- ``box_classifier``: the second stage (``Conv2d_12`` / ``Conv2d_13`` separable
  layers, pooling, class logits and per-class box codes), and
  ``second_stage_targets``, the proposals it trains on.

Everything is ``keras.ops`` / ``keras.random``: the model runs on the TensorFlow,
JAX and PyTorch backends (TensorFlow is imported lazily, on its backend only).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
from keras import layers

from mobilenet_zoo.detection.matcher import NEGATIVE
from mobilenet_zoo.detection.postprocess import non_max_suppression
from mobilenet_zoo.detection.rpn import batch_gather
from mobilenet_zoo.layers import FoldedConv2D, batch_norm
from mobilenet_zoo.utils import check_fraction, check_int


@keras.saving.register_keras_serializable(package="mobilenet_zoo")
class ProposalLayer(layers.Layer):
    """RPN outputs -> ``max_proposals`` boxes per image (normalised yxyx), by NMS.

    Decodes the box codes against the anchors, clips to the image, scores with the
    objectness softmax and keeps the NMS survivors (TF OD API
    ``faster_rcnn_meta_arch._postprocess_rpn``: ``first_stage_nms_iou_threshold`` 0.7,
    ``first_stage_max_proposals`` 300, ``first_stage_nms_score_threshold`` 0). No
    gradient flows through the proposals (the meta-architecture's ``stop_gradient``;
    here before the NMS, so that no NMS kernel needs one). ``tflite_ops=True`` builds
    the NMS from ``NonMaxSuppressionV5`` (a TFLite builtin; needs a static batch).

    The detector binds its anchors and box coder (``bind``); they are not part of
    the config. ``layer(box_codes, objectness_logits)`` returns ``(boxes (B, P, 4),
    scores (B, P), num (B,))``, padding (zeros) after ``num``.
    """

    def __init__(self, max_proposals: int = 300, iou_threshold: float = 0.7,
                 score_threshold: float = 0.0, tflite_ops: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        check_int("max_proposals", max_proposals)
        check_fraction("iou_threshold", iou_threshold)
        self.max_proposals = max_proposals
        self.iou_threshold = float(iou_threshold)
        self.score_threshold = float(score_threshold)
        self.tflite_ops = bool(tflite_ops)
        self.anchors, self.box_coder = None, None

    def bind(self, anchors: np.ndarray, box_coder: Any) -> ProposalLayer:
        """Sets the (N, 4) anchors and the box coder the codes are decoded with."""
        self.anchors = np.asarray(anchors, np.float32)
        self.box_coder = box_coder
        return self

    def call(self, box_codes: Any, objectness_logits: Any) -> tuple[Any, Any, Any]:
        if self.anchors is None:
            raise ValueError("ProposalLayer has no anchors: call `bind(anchors, box_coder)` first.")
        ops = keras.ops
        codes = ops.stop_gradient(ops.cast(box_codes, "float32"))
        logits = ops.stop_gradient(ops.cast(objectness_logits, "float32"))
        boxes = self.box_coder.decode(codes, ops.convert_to_tensor(self.anchors))
        # Clipped to the image (TF OD API clip_to_window), the far edge kept 1e-5 inside:
        # a box edge at exactly 1.0 samples position H - 1 in crop_and_resize, which float
        # round-off puts either inside or outside the map (zeros) depending on how the
        # arithmetic is ordered, so the TF kernel and the TFLite builtin crop could disagree.
        boxes = ops.clip(boxes, 0.0, 1.0 - 1e-5)
        scores = ops.softmax(logits, axis=-1)[..., 1:]
        k = min(self.max_proposals, self.anchors.shape[0])
        p_boxes, p_scores, _, nums = non_max_suppression(
            boxes, scores, k, k, self.iou_threshold, self.score_threshold, tflite_ops=self.tflite_ops)
        if k < self.max_proposals:  # fewer anchors than proposal slots: pad statically
            pad = self.max_proposals - k
            p_boxes = ops.pad(p_boxes, [[0, 0], [0, pad], [0, 0]])
            p_scores = ops.pad(p_scores, [[0, 0], [0, pad]])
        return p_boxes, p_scores, ops.cast(nums, "int32")

    def compute_output_spec(self, box_codes: Any, objectness_logits: Any) -> tuple:
        b = box_codes.shape[0]
        return (keras.KerasTensor((b, self.max_proposals, 4)), keras.KerasTensor((b, self.max_proposals)),
                keras.KerasTensor((b,), dtype="int32"))

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"max_proposals": self.max_proposals, "iou_threshold": self.iou_threshold,
                       "score_threshold": self.score_threshold, "tflite_ops": self.tflite_ops})
        return config


def crop_and_resize_builtin(features: Any, boxes: Any, box_indices: Any, crop_size: Sequence[int]) -> Any:
    """``tf.image.crop_and_resize`` (bilinear, extrapolation 0) from ``keras.ops``
    gathers and arithmetic only: it runs on every Keras backend and, on TensorFlow,
    converts to TFLite builtins (GATHER, FLOOR, MUL, ADD).

    The kernel's sampling grid (TF ``core/kernels/image/crop_and_resize_op.cc``): crop
    row ``i`` samples ``y = y1 * (H - 1) + i * (y2 - y1) * (H - 1) / (crop_h - 1)``
    (``0.5 * (y1 + y2) * (H - 1)`` when ``crop_h == 1``), columns alike; a sample
    outside ``[0, H - 1] x [0, W - 1]`` is 0, others interpolate their 4 neighbours.

    Args:
        features: (B, H, W, C) with a static H and W.
        boxes: (N, 4) normalised yxyx; box_indices: (N,) int, the image of each box.
        crop_size: (crop_h, crop_w).

    Returns (N, crop_h, crop_w, C) float32.
    """
    ops = keras.ops
    _, h, w, c = features.shape
    ch, cw = crop_size
    boxes = ops.cast(boxes, "float32")

    def coords(lo, hi, size, n):
        if n > 1:
            step = (hi - lo) * (size - 1) / (n - 1)
            pos = lo[:, None] * (size - 1) + ops.arange(n, dtype="float32")[None, :] * step[:, None]
        else:
            pos = 0.5 * (lo + hi)[:, None] * (size - 1)
        # Outside the map -> 0 (extrapolation). A 1e-4 pixel slack keeps a box edge at
        # exactly 1.0 inside whatever order a compiler (XLA, TFLite) evaluates this in;
        # float32 round-off there is ~1e-6 pixel.
        valid = (pos >= -1e-4) & (pos <= size - 1 + 1e-4)
        low = ops.floor(pos)
        frac = pos - low
        low_i = ops.clip(ops.cast(low, "int32"), 0, size - 1)
        high_i = ops.clip(low_i + 1, 0, size - 1)
        return low_i, high_i, frac, valid

    y0, y1, fy, vy = coords(boxes[:, 0], boxes[:, 2], h, ch)
    x0, x1, fx, vx = coords(boxes[:, 1], boxes[:, 3], w, cw)
    flat = ops.cast(ops.reshape(features, (-1, c)), "float32")
    base = ops.cast(box_indices, "int32")[:, None, None] * (h * w)

    def at(yy, xx):
        return ops.take(flat, base + yy[:, :, None] * w + xx[:, None, :], axis=0)  # (N, ch, cw, C)

    fx_, fy_ = fx[:, None, :, None], fy[:, :, None, None]
    top_left, bottom_left = at(y0, x0), at(y1, x0)
    top = top_left + (at(y0, x1) - top_left) * fx_
    bottom = bottom_left + (at(y1, x1) - bottom_left) * fx_
    out = top + (bottom - top) * fy_
    valid = ops.cast(vy[:, :, None, None] & vx[:, None, :, None], out.dtype)
    return out * valid


def crop_and_resize(features: Any, boxes: Any, box_indices: Any, crop_size: Sequence[int]) -> Any:
    """Bilinear ``crop_and_resize`` on the current Keras backend: TF's kernel
    (``tf.image.crop_and_resize``, faster) on TensorFlow, ``crop_and_resize_builtin``
    (the same numbers) elsewhere. Arguments as ``crop_and_resize_builtin``."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.image.crop_and_resize(tf.cast(features, tf.float32), tf.cast(boxes, tf.float32),
                                        tf.cast(box_indices, tf.int32), tuple(crop_size))
    return crop_and_resize_builtin(features, boxes, box_indices, crop_size)


@keras.saving.register_keras_serializable(package="mobilenet_zoo")
class ROICrop(layers.Layer):
    """(features (B, H, W, C), boxes (B, P, 4)) -> crops (B * P, S, S, C).

    ``crop_and_resize`` (TF OD API ``faster_rcnn_meta_arch``
    ``_compute_second_stage_input_feature_maps``); Args: crop_size: the side of each
    crop (config: ``initial_crop_size`` 14; no ``maxpool_kernel_size``, as the
    paper's 25.2B mult-adds need the full 14x14 crop). ``tflite_ops=True`` computes
    the same bilinear crops from gathers (``crop_and_resize_builtin``), which TFLite
    converts to builtins.
    """

    def __init__(self, crop_size: int = 14, tflite_ops: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        check_int("crop_size", crop_size)
        self.crop_size = int(crop_size)
        self.tflite_ops = bool(tflite_ops)

    def call(self, features: Any, boxes: Any) -> Any:
        ops = keras.ops
        per_image = boxes.shape[1]
        flat_boxes = ops.reshape(boxes, (-1, 4))
        index = ops.arange(ops.shape(flat_boxes)[0], dtype="int32") // per_image
        size = (self.crop_size, self.crop_size)
        if self.tflite_ops:
            return crop_and_resize_builtin(features, flat_boxes, index, size)
        return crop_and_resize(features, flat_boxes, index, size)

    def compute_output_spec(self, features: Any, boxes: Any) -> keras.KerasTensor:
        return keras.KerasTensor((None, self.crop_size, self.crop_size, features.shape[-1]))

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"crop_size": self.crop_size, "tflite_ops": self.tflite_ops})
        return config


@keras.saving.register_keras_serializable(package="mobilenet_zoo")
class PerProposal(layers.Layer):
    """(B * P, ...) -> (B, P, ...): undoes the flattening of the crops."""

    def __init__(self, proposals: int, inner_shape: Sequence[int], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.proposals = int(proposals)
        self.inner_shape = tuple(int(s) for s in inner_shape)

    def call(self, x: Any) -> Any:
        return keras.ops.reshape(x, (-1, self.proposals, *self.inner_shape))

    def compute_output_spec(self, x: Any) -> keras.KerasTensor:
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


def second_stage_targets(proposals: Any, num_proposals: Any, gt_boxes: Any, gt_classes: Any, matcher: Any,
                         box_coder: Any, sampler: Any, add_groundtruth: bool = True,
                         seed: int | keras.random.SeedGenerator | None = None) -> tuple[Any, ...]:
    """Samples ``sampler.size`` proposals per image and their targets (TF OD API
    ``faster_rcnn_meta_arch._sample_box_classifier_batch``; ``matcher``: config
    0.5 / 0.5, no forced match; ``sampler``: 64 with at most 25% positives).

    Candidates: the valid proposals (plus the ground-truth boxes themselves with
    ``add_groundtruth``, as torchvision's ``roi_heads.add_gt_proposals``, so early
    training has positives). A candidate is positive at IoU >= 0.5 with a ground
    truth (class = its class + 1), else background. ``seed``: an int or a
    ``keras.random.SeedGenerator`` (the sampler's and the order's randomness).

    Returns (boxes (B, S, 4), class targets (B, S) int32 with 0 = background, box
    codes (B, S, 4), weights (B, S) 1 where sampled, positive (B, S) bool).
    """
    ops = keras.ops
    proposals = ops.cast(proposals, "float32")
    gt_boxes = ops.cast(gt_boxes, "float32")
    gt_classes = ops.cast(gt_classes, "int32")
    p = proposals.shape[1]
    valid = ops.arange(p, dtype="int32")[None, :] < ops.cast(num_proposals, "int32")[:, None]
    candidates, cand_valid = proposals, valid
    if add_groundtruth:
        candidates = ops.concatenate([proposals, gt_boxes], axis=1)
        cand_valid = ops.concatenate([valid, gt_classes >= 0], axis=1)
    matches = ops.convert_to_tensor(matcher.match(gt_boxes, gt_classes >= 0, candidates))
    batch = sampler.size
    short = batch - candidates.shape[1] if candidates.shape[1] is not None else 0
    if short > 0:  # fewer candidates than samples (max_proposals < sampler.size): pad, never chosen
        candidates = ops.pad(candidates, [[0, 0], [0, short], [0, 0]])
        cand_valid = ops.cast(ops.pad(ops.cast(cand_valid, "int32"), [[0, 0], [0, short]]), "bool")
        matches = ops.pad(ops.cast(matches, "int32"), [[0, 0], [0, short]], constant_values=NEGATIVE)
    pos = (matches >= 0) & cand_valid
    neg = (matches == NEGATIVE) & cand_valid
    # An int seed gives the order its own stream (a SeedGenerator advances by itself).
    order_seed = int(seed) + 1 if isinstance(seed, numbers.Integral) else seed
    chosen = ops.cast(sampler(pos, neg, seed), "bool")
    # A dense (B, batch) selection: chosen candidates first, then unchosen (weight 0).
    noise = keras.random.uniform(ops.shape(chosen), 0.0, 0.5, seed=order_seed)
    order = ops.top_k(ops.cast(chosen, "float32") + noise, k=batch)[1]
    take = batch_gather(chosen, order)
    boxes = batch_gather(candidates, order)
    m = batch_gather(matches, order)
    positive = take & (m >= 0)
    labels = ops.where(positive, batch_gather(gt_classes, ops.maximum(m, 0)) + 1, 0)
    matched = batch_gather(gt_boxes, ops.maximum(m, 0))
    codes = box_coder.encode(matched, boxes)
    return boxes, ops.cast(labels, "int32"), codes, ops.cast(take, "float32"), positive


def class_box_codes(box_codes: Any, labels: Any) -> Any:
    """(B, S, C, 4) per-class box codes -> (B, S, 4) the codes of each proposal's
    target class (``labels``: 0 = background, which takes class 0's, unweighted;
    TF OD API ``faster_rcnn_meta_arch._loss_box_classifier``)."""
    ops = keras.ops
    index = ops.maximum(ops.cast(labels, "int32") - 1, 0)[:, :, None, None]
    return ops.take_along_axis(box_codes, index, axis=2)[:, :, 0]


__all__ = ["ProposalLayer", "ROICrop", "PerProposal", "box_classifier", "class_box_codes",
           "crop_and_resize", "crop_and_resize_builtin", "init_from_backbone", "second_stage_targets"]
