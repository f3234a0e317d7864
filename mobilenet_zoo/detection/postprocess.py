"""Detection post-processing: one NMS, and the decoder (boxes, scores, per-class NMS).

TF OD API ``ssd_mobilenet_v1_coco.config`` ``post_processing``: score threshold
1e-8, IoU 0.6, 100 detections per class, 100 in total, sigmoid scores, boxes
clipped to the image window (``faster_rcnn_*_coco.config``: softmax scores, 300 in
total). The algorithm is the TF OD API's ``core/post_processing.py``
``batch_multiclass_non_max_suppression`` (per-class greedy NMS, then the
``max_total`` best over all classes).

``non_max_suppression`` is the one NMS of the package: the detectors' decoder,
Faster R-CNN's proposal layer and the exported graphs all call it. It has three
kernels for the same algorithm:

- ``tflite_ops=False`` on the TensorFlow backend:
  ``tf.image.combined_non_max_suppression`` (batched C++ kernel, fastest there);
- ``tflite_ops=False`` on any other backend (JAX, PyTorch): ``nms_keras_ops``,
  the same greedy algorithm in ``keras.ops`` with static shapes (a
  ``fori_loop`` of ``max_per_class`` steps over every (image, class) at once,
  as keras-hub's RetinaNet ``NonMaxSuppression`` layer does it in keras.ops);
- ``tflite_ops=True`` (export only, TensorFlow only): a loop of single-class
  ``NonMaxSuppressionV5`` ops, which convert to TFLite builtins
  (``combined_non_max_suppression`` does not), over a static batch.

Tests check the three agree. Equal scores: ``nms_keras_ops`` and the
``NonMaxSuppressionV5`` loop break ties by the lowest anchor index within a
class, then by the lowest class (then selection order) across classes.
``combined_non_max_suppression`` does not: its CPU kernel pops a
``std::priority_queue`` (heap order among equal scores) and merges the classes
with an unstable ``std::sort``, so among exactly equal scores its order (and,
for overlapping tied boxes, which box survives) is an implementation detail;
on scores without ties all three give the same detections in the same order.
Every kernel keeps a box only if its score is strictly above
``score_threshold`` and suppresses at IoU strictly above ``iou_threshold``
(as TF's kernels).

TensorFlow is imported lazily, only in the TensorFlow-only branches, so this
module runs without it.
"""

from __future__ import annotations

import warnings

import keras

ops = keras.ops


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

    TF OD API ``core/post_processing.py`` ``batch_multiclass_non_max_suppression``
    (``use_combined_nms``); see the module docstring for the kernels.

    Args:
        boxes: ``(B, N, 4)`` normalised yxyx shared by the classes, or ``(B, N, C, 4)``
            one box per class (Faster R-CNN's second stage).
        scores: ``(B, N, C)``.
        max_per_class / max_total / iou_threshold / score_threshold: as
            ``tf.image.combined_non_max_suppression`` (kept: score >
            ``score_threshold``; suppressed: IoU > ``iou_threshold``).
        clip_boxes: clip the kept boxes to [0, 1].
        tflite_ops: build it from ``NonMaxSuppressionV5`` (TFLite builtin; needs a
            static batch size; TensorFlow backend only).

    Returns:
        ``boxes (B, K, 4)``, ``scores (B, K)``, ``classes (B, K)`` int32 and ``num (B,)``
        int32, best first; entries from ``num`` on are padding (boxes and scores 0,
        classes -1).
    """
    if tflite_ops:
        if keras.backend.backend() != "tensorflow":
            raise ValueError("tflite_ops=True builds TFLite builtins and needs the TensorFlow backend "
                             f"(KERAS_BACKEND={keras.backend.backend()!r}); use tflite_ops=False.")
        import tensorflow as tf  # export-only branch

        batch = boxes.shape[0]
        if batch is None:
            raise ValueError("tflite_ops=True needs a static batch size (serving_function(batch_size=...)).")
        outs = [_nms_one_image(boxes[i], scores[i], max_per_class, max_total, iou_threshold,
                               score_threshold, clip_boxes) for i in range(batch)]
        out_boxes, out_scores, classes, num = (tf.stack([o[k] for o in outs]) for k in range(4))
    elif keras.backend.backend() == "tensorflow":
        import tensorflow as tf  # the batched C++ kernel: faster than the keras.ops loop there

        nms = tf.image.combined_non_max_suppression(
            boxes if len(boxes.shape) == 4 else boxes[:, :, None, :], scores,
            max_output_size_per_class=max_per_class, max_total_size=max_total,
            iou_threshold=iou_threshold, score_threshold=score_threshold, pad_per_class=False,
            clip_boxes=clip_boxes)
        out_boxes, out_scores, num = nms.nmsed_boxes, nms.nmsed_scores, nms.valid_detections
        classes = tf.cast(nms.nmsed_classes, tf.int32)
    else:
        return nms_keras_ops(boxes, scores, max_per_class, max_total, iou_threshold, score_threshold,
                             clip_boxes)
    return _pad(out_boxes, out_scores, classes, num, max_total)


def _pad(boxes, scores, classes, num, max_total: int):
    """The padding contract: boxes and scores 0, classes -1 from ``num`` on."""
    valid = ops.arange(max_total, dtype="int32")[None, :] < ops.cast(num, "int32")[:, None]
    return (ops.where(valid[..., None], boxes, 0.0), ops.where(valid, scores, 0.0),
            ops.where(valid, ops.cast(classes, "int32"), -1), ops.cast(num, "int32"))


def _corners(boxes):
    """(ymin, xmin, ymax, xmax, area) of boxes whose corners may come in any order, as
    TF's NMS kernels read them (``non_max_suppression_op.cc`` ``IOU``)."""
    y1, x1, y2, x2 = (boxes[..., i] for i in range(4))
    ymin, ymax = ops.minimum(y1, y2), ops.maximum(y1, y2)
    xmin, xmax = ops.minimum(x1, x2), ops.maximum(x1, x2)
    return ymin, xmin, ymax, xmax, (ymax - ymin) * (xmax - xmin)


def _iou_against(chosen, corners):
    """IoU of ``chosen`` ``(..., 1, 4)`` with boxes given by ``corners`` ``(..., N)``:
    TF's kernel formula (0 when either area is <= 0)."""
    cy1, cx1, cy2, cx2, carea = _corners(chosen)
    ymin, xmin, ymax, xmax, area = corners
    inter = (ops.maximum(ops.minimum(cy2, ymax) - ops.maximum(cy1, ymin), 0.0)
             * ops.maximum(ops.minimum(cx2, xmax) - ops.maximum(cx1, xmin), 0.0))
    union = carea + area - inter
    positive = (carea > 0) & (area > 0)
    return ops.where(positive, inter / ops.where(positive, union, 1.0), 0.0)


def nms_keras_ops(boxes, scores, max_per_class: int, max_total: int, iou_threshold: float,
                  score_threshold: float, clip_boxes: bool = False):
    """``non_max_suppression`` in ``keras.ops`` only (any backend; static shapes, jit-able).

    Exact greedy per-class NMS (TF OD API ``core/post_processing.py``
    ``multiclass_non_max_suppression``; TF's ``CombinedNonMaxSuppression`` kernel):
    for every (image, class) at once, ``min(max_per_class, N)`` steps each take
    the remaining box of highest score (lowest index on ties), keep it if its
    score is above ``score_threshold``, and drop the boxes of IoU above
    ``iou_threshold`` with it. The kept boxes of all classes are then ranked by
    score (ties: lowest class, then selection order) and the ``max_total`` best
    returned. Same arguments, return values and padding as
    ``non_max_suppression(tflite_ops=False)``.
    """
    boxes = ops.cast(ops.convert_to_tensor(boxes), "float32")
    scores = ops.cast(ops.convert_to_tensor(scores), "float32")
    per_class_boxes = len(boxes.shape) == 4
    num_boxes, num_classes = scores.shape[1], scores.shape[2]
    if num_boxes is None or num_classes is None:
        raise ValueError(f"The keras.ops NMS needs static numbers of boxes and classes, got scores "
                         f"{tuple(scores.shape)}.")
    steps = min(int(max_per_class), num_boxes)
    # (B, C or 1, N, 4): per-class boxes, or the shared ones broadcast over the classes.
    class_boxes = ops.transpose(boxes, (0, 2, 1, 3)) if per_class_boxes else boxes[:, None]
    corners = _corners(class_boxes)
    neg_inf = float("-inf")
    live = ops.transpose(scores, (0, 2, 1))  # (B, C, N); -inf: not (or no longer) a candidate
    live = ops.where(live > score_threshold, live, neg_inf)
    slot_ids = ops.arange(steps, dtype="int32")
    box_ids = ops.arange(num_boxes, dtype="int32")
    # (B, C, steps): the box picked at each step and its score (-inf: none left); every
    # slot is written by its step.
    picked_index = ops.zeros_like(live[..., :1], dtype="int32") + ops.zeros((steps,), "int32")
    picked_score = ops.zeros_like(live[..., :1]) + ops.zeros((steps,), "float32")

    def step(k, carry):
        live, picked_index, picked_score = carry
        best = ops.cast(ops.argmax(live, axis=-1), "int32")[..., None]  # (B, C, 1); ties: lowest
        best_score = ops.take_along_axis(live, best, axis=-1)  # -inf: nothing left to pick
        if per_class_boxes:
            chosen = _gather_boxes(class_boxes, best)  # (B, C, 1, 4)
        else:
            chosen = _gather_boxes(boxes, best[..., 0])[:, :, None]
        suppressed = (_iou_against(chosen, corners) > iou_threshold) | (box_ids == best)
        live = ops.where(suppressed, neg_inf, live)
        here = slot_ids == k
        picked_index = ops.where(here, best, picked_index)
        picked_score = ops.where(here, best_score, picked_score)
        return live, picked_index, picked_score

    _, picked_index, picked_score = ops.fori_loop(0, steps, step, (live, picked_index, picked_score))

    # Every class's picks, class-major (C * steps), then the max_total best.
    candidates = num_classes * steps
    flat_score = ops.reshape(picked_score, (-1, candidates))
    flat_index = ops.reshape(picked_index, (-1, candidates))
    if candidates < max_total:  # fewer candidates than output slots: pad statically
        flat_score = ops.pad(flat_score, [[0, 0], [0, max_total - candidates]],
                             constant_values=neg_inf)
        flat_index = ops.pad(flat_index, [[0, 0], [0, max_total - candidates]])
    # Stable descending order (every backend's argsort is stable): ties keep the
    # class-major order. The padding slots (-inf) come last.
    order = ops.argsort(-flat_score, axis=-1)[:, :max_total]
    top_score = ops.take_along_axis(flat_score, order, axis=-1)
    top_class = ops.minimum(order // steps, num_classes - 1)  # padding slots: masked below
    top_box = ops.take_along_axis(flat_index, order, axis=-1)
    if per_class_boxes:  # the box of (anchor n, class c) is row n * C + c of (B, N * C, 4)
        out_boxes = _gather_boxes(ops.reshape(boxes, (-1, num_boxes * num_classes, 4)),
                                  top_box * num_classes + top_class)
    else:
        out_boxes = _gather_boxes(boxes, top_box)
    if clip_boxes:
        out_boxes = ops.clip(out_boxes, 0.0, 1.0)
    num = ops.sum(ops.cast(top_score > neg_inf, "int32"), axis=-1)
    return _pad(out_boxes, top_score, top_class, num, max_total)


def _gather_boxes(source, index):
    """``source (..., N, 4)`` at ``index (..., K)`` (same leading dims) -> ``(..., K, 4)``."""
    return ops.take_along_axis(source, ops.repeat(index[..., None], 4, axis=-1), axis=-2)


def _nms_one_image(boxes, scores, per_class, k_total, iou_threshold, score_threshold, clip_boxes):
    """One image of ``non_max_suppression(tflite_ops=True)``: static shapes throughout
    (TensorFlow only: ``tf.raw_ops.NonMaxSuppressionV5`` per class, as TF OD API
    ``core/post_processing.py`` ``multiclass_non_max_suppression`` with
    ``pad_to_max_output_size``)."""
    import tensorflow as tf  # export-only branch

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
        """Decoded boxes (B, N, 4) and per-class scores (B, N, C), background dropped
        (TF OD API ``builders/post_processing_builder.py`` score converters)."""
        codes = ops.cast(box_codes, "float32")
        if len(codes.shape) == 4:  # one box per class: decode each against its anchor
            anchors = anchors[..., None, :]
        boxes = box_coder.decode(codes, anchors)
        logits = ops.cast(class_logits, "float32")
        scores = ops.sigmoid(logits) if self.score_converter == "sigmoid" else ops.softmax(logits, axis=-1)
        return boxes, scores[..., 1:]  # drop background

    def call(self, box_codes, class_logits, anchors, box_coder, tflite_ops: bool = False,
             export: bool | None = None) -> dict:
        tflite_ops = tflite_ops_argument(tflite_ops, export, "DetectionDecoder")
        boxes, scores = self.scores_and_boxes(box_codes, class_logits, ops.cast(anchors, "float32"),
                                              box_coder)
        boxes, scores, classes, num = non_max_suppression(
            boxes, scores, self.max_detections_per_class, self.max_detections, self.iou_threshold,
            self.score_threshold, clip_boxes=True, tflite_ops=tflite_ops)
        return {"boxes": ops.where(classes[..., None] >= 0, boxes, -1.0), "scores": scores,
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
