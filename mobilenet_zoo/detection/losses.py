"""Detection losses: SSD's (sigmoid + smooth L1 with hard negative mining) and
Faster R-CNN's two stages (softmax + smooth L1 on sampled anchors / proposals).


TF OD API ``ssd_mobilenet_v1_coco.config``: ``weighted_sigmoid`` classification
over ``num_classes + 1`` outputs (background at 0), ``weighted_smooth_l1``
localisation, ``hard_example_miner`` (classification loss, at most 3 negatives
per positive), both weights 1, normalised by the number of matches.

One simplification, stated: the TF OD API miner (``core/losses.py``
``HardExampleMiner``) runs NMS at IoU 0.99 over the 3000 hardest boxes before
picking negatives, which only removes near-duplicate decoded boxes; we rank
negatives by loss directly (top 3 x positives per image; no NMS in the miner).
``FocalLoss`` is the swap-in alternative (RetinaNet, no mining).

Everything here is ``keras.ops`` (any backend; no TensorFlow import).

Faster R-CNN (TF OD API ``faster_rcnn_meta_arch``, ``faster_rcnn_*_coco.config``):
each stage is ``sampled_losses``, softmax cross-entropy on the sampled anchors
(RPN: objectness) or proposals (second stage: num_classes + 1) plus the same
``smooth_l1`` on the sampled positives, normalised per image by the sample count.
"""

from __future__ import annotations

import keras

from mobilenet_zoo.detection.matcher import NEGATIVE
from mobilenet_zoo.utils import ConfigMixin

ops = keras.ops


def build_targets(matches, gt_boxes, gt_classes, anchors, box_coder, num_classes: int):
    """Box codes, one-hot class targets and anchor masks from ``matches``
    (TF OD API ``core/target_assigner.py`` ``TargetAssigner.assign``, batched).

    Returns ``box_targets (B, N, 4)``, ``class_targets (B, N, C + 1)`` (background
    one-hot for negatives), ``positive (B, N)`` and ``negative (B, N)`` bool.
    """
    matches = ops.cast(matches, "int32")
    positive = matches >= 0
    negative = matches == NEGATIVE
    safe = ops.maximum(matches, 0)  # (B, N): index of the matched ground truth
    gt_boxes = ops.cast(gt_boxes, "float32")
    matched_boxes = ops.take_along_axis(gt_boxes, ops.repeat(safe[..., None], 4, axis=-1), axis=1)
    box_targets = box_coder.encode(matched_boxes, anchors)
    box_targets = ops.where(positive[..., None], box_targets, 0.0)
    labels = ops.take_along_axis(ops.cast(gt_classes, "int32"), safe, axis=1) + 1
    labels = ops.where(positive, labels, 0)
    class_targets = ops.one_hot(labels, num_classes + 1, dtype="float32")
    return box_targets, class_targets, positive, negative


def smooth_l1(pred, target, delta: float = 1.0):
    """Huber / smooth L1 summed over the 4 box codes (TF OD API ``weighted_smooth_l1``;
    the one of both detectors)."""
    diff = keras.ops.abs(pred - target)
    per_coord = keras.ops.where(diff < delta, 0.5 * diff * diff / delta, diff - 0.5 * delta)
    return keras.ops.sum(per_coord, axis=-1)


def sampled_losses(logits, labels, box_pred, box_targets, sampled, positive):
    """One Faster R-CNN stage's (classification, localisation) losses.

    Softmax cross-entropy over the ``sampled`` entries and ``smooth_l1`` over the
    ``positive`` ones, each summed per image, divided by that image's number of
    samples (at least 1) and averaged over the batch (TF OD API
    ``faster_rcnn_meta_arch._loss_rpn`` / ``_loss_box_classifier`` with
    ``normalize_by_num_examples``).

    Args:
        logits: (B, N, K) class logits (K = 2 for the RPN's objectness).
        labels: (B, N) int targets in [0, K).
        box_pred / box_targets: (B, N, 4) box codes.
        sampled: (B, N) bool or {0, 1} weights; positive: (B, N) bool, within sampled.
    """
    ops = keras.ops
    weights = ops.cast(sampled, "float32")
    norm = ops.maximum(ops.sum(weights, axis=1), 1.0)
    ce = ops.sparse_categorical_crossentropy(ops.cast(labels, "int32"), ops.cast(logits, "float32"),
                                             from_logits=True)
    classification = ops.mean(ops.sum(ce * weights, axis=1) / norm)
    loc = smooth_l1(ops.cast(box_pred, "float32"), box_targets) * ops.cast(positive, "float32")
    return classification, ops.mean(ops.sum(loc, axis=1) / norm)


def sigmoid_cross_entropy_with_logits(labels, logits):
    """``tf.nn.sigmoid_cross_entropy_with_logits`` in keras.ops, the same stable formula
    ``max(x, 0) - x * z + log(1 + exp(-|x|))`` written as TF writes it (``where`` on
    ``x >= 0``, so the gradient at ``x = 0`` is TF's ``sigmoid(0) - z``), the loss of
    TF OD API ``core/losses.py`` ``WeightedSigmoidClassificationLoss``."""
    nonneg = logits >= 0
    relu_logits = ops.where(nonneg, logits, ops.zeros_like(logits))
    neg_abs_logits = ops.where(nonneg, -logits, logits)
    return relu_logits - logits * labels + ops.log1p(ops.exp(neg_abs_logits))


def hard_negative_mask(cls_loss, positive, negative, neg_pos_ratio: float, min_negatives: int = 0):
    """Per image, the ``neg_pos_ratio * num_positives`` negatives of highest loss
    (at least ``min_negatives``); equal losses: the lowest anchor index first.

    TF OD API ``core/losses.py`` ``HardExampleMiner`` (``loss_type:
    CLASSIFICATION``, ``max_negatives_per_positive``, ``min_negatives_per_image``),
    without its IoU-0.99 NMS (module docstring).
    """
    num_pos = ops.sum(ops.cast(positive, "int32"), axis=1, keepdims=True)
    k = ops.maximum(ops.cast(ops.cast(num_pos, "float32") * neg_pos_ratio, "int32"), min_negatives)
    neg_loss = ops.where(negative, ops.cast(cls_loss, "float32"), -1.0)
    order = ops.argsort(-neg_loss, axis=1)  # descending; stable on every backend
    rank = ops.argsort(order, axis=1)
    return negative & (rank < k)


@keras.saving.register_keras_serializable(package="mobilenet_zoo")
class SSDLoss(ConfigMixin):
    """Sigmoid classification + smooth L1 with hard negative mining.

    TF OD API ``meta_architectures/ssd_meta_arch.py`` ``SSDMetaArch.loss`` with
    ``core/losses.py`` ``WeightedSigmoidClassificationLoss``,
    ``WeightedSmoothL1LocalizationLoss`` and ``HardExampleMiner``.

    Args:
        neg_pos_ratio: negatives kept per positive (config: 3).
        min_negatives_per_image: negatives kept in images without positives
            (config: 0).
        classification_weight / localization_weight: config: 1 and 1.

    ``__call__(box_pred, cls_pred, box_targets, class_targets, positive,
    negative)`` returns ``(total, {"cls_loss", "box_loss", "num_matches"})``,
    every term summed over the batch and divided by the number of matches.
    """

    def __init__(
        self,
        neg_pos_ratio: float = 3.0,
        min_negatives_per_image: int = 0,
        classification_weight: float = 1.0,
        localization_weight: float = 1.0,
    ) -> None:
        if neg_pos_ratio <= 0:
            raise ValueError(f"`neg_pos_ratio` must be > 0, got {neg_pos_ratio}.")
        self.neg_pos_ratio = neg_pos_ratio
        self.min_negatives_per_image = min_negatives_per_image
        self.classification_weight = classification_weight
        self.localization_weight = localization_weight

    def classification_loss(self, cls_pred, class_targets):
        per_class = sigmoid_cross_entropy_with_logits(ops.cast(class_targets, "float32"), cls_pred)
        return ops.sum(per_class, axis=-1)

    def __call__(self, box_pred, cls_pred, box_targets, class_targets, positive, negative):
        cls_pred = ops.cast(cls_pred, "float32")
        box_pred = ops.cast(box_pred, "float32")
        positive = ops.cast(positive, "bool")
        negative = ops.cast(negative, "bool")
        cls_loss = self.classification_loss(cls_pred, class_targets)
        selected = positive | hard_negative_mask(
            ops.stop_gradient(cls_loss), positive, negative, self.neg_pos_ratio,
            self.min_negatives_per_image,
        )
        box_loss = smooth_l1(box_pred, ops.cast(box_targets, "float32"))
        num_matches = ops.sum(ops.cast(positive, "float32"))
        norm = ops.maximum(num_matches, 1.0)
        cls_total = ops.sum(ops.where(selected, cls_loss, 0.0)) / norm
        box_total = ops.sum(ops.where(positive, box_loss, 0.0)) / norm
        total = self.classification_weight * cls_total + self.localization_weight * box_total
        return total, {"cls_loss": cls_total, "box_loss": box_total, "num_matches": num_matches}

    def get_config(self) -> dict:
        return {
            "neg_pos_ratio": self.neg_pos_ratio,
            "min_negatives_per_image": self.min_negatives_per_image,
            "classification_weight": self.classification_weight,
            "localization_weight": self.localization_weight,
        }


@keras.saving.register_keras_serializable(package="mobilenet_zoo")
class FocalLoss(SSDLoss):
    """Sigmoid focal loss over every anchor (RetinaNet: alpha 0.25, gamma 2), no mining
    (TF OD API ``core/losses.py`` ``SigmoidFocalClassificationLoss``)."""

    def __init__(self, alpha: float = 0.25, gamma: float = 2.0, localization_weight: float = 1.0):
        super().__init__(localization_weight=localization_weight)
        self.alpha = alpha
        self.gamma = gamma

    def classification_loss(self, cls_pred, class_targets):
        class_targets = ops.cast(class_targets, "float32")
        ce = sigmoid_cross_entropy_with_logits(class_targets, cls_pred)
        p = ops.sigmoid(cls_pred)
        p_t = class_targets * p + (1 - class_targets) * (1 - p)
        alpha_t = class_targets * self.alpha + (1 - class_targets) * (1 - self.alpha)
        return ops.sum(alpha_t * ops.power(1 - p_t, self.gamma) * ce, axis=-1)

    def __call__(self, box_pred, cls_pred, box_targets, class_targets, positive, negative):
        cls_pred = ops.cast(cls_pred, "float32")
        positive = ops.cast(positive, "bool")
        negative = ops.cast(negative, "bool")
        cls_loss = self.classification_loss(cls_pred, class_targets)
        num_matches = ops.sum(ops.cast(positive, "float32"))
        norm = ops.maximum(num_matches, 1.0)
        cls_total = ops.sum(ops.where(positive | negative, cls_loss, 0.0)) / norm
        box_loss = smooth_l1(ops.cast(box_pred, "float32"), ops.cast(box_targets, "float32"))
        box_total = ops.sum(ops.where(positive, box_loss, 0.0)) / norm
        total = cls_total + self.localization_weight * box_total
        return total, {"cls_loss": cls_total, "box_loss": box_total, "num_matches": num_matches}

    def get_config(self) -> dict:
        return {"alpha": self.alpha, "gamma": self.gamma,
                "localization_weight": self.localization_weight}
