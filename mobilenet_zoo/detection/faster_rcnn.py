"""Faster R-CNN with a MobileNet backbone, as the TF Object Detection API builds it.

The paper's Table 13 rows "Faster-RCNN 300 / 600 MobileNet" (Howard et al. 2017
s.4.7): TF OD API ``faster_rcnn_mobilenet_v1_feature_extractor.py`` with the
settings of its ``faster_rcnn_*_coco.config`` samples.

- First stage: MobileNet v1 up to ``conv_pw_11`` (stride 16, min_depth 16); grid
  anchors (``grid_anchor_generator``: stride 16, scales 0.25 / 0.5 / 1 / 2 of a
  256-pixel base, aspect ratios 0.5 / 1 / 2); RPN = 3x3 conv (512) then 1x1
  objectness (2-way softmax) and box convs; proposals by NMS (IoU 0.7, 300 kept).
- ROI crop: ``crop_and_resize`` of every proposal to 14x14 from the stride-16 map,
  no max-pool (the paper's 25.2B mult-adds need the full 14x14 crop).
- Second stage: the separable layers ``Conv2d_12_pointwise`` (3x3 depthwise stride 2,
  1x1 to 1024) and ``Conv2d_13_pointwise`` (1024) at depth 1024 whatever alpha,
  global average pooling, class logits (num_classes + background, softmax) and
  per-class box codes; initialised from the backbone's conv_dw_12 ... conv_pw_13
  where shapes allow (alpha 1.0).
- Training (``model.fit``, TensorFlow backend): RPN targets on 256 anchors per image
  (half positive, IoU 0.7 / 0.3), second-stage targets on 64 proposals per image
  (25% positive, IoU 0.5), box coder 10 / 10 / 5 / 5, losses weighted 2 (RPN boxes),
  1 (objectness), 2 (second-stage boxes), 1 (classes).
- Inference: softmax scores, per-class NMS (IoU 0.6, 100 per class, 300 total).

The whole detector is a functional Keras model ``images -> raw outputs``;
``postprocess`` decodes them, so ``predict``, SavedModel and TFLite share one path.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from mobilenet_zoo import presets
from mobilenet_zoo.backbone import (
    FoldedConv2D,
    MobileNetBackbone,
    batch_norm,
    check_backbone,
)
from mobilenet_zoo.detection.box_coder import FasterRCNNBoxCoder
from mobilenet_zoo.detection.matcher import ArgMaxMatcher
from mobilenet_zoo.detection.postprocess import DetectionDecoder
from mobilenet_zoo.detection.preprocessor import (
    DetectionPreprocessor,
    as_image_size,
    ground_truth_to_model,
)
from mobilenet_zoo.preprocessing import preprocessing_layer
from mobilenet_zoo.task import Task, serialize
from mobilenet_zoo.utils import ConfigMixin, build_piece, check_num_classes

# faster_rcnn_mobilenet_v1_feature_extractor.py: first stage to Conv2d_11_pointwise, min_depth 16.
FIRST_STAGE_LEVEL = "P4"
MIN_DEPTH = 16
# faster_rcnn_*_coco.config: first_stage_box_predictor_conv_hyperparams / depth.
RPN_DEPTH = 512
RPN_INIT_STDDEV = 0.01  # truncated_normal_initializer stddev 0.01
FIRST_STAGE_NMS_IOU = 0.7
FIRST_STAGE_MAX_PROPOSALS = 300
RPN_MINIBATCH = 256
RPN_POSITIVE_FRACTION = 0.5
CROP_SIZE = 14  # initial_crop_size 14 (maxpool_kernel_size dropped: see module docstring)
SECOND_STAGE_DEPTH = 1024  # the feature extractor's Conv2d_12/13 depth, not scaled by alpha
SECOND_STAGE_BATCH = 64
SECOND_STAGE_POSITIVE_FRACTION = 0.25
# Loss weights: first_stage_localization / objectness, second_stage localization / classification.
LOSS_WEIGHTS = {"rpn_box": 2.0, "rpn_objectness": 1.0, "box": 2.0, "class": 1.0}


# ----------------------------------------------------------------------------
# Anchors
# ----------------------------------------------------------------------------
@keras.saving.register_keras_serializable(package="mobilenet_zoo")
class GridAnchorGenerator(ConfigMixin):
    """The TF OD API's ``grid_anchor_generator`` (one feature map).

    Anchor ``k`` of a cell has aspect ratio ``aspect_ratios[k // len(scales)]`` and
    scale ``scales[k % len(scales)]``: height ``scale * base / sqrt(ratio)``, width
    ``scale * base * sqrt(ratio)`` pixels, centred at ``(i * stride + offset,
    j * stride + offset)``. Boxes are returned normalised by the image size
    (``[ymin, xmin, ymax, xmax]``), row-major over the grid, then the anchors.

    Args:
        scales: anchor scales (config: 0.25, 0.5, 1.0, 2.0).
        aspect_ratios: width / height (config: 0.5, 1.0, 2.0).
        base_anchor_size: pixels of scale 1 (grid_anchor_generator default 256).
        stride: pixels between anchor centres (config: 16).
        offset: pixels of the first centre (grid_anchor_generator default 0).

    Example:

    ```python
    anchors = GridAnchorGenerator()((300, 300), (19, 19))   # (4332, 4)
    ```
    """

    def __init__(self, scales: Sequence[float] = (0.25, 0.5, 1.0, 2.0),
                 aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0), base_anchor_size: float = 256.0,
                 stride: int = 16, offset: float = 0.0) -> None:
        if not scales or not aspect_ratios or min(scales) <= 0 or min(aspect_ratios) <= 0:
            raise ValueError(f"`scales` and `aspect_ratios` must be non-empty and positive, got "
                             f"{scales} and {aspect_ratios}.")
        if base_anchor_size <= 0 or stride < 1:
            raise ValueError(f"`base_anchor_size` must be > 0 and `stride` >= 1, got "
                             f"{base_anchor_size} and {stride}.")
        self.scales = tuple(float(s) for s in scales)
        self.aspect_ratios = tuple(float(r) for r in aspect_ratios)
        self.base_anchor_size = float(base_anchor_size)
        self.stride = int(stride)
        self.offset = float(offset)

    def num_anchors_per_location(self) -> int:
        return len(self.scales) * len(self.aspect_ratios)

    def sizes(self) -> np.ndarray:
        """(A, 2) anchor (height, width) in pixels, in the cell's order."""
        ratios, scales = np.meshgrid(self.aspect_ratios, self.scales, indexing="ij")
        ratios, scales = ratios.ravel(), scales.ravel()
        return np.stack([scales / np.sqrt(ratios), scales * np.sqrt(ratios)], -1) * self.base_anchor_size

    def __call__(self, image_size: int | Sequence[int], grid: Sequence[int]) -> np.ndarray:
        h, w = as_image_size(image_size)
        gh, gw = grid
        cy = np.arange(gh) * self.stride + self.offset
        cx = np.arange(gw) * self.stride + self.offset
        cy, cx = np.meshgrid(cy, cx, indexing="ij")
        centres = np.stack([cy, cx], -1)[:, :, None, :]  # (gh, gw, 1, 2)
        half = self.sizes()[None, None] / 2.0  # (1, 1, A, 2)
        boxes = np.concatenate([centres - half, centres + half], -1).reshape(-1, 4)
        return (boxes / np.array([h, w, h, w], np.float64)).astype(np.float32)

    def get_config(self) -> dict[str, Any]:
        return {"scales": list(self.scales), "aspect_ratios": list(self.aspect_ratios),
                "base_anchor_size": self.base_anchor_size, "stride": self.stride, "offset": self.offset}


# ----------------------------------------------------------------------------
# Proposals and ROI crops (Keras layers inside the functional graph)
# ----------------------------------------------------------------------------
@keras.saving.register_keras_serializable(package="mobilenet_zoo")
class ProposalLayer(layers.Layer):
    """RPN outputs -> ``max_proposals`` boxes per image (normalised yxyx), by NMS.

    Decodes the box codes against the anchors, clips to the image, scores with the
    objectness softmax and keeps the NMS survivors (TF OD API first stage: IoU 0.7,
    300 proposals, score threshold 0). ``tflite_ops=True`` uses one
    ``NonMaxSuppressionV5`` per image (a TFLite builtin; needs a static batch).
    Returns ``(boxes (B, P, 4), scores (B, P), num (B,))``, padding after ``num``.
    """

    def __init__(self, anchors, max_proposals: int = FIRST_STAGE_MAX_PROPOSALS,
                 iou_threshold: float = FIRST_STAGE_NMS_IOU, tflite_ops: bool = False,
                 box_coder=None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.anchors = np.asarray(anchors, np.float32)
        self.max_proposals = int(max_proposals)
        self.iou_threshold = float(iou_threshold)
        self.tflite_ops = bool(tflite_ops)
        self.box_coder = build_piece(box_coder, FasterRCNNBoxCoder)

    def call(self, box_codes, objectness_logits):
        boxes = self.box_coder.decode(tf.cast(box_codes, tf.float32), tf.constant(self.anchors))
        # Clipped to the image (TF OD API clip_to_window), the far edge kept 1e-5 inside:
        # a box edge at exactly 1.0 samples position H - 1 in crop_and_resize, which float
        # round-off puts either inside or outside the map (zeros) depending on how the
        # arithmetic is ordered, so the TF kernel and the TFLite builtin crop could disagree.
        boxes = tf.clip_by_value(boxes, 0.0, 1.0 - 1e-5)
        scores = tf.nn.softmax(tf.cast(objectness_logits, tf.float32))[..., 1]
        k = min(self.max_proposals, self.anchors.shape[0])
        if self.tflite_ops:
            batch = boxes.shape[0]
            if batch is None:
                raise ValueError("tflite_ops=True needs a static batch size (serving_fn(batch_size=...)).")
            outs = []
            for i in range(batch):
                idx, sc, num = tf.raw_ops.NonMaxSuppressionV5(
                    boxes=boxes[i], scores=scores[i], max_output_size=k,
                    iou_threshold=self.iou_threshold, score_threshold=0.0, soft_nms_sigma=0.0,
                    pad_to_max_output_size=True)
                valid = tf.range(k) < num
                outs.append((tf.where(valid[:, None], tf.gather(boxes[i], idx), 0.0),
                             tf.where(valid, sc, 0.0), num))
            p_boxes, p_scores, nums = (tf.stack([o[j] for o in outs]) for j in range(3))
        else:
            nms = tf.image.combined_non_max_suppression(
                boxes[:, :, None, :], scores[..., None], k, k, iou_threshold=self.iou_threshold,
                score_threshold=0.0, pad_per_class=False, clip_boxes=False)
            p_boxes, p_scores, nums = nms.nmsed_boxes, nms.nmsed_scores, nms.valid_detections
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
        config.update({"anchors": self.anchors.tolist(), "max_proposals": self.max_proposals,
                       "iou_threshold": self.iou_threshold, "tflite_ops": self.tflite_ops,
                       "box_coder": serialize(self.box_coder)})
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
    ``tflite_ops=True`` computes the same bilinear crops from gathers
    (``crop_and_resize_builtin``), which TFLite converts to builtins.
    """

    def __init__(self, crop_size: int = CROP_SIZE, tflite_ops: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
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


# ----------------------------------------------------------------------------
# Training targets
# ----------------------------------------------------------------------------
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


def rpn_targets(gt_boxes, gt_classes, anchors, inside, matcher, box_coder, minibatch: int = RPN_MINIBATCH,
                positive_fraction: float = RPN_POSITIVE_FRACTION, seed=None):
    """First-stage targets on the anchors fully inside the image (``inside``, numpy bool).

    Returns (objectness (B, N) {0, 1}, box codes (B, N, 4), sampled (B, N) bool,
    positive (B, N) bool), all over every anchor (outside ones never sampled).
    """
    inside_idx = np.flatnonzero(inside).astype(np.int32)
    n = anchors.shape[0]
    a_in = tf.constant(anchors[inside_idx])
    matches = matcher.match(gt_boxes, gt_classes >= 0, a_in)  # (B, N_in)
    pos = matches >= 0
    neg = matches == -1
    sampled = sample_balanced(pos, neg, minibatch, positive_fraction, seed)
    matched = tf.gather(gt_boxes, tf.maximum(matches, 0), batch_dims=1)
    codes = box_coder.encode(matched, a_in[None])

    def scatter(x):  # (B, N_in, ...) -> (B, N, ...), zeros outside
        x_t = tf.transpose(x, [1, 0] + list(range(2, x.shape.rank)))
        full = tf.scatter_nd(inside_idx[:, None], x_t, [n] + x_t.shape.as_list()[1:])
        return tf.transpose(full, [1, 0] + list(range(2, x.shape.rank)))

    return (scatter(tf.cast(pos, tf.float32)), scatter(codes), scatter(sampled), scatter(pos))


def second_stage_targets(proposals, num_proposals, gt_boxes, gt_classes, matcher, box_coder,
                         batch: int = SECOND_STAGE_BATCH,
                         positive_fraction: float = SECOND_STAGE_POSITIVE_FRACTION,
                         add_groundtruth: bool = True, seed=None):
    """Samples ``batch`` proposals per image and their targets.

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
    neg = (matches == -1) & cand_valid
    chosen = sample_balanced(pos, neg, batch, positive_fraction, seed)
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


def _smooth_l1(diff):
    """TF OD API ``WeightedSmoothL1LocalizationLoss`` (Huber, delta 1), summed over the code."""
    a = tf.abs(diff)
    return tf.reduce_sum(tf.where(a < 1.0, 0.5 * a * a, a - 0.5), axis=-1)


# ----------------------------------------------------------------------------
# The detector
# ----------------------------------------------------------------------------
@keras.saving.register_keras_serializable(package="mobilenet_zoo")
class FasterRCNN(Task):
    """Two-stage detector on a MobileNet backbone (paper Table 13).

    Args:
        backbone: a ``MobileNetBackbone`` with a stride-16 ``P4`` level
            (``conv_pw_11``); its conv_dw_12 ... conv_pw_13 weights initialise the
            second stage where their shapes fit.
        num_classes: object classes without background.
        image_size: input side or (height, width) ("300": 300; "600": 600, or
            ``keep_aspect_ratio_size(h, w)`` for TF OD API's shorter-side-600 resizer).
        bounding_box_format: format of the training boxes and of ``predict``'s.
        anchor_generator: a ``GridAnchorGenerator`` (or its kwargs).
        max_proposals: proposals kept by the first-stage NMS (300).
        first_stage_iou: first-stage NMS IoU (0.7).
        crop_size: ROI crop side (14).
        second_stage_depth: depth of Conv2d_12/13 in the second stage (1024).
        rpn_depth: RPN 3x3 conv depth (512).
        box_coder, decoder: detection pieces (``FasterRCNNBoxCoder``,
            ``DetectionDecoder`` with softmax scores, IoU 0.6, 100 / class, 300).
        rpn_minibatch / rpn_positive_fraction / second_stage_batch /
            second_stage_positive_fraction: sampling (256 / 0.5 / 64 / 0.25).
        loss_weights: dict of the four loss weights (2 / 1 / 2 / 1).
        add_groundtruth_to_proposals: ground truth joins the second-stage candidates.
        weight_decay: L2 on conv and dense kernels (slim convention; 0 = off).
        preprocessor: a ``DetectionPreprocessor`` (built from image_size and
            bounding_box_format when omitted; no SSD augmentation).
        class_names: optional names of the classes.
        invalid_boxes: "drop" (count in the ``invalid_boxes`` metric) or "raise".
        tflite_ops: build NMS and the ROI crop from TFLite builtins (export graphs).

    Training data: images plus ``{"boxes": (B, M, 4), "classes": (B, M)}`` padded
    with -1, as for ``SSD``. ``predict`` returns ``{"boxes", "classes", "scores",
    "num_detections"}``.

    Example:

    ```python
    model = faster_rcnn_mobilenet_v1(num_classes=90, image_size=300)
    model.compile(keras.optimizers.SGD(3e-4, momentum=0.9))
    model.fit(train_ds, epochs=10)
    dets = model.predict(images)
    ```
    """

    def __init__(
        self,
        backbone: keras.Model,
        num_classes: int,
        image_size: int | Sequence[int] = 300,
        bounding_box_format: str = "rel_yxyx",
        anchor_generator: GridAnchorGenerator | dict | None = None,
        max_proposals: int = FIRST_STAGE_MAX_PROPOSALS,
        first_stage_iou: float = FIRST_STAGE_NMS_IOU,
        crop_size: int = CROP_SIZE,
        second_stage_depth: int = SECOND_STAGE_DEPTH,
        rpn_depth: int = RPN_DEPTH,
        box_coder: Any = None,
        decoder: Any = None,
        rpn_minibatch: int = RPN_MINIBATCH,
        rpn_positive_fraction: float = RPN_POSITIVE_FRACTION,
        second_stage_batch: int = SECOND_STAGE_BATCH,
        second_stage_positive_fraction: float = SECOND_STAGE_POSITIVE_FRACTION,
        loss_weights: dict[str, float] | None = None,
        add_groundtruth_to_proposals: bool = True,
        weight_decay: float = 0.0,
        include_preprocessing: bool = True,
        preprocessor: DetectionPreprocessor | None = None,
        class_names: Sequence[str] | None = None,
        invalid_boxes: str = "drop",
        tflite_ops: bool = False,
        **kwargs: Any,
    ) -> None:
        check_num_classes(num_classes)
        size = as_image_size(image_size)
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"`class_names` has {len(class_names)} names for num_classes={num_classes}.")
        if invalid_boxes not in ("drop", "raise"):
            raise ValueError(f"`invalid_boxes` must be 'drop' or 'raise', got {invalid_boxes!r}.")
        for name, value in (("max_proposals", max_proposals), ("crop_size", crop_size),
                            ("second_stage_depth", second_stage_depth), ("rpn_depth", rpn_depth),
                            ("rpn_minibatch", rpn_minibatch), ("second_stage_batch", second_stage_batch)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be an int >= 1, got {value!r}.")
        for name, value in (("rpn_positive_fraction", rpn_positive_fraction),
                            ("second_stage_positive_fraction", second_stage_positive_fraction),
                            ("first_stage_iou", first_stage_iou)):
            if not 0.0 < float(value) <= 1.0:
                raise ValueError(f"`{name}` must be in (0, 1], got {value!r}.")
        weights = dict(LOSS_WEIGHTS, **(loss_weights or {}))
        if set(weights) != set(LOSS_WEIGHTS):
            raise ValueError(f"`loss_weights` keys must be among {sorted(LOSS_WEIGHTS)}, got "
                             f"{sorted(loss_weights or {})}.")
        check_backbone(backbone, "FasterRCNN", levels=(FIRST_STAGE_LEVEL,), strides={FIRST_STAGE_LEVEL: 16})
        anchor_generator = build_piece(anchor_generator, GridAnchorGenerator)
        preprocessor = preprocessor or DetectionPreprocessor(size, bounding_box_format, augment=False)
        if tuple(preprocessor.image_size) != size or preprocessor.bounding_box_format != bounding_box_format:
            raise ValueError(
                f"The preprocessor ({preprocessor.image_size}, {preprocessor.bounding_box_format!r}) "
                f"disagrees with image_size={size} / bounding_box_format={bounding_box_format!r}.")
        channels = backbone.inputs[0].shape[-1]
        if tuple(backbone.inputs[0].shape[1:3]) != size:
            backbone = backbone.with_input_shape((*size, channels))
        folded = backbone.folded_batch_norm
        box_coder = build_piece(box_coder, FasterRCNNBoxCoder)

        # ---- first stage
        inputs = keras.Input((*size, channels), name="images")
        x = preprocessing_layer()(inputs) if include_preprocessing else inputs
        extractor = keras.Model(backbone.inputs, backbone.pyramid_outputs[FIRST_STAGE_LEVEL],
                                name="feature_extractor")
        features = extractor(x)
        grid = tuple(features.shape[1:3])
        anchors = anchor_generator(size, grid)
        a = anchor_generator.num_anchors_per_location()
        init = keras.initializers.TruncatedNormal(stddev=RPN_INIT_STDDEV)
        h = layers.Conv2D(rpn_depth, 3, padding="same", activation="relu6", kernel_initializer=init,
                          name="FirstStageBoxPredictor_conv")(features)
        rpn_boxes = layers.Reshape((-1, 4), name="rpn_boxes")(
            layers.Conv2D(a * 4, 1, kernel_initializer=init, name="FirstStageBoxPredictor_BoxEncoding")(h))
        rpn_logits = layers.Reshape((-1, 2), name="rpn_objectness")(
            layers.Conv2D(a * 2, 1, kernel_initializer=init, name="FirstStageBoxPredictor_Objectness")(h))
        proposals, proposal_scores, num_proposals = ProposalLayer(
            anchors, max_proposals, first_stage_iou, tflite_ops, box_coder, name="proposals")(
                rpn_boxes, rpn_logits)

        # ---- second stage
        crops = ROICrop(crop_size, tflite_ops, name="roi_crop")(features, proposals)
        box_classifier = _box_classifier(int(features.shape[-1]), crop_size, second_stage_depth,
                                         num_classes, folded)
        class_logits, box_codes = box_classifier(crops)
        outputs = {
            "rpn_boxes": rpn_boxes,
            "rpn_objectness": rpn_logits,
            "proposals": proposals,
            "num_proposals": num_proposals,
            "classes": PerProposal(max_proposals, (num_classes + 1,), name="classes")(class_logits),
            "boxes": PerProposal(max_proposals, (num_classes, 4), name="boxes")(box_codes),
        }
        kwargs.setdefault("name", "faster_rcnn_mobilenet_v1")
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        self._init_task(backbone, preprocessor)
        # The graph uses the backbone up to conv_pw_11 only; kept untracked so its
        # conv_dw_12 ... conv_pw_13 (copied into the second stage) are not weights
        # of the detector (params, saving, training).
        self._tracker.untrack(backbone)
        object.__setattr__(self, "backbone", backbone)
        # profile(): the second stage runs once per proposal.
        box_classifier.calls_per_example = max_proposals
        self.first_stage = keras.Model(inputs, [features, rpn_boxes, rpn_logits, proposals, num_proposals],
                                       name="first_stage")
        self.extractor, self.box_classifier = extractor, box_classifier
        self.roi_crop = ROICrop(crop_size, name="train_roi_crop")
        _init_second_stage(box_classifier, backbone)

        self.num_classes = num_classes
        self.bounding_box_format = bounding_box_format
        self.anchor_generator = anchor_generator
        self.anchors = anchors
        self.inside = ((anchors[:, 0] >= 0) & (anchors[:, 1] >= 0) & (anchors[:, 2] <= 1)
                       & (anchors[:, 3] <= 1))
        if not self.inside.any():  # RPN training samples only anchors inside the image
            h_min, w_min = anchor_generator.sizes().min(0)
            raise ValueError(
                f"`image_size` {size} is too small: no anchor fits inside the image (the smallest "
                f"anchor is {h_min:.0f}x{w_min:.0f} pixels: scales {anchor_generator.scales} of "
                f"{anchor_generator.base_anchor_size:g}, centres every {anchor_generator.stride} pixels "
                "from the corner). Use images of at least 128 pixels or smaller anchor scales.")
        self.max_proposals, self.first_stage_iou, self.crop_size = max_proposals, first_stage_iou, crop_size
        self.second_stage_depth, self.rpn_depth = second_stage_depth, rpn_depth
        self.box_coder = box_coder
        self.decoder = build_piece(decoder, lambda: DetectionDecoder(
            score_threshold=0.0, iou_threshold=0.6, max_detections_per_class=100, max_detections=300,
            score_converter="softmax"))
        self.rpn_matcher = ArgMaxMatcher(0.7, 0.3, force_match_for_each_row=True)
        self.second_stage_matcher = ArgMaxMatcher(0.5, 0.5, force_match_for_each_row=False)
        self.rpn_minibatch, self.rpn_positive_fraction = rpn_minibatch, rpn_positive_fraction
        self.second_stage_batch = second_stage_batch
        self.second_stage_positive_fraction = second_stage_positive_fraction
        self.loss_weights = weights
        self.add_groundtruth_to_proposals = add_groundtruth_to_proposals
        self.weight_decay = weight_decay
        self.include_preprocessing = include_preprocessing
        self.class_names = None if class_names is None else [str(n) for n in class_names]
        self.invalid_boxes = invalid_boxes
        self.tflite_ops = tflite_ops
        self.loss_trackers = {n: keras.metrics.Mean(name=n) for n in
                              ("rpn_box", "rpn_objectness", "box", "class", "positives", "invalid_boxes")}

    # ------------------------------------------------------------------ training
    def _gt_to_normalized(self, y):
        boxes, classes, invalid = ground_truth_to_model(y, self.preprocessor, self.num_classes,
                                                        self.invalid_boxes)
        self.loss_trackers["invalid_boxes"].update_state(invalid)
        return boxes, classes

    def _detection_losses(self, x, y, training: bool):
        boxes, classes = self._gt_to_normalized(y)
        features, rpn_boxes, rpn_logits, proposals, num = self.first_stage(x, training=training)
        # First stage.
        obj, codes, sampled, pos = rpn_targets(boxes, classes, self.anchors, self.inside, self.rpn_matcher,
                                               self.box_coder, self.rpn_minibatch, self.rpn_positive_fraction)
        w = tf.cast(sampled, tf.float32)
        norm = tf.maximum(tf.reduce_sum(w, axis=1), 1.0)
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(tf.cast(obj, tf.int32), tf.cast(rpn_logits, tf.float32))
        rpn_obj = tf.reduce_mean(tf.reduce_sum(ce * w, 1) / norm)
        loc = _smooth_l1(tf.cast(rpn_boxes, tf.float32) - codes)
        rpn_box = tf.reduce_mean(tf.reduce_sum(loc * tf.cast(pos & sampled, tf.float32), 1) / norm)
        # Second stage, on the sampled proposals only.
        s_boxes, labels, s_codes, s_w, s_pos = second_stage_targets(
            proposals, num, boxes, classes, self.second_stage_matcher, self.box_coder,
            self.second_stage_batch, self.second_stage_positive_fraction, self.add_groundtruth_to_proposals)
        s_boxes = tf.stop_gradient(s_boxes)
        crops = self.roi_crop(features, s_boxes)
        logits, box_codes = self.box_classifier(crops, training=training)
        logits = tf.reshape(tf.cast(logits, tf.float32), (-1, self.second_stage_batch, self.num_classes + 1))
        box_codes = tf.reshape(tf.cast(box_codes, tf.float32), (-1, self.second_stage_batch, self.num_classes, 4))
        norm2 = tf.maximum(tf.reduce_sum(s_w, axis=1), 1.0)
        ce2 = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)
        cls = tf.reduce_mean(tf.reduce_sum(ce2 * s_w, 1) / norm2)
        own = tf.gather(box_codes, tf.maximum(labels - 1, 0), batch_dims=2)  # the gt class's codes
        box = tf.reduce_mean(tf.reduce_sum(_smooth_l1(own - s_codes) * tf.cast(s_pos, tf.float32), 1) / norm2)
        parts = {"rpn_box": rpn_box, "rpn_objectness": rpn_obj, "box": box, "class": cls}
        total = tf.add_n([self.loss_weights[k] * v for k, v in parts.items()])
        if self.weight_decay:
            total += self.weight_decay * 0.5 * tf.add_n([
                tf.reduce_sum(tf.square(tf.cast(v.kernel, tf.float32))) for v in self._decay_layers()])
        if self.losses:
            total += tf.add_n([tf.cast(v, tf.float32) for v in self.losses])
        parts["positives"] = tf.reduce_mean(tf.reduce_sum(tf.cast(s_pos, tf.float32), 1))
        return total, parts

    def _decay_layers(self):
        from mobilenet_zoo.weights_io import iter_weighted_layers

        return [layer for layer in iter_weighted_layers(self)
                if isinstance(layer, (layers.Conv2D, layers.Dense))
                and not isinstance(layer, layers.DepthwiseConv2D) and layer.kernel_regularizer is None]

    def train_step(self, data):
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            loss, parts = self._detection_losses(x, y, training=True)
            scaled = self.optimizer.scale_loss(loss) if hasattr(self.optimizer, "scale_loss") else loss
        grads = tape.gradient(scaled, self.trainable_variables)
        self.optimizer.apply(grads, self.trainable_variables)
        return self._track(loss, parts)

    def test_step(self, data):
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        loss, parts = self._detection_losses(x, y, training=False)
        return self._track(loss, parts)

    def _track(self, loss, parts):
        self._loss_tracker.update_state(loss)
        for name, value in parts.items():
            self.loss_trackers[name].update_state(value)
        return {m.name: m.result() for m in self.metrics}

    @property
    def metrics(self):
        return [self._loss_tracker] + list(self.loss_trackers.values())

    # ---------------------------------------------------------------- inference
    def postprocess(self, outputs: dict, export: bool = False) -> dict:
        """Raw outputs -> detections in ``bounding_box_format`` (padding -1): softmax
        scores, class-specific boxes decoded against the proposals, per-class NMS."""
        valid = tf.range(self.max_proposals)[None, :] < outputs["num_proposals"][:, None]
        background = tf.one_hot(0, self.num_classes + 1) * 2e4 - 1e4  # padding: certain background
        logits = tf.where(valid[..., None], tf.cast(outputs["classes"], tf.float32), background)
        dets = self.decoder(outputs["boxes"], logits, outputs["proposals"], box_coder=self.box_coder,
                            export=export)
        boxes = self.preprocessor.from_model_boxes(dets["boxes"])
        dets["boxes"] = tf.where(dets["classes"][..., None] >= 0, boxes, -1.0)
        return dets

    def serving_fn(self, batch_size: int = 1, **postprocess_kwargs: Any):
        """The exported function, on a copy of the model built from TFLite builtins."""
        model = self if self.tflite_ops else self._tflite_copy()
        return Task.serving_fn(model, batch_size, **postprocess_kwargs)

    def _tflite_copy(self) -> FasterRCNN:
        copy = type(self).from_config({**self.get_config(), "tflite_ops": True})
        copy.set_weights(self.get_weights())
        return copy

    # ---------------------------------------------------------------- config
    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({
            "num_classes": self.num_classes,
            "image_size": list(self.image_size),
            "bounding_box_format": self.bounding_box_format,
            "anchor_generator": serialize(self.anchor_generator),
            "max_proposals": self.max_proposals,
            "first_stage_iou": self.first_stage_iou,
            "crop_size": self.crop_size,
            "second_stage_depth": self.second_stage_depth,
            "rpn_depth": self.rpn_depth,
            "box_coder": serialize(self.box_coder),
            "decoder": serialize(self.decoder),
            "rpn_minibatch": self.rpn_minibatch,
            "rpn_positive_fraction": self.rpn_positive_fraction,
            "second_stage_batch": self.second_stage_batch,
            "second_stage_positive_fraction": self.second_stage_positive_fraction,
            "loss_weights": dict(self.loss_weights),
            "add_groundtruth_to_proposals": self.add_groundtruth_to_proposals,
            "weight_decay": self.weight_decay,
            "include_preprocessing": self.include_preprocessing,
            "class_names": self.class_names,
            "invalid_boxes": self.invalid_boxes,
            "tflite_ops": self.tflite_ops,
        })
        return config

    backbone_defaults = {"min_depth": MIN_DEPTH}


def _box_classifier(in_channels: int, crop_size: int, depth: int, num_classes: int, folded: bool) -> keras.Model:
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


def _init_second_stage(box_classifier: keras.Model, backbone: keras.Model) -> list[str]:
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


def keep_aspect_ratio_size(height: int, width: int, min_dimension: int = 600,
                           max_dimension: int = 1024) -> tuple[int, int]:
    """TF OD API ``keep_aspect_ratio_resizer``: the (h, w) that makes the shorter
    side ``min_dimension`` unless the longer one would pass ``max_dimension``."""
    if min(height, width) < 1 or min_dimension < 1 or max_dimension < min_dimension:
        raise ValueError(f"Need positive sizes and max_dimension >= min_dimension; got ({height}, {width}), "
                         f"{min_dimension}, {max_dimension}.")
    scale = min_dimension / min(height, width)
    if round(max(height, width) * scale) > max_dimension:
        scale = max_dimension / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def faster_rcnn_mobilenet_v1(
    num_classes: int,
    alpha: float = 1.0,
    image_size: int | Sequence[int] = 300,
    weights: str | None = "imagenet",
    **kwargs: Any,
) -> FasterRCNN:
    """The TF OD API's ``faster_rcnn_mobilenet_v1`` (paper Table 13, 300 or 600).

    Args:
        num_classes: object classes without background (COCO: 80 or 90).
        alpha: backbone width multiplier.
        image_size: 300 or 600 (or any (h, w) >= the smallest anchor, 64).
        weights: backbone initialisation: ``"imagenet"`` (default: the published
            224 ImageNet weights of ``alpha``, downloaded once for alpha != 1.0),
            a preset name, a weights file or None.
        **kwargs: other ``FasterRCNN`` arguments.

    Example:

    ```python
    model = faster_rcnn_mobilenet_v1(num_classes=90, image_size=600, weights=None)
    ```
    """
    backbone = MobileNetBackbone(alpha=alpha, min_depth=MIN_DEPTH,
                                 weights=presets.backbone_weights(weights, alpha))
    return FasterRCNN(backbone, num_classes, image_size=image_size, **kwargs)


__all__ = ["FasterRCNN", "GridAnchorGenerator", "ProposalLayer", "ROICrop", "crop_and_resize_builtin",
           "faster_rcnn_mobilenet_v1", "keep_aspect_ratio_size", "rpn_targets", "second_stage_targets",
           "sample_balanced"]
