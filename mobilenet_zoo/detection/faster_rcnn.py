"""Faster R-CNN with a MobileNet backbone, as the TF Object Detection API builds it.

The paper's Table 13 rows "Faster-RCNN 300 / 600 MobileNet" (Howard et al. 2017
s.4.7): TF OD API ``faster_rcnn_mobilenet_v1_feature_extractor.py`` with the
settings of its ``faster_rcnn_*_coco.config`` samples. This module only
assembles, as torchvision's ``models/detection/faster_rcnn.py`` does; the pieces:

- ``anchors.GridAnchorGenerator``: stride 16, scales 0.25 / 0.5 / 1 / 2 of a
  256-pixel base, aspect ratios 0.5 / 1 / 2;
- ``rpn``: on MobileNet v1 up to ``conv_pw_11`` (stride 16, min_depth 16), a 3x3
  conv (512) then 1x1 objectness (2-way softmax) and box convs; the RPN targets
  and the balanced sampler (``keras.random``, seeded by the detector's
  ``keras.random.SeedGenerator``, so training runs on JAX's stateless steps too);
- ``roi``: proposals by NMS (IoU 0.7, 300 kept), ``crop_and_resize`` of each to
  14x14 (no max-pool: the paper's 25.2B mult-adds need the full crop), the second
  stage (``Conv2d_12`` / ``Conv2d_13`` separable layers at depth 1024 whatever
  alpha, initialised from the backbone's where shapes allow, pooling, class logits
  and per-class box codes) and its targets;
- ``losses.sampled_losses`` for both stages; ``postprocess.DetectionDecoder``
  (softmax, per-class NMS IoU 0.6, 100 per class, 300 in total).

The detector is a functional Keras model ``images -> raw outputs``; ``postprocess``
decodes them, so ``predict``, SavedModel and TFLite share one path. In training
(``fit``) the model runs the first stage only, and ``compute_loss`` runs the
second stage on the sampled proposals. All of it is ``keras.ops``: the detector
builds, trains and predicts on the TensorFlow, JAX and PyTorch backends.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import keras

from mobilenet_zoo.backbone import check_backbone
from mobilenet_zoo.detection.anchors import GridAnchorGenerator
from mobilenet_zoo.detection.detector import Detector
from mobilenet_zoo.detection.losses import sampled_losses
from mobilenet_zoo.detection.matcher import ArgMaxMatcher
from mobilenet_zoo.detection.postprocess import DetectionDecoder
from mobilenet_zoo.detection.preprocessor import keep_aspect_ratio_size  # noqa: F401  (its old home)
from mobilenet_zoo.detection.roi import (
    PerProposal,
    ProposalLayer,
    ROICrop,
    box_classifier,
    class_box_codes,
    init_from_backbone,
    second_stage_targets,
)
from mobilenet_zoo.detection.rpn import BalancedSampler, inside_image, rpn_head, rpn_targets
from mobilenet_zoo.hub.tasks import register_task
from mobilenet_zoo.preprocessing import preprocessing_layer
from mobilenet_zoo.utils import build_piece, check_int

# faster_rcnn_mobilenet_v1_feature_extractor.py: first stage to Conv2d_11_pointwise (stride 16).
FIRST_STAGE_LEVEL = "P4"
MIN_DEPTH = 16  # the feature extractor's min_depth
RPN_INIT_STDDEV = 0.01  # first_stage_box_predictor_conv_hyperparams: truncated_normal stddev 0.01
# Loss weights: first_stage_localization / objectness, second_stage localization / classification.
LOSS_WEIGHTS = {"rpn_box": 2.0, "rpn_objectness": 1.0, "box": 2.0, "class": 1.0}
# second_stage_post_processing: softmax scores, score threshold 0, IoU 0.6, 100 per class, 300 in total.
FRCNN_DECODER = functools.partial(DetectionDecoder, score_threshold=0.0, iou_threshold=0.6,
                                  max_detections_per_class=100, max_detections=300,
                                  score_converter="softmax")


@register_task()
@keras.saving.register_keras_serializable(package="mobilenet_zoo")
class FasterRCNN(Detector):
    """Two-stage detector on a MobileNet backbone (paper Table 13).

    Args:
        backbone: a ``MobileNetBackbone`` with a stride-16 ``P4`` level
            (``conv_pw_11``); its conv_dw_12 ... conv_pw_13 weights initialise the
            second stage where their shapes fit.
        num_classes: object classes without background.
        image_size: input side or (height, width) ("300": 300; "600": 600, or
            ``keep_aspect_ratio_size(h, w)`` for TF OD API's shorter-side-600 resizer).
        bounding_box_format: format of the training boxes and of ``predict``'s.
        anchor_generator, rpn_depth, rpn_matcher, rpn_sampler, proposal_layer: the
            first stage (RPN).
        roi_crop, box_depth, box_matcher, box_sampler, add_groundtruth_to_proposals:
            the second stage (box classifier).
        box_coder, decoder, loss_weights (dict of the four terms), weight_decay (L2
            on conv and dense kernels, slim convention): both stages.
        preprocessor: a ``DetectionPreprocessor`` (built from image_size and
            bounding_box_format when omitted; no SSD augmentation).
        class_names / invalid_boxes / include_preprocessing / resize_mode: as ``SSD``.
        tflite_ops: build NMS and the ROI crop from TFLite builtins (export graphs).

    Every piece is an object or a dict of its arguments (``proposal_layer={
    "max_proposals": 50}``); defaults are the TF OD API config's (see ``__init__``).
    Training data and ``predict``'s results are ``SSD``'s.

    Example:

    ```python
    model = faster_rcnn_mobilenet_v1(num_classes=90, image_size=300)
    model.compile(keras.optimizers.SGD(3e-4, momentum=0.9))
    model.fit(train_ds, epochs=10)
    dets = model.predict(images)
    ```
    """

    loss_names = ("rpn_box", "rpn_objectness", "box", "class", "positives")
    config_attributes = ("anchor_generator", "rpn_depth", "rpn_matcher", "rpn_sampler", "proposal_layer",
                         "roi_crop", "box_depth", "box_matcher", "box_sampler",
                         "add_groundtruth_to_proposals", "loss_weights", "tflite_ops")
    renamed_kwargs = {  # the arguments before the pieces (deprecated)
        "max_proposals": ("proposal_layer", "max_proposals"),
        "first_stage_iou": ("proposal_layer", "iou_threshold"),
        "rpn_minibatch": ("rpn_sampler", "size"),
        "rpn_positive_fraction": ("rpn_sampler", "positive_fraction"),
        "crop_size": ("roi_crop", "crop_size"),
        "second_stage_depth": ("box_depth", None),
        "second_stage_batch": ("box_sampler", "size"),
        "second_stage_positive_fraction": ("box_sampler", "positive_fraction"),
    }
    backbone_defaults = {"min_depth": MIN_DEPTH}

    def __init__(
        self,
        backbone: keras.Model,
        num_classes: int,
        image_size: int | Sequence[int] = 300,  # Table 13: 300 or 600
        bounding_box_format: str = "rel_yxyx",
        # First stage. grid_anchor_generator: scales (0.25, 0.5, 1, 2), ratios (0.5, 1, 2), stride 16.
        anchor_generator: GridAnchorGenerator | dict | None = None,
        rpn_depth: int = 512,  # first_stage_box_predictor_depth
        # first_stage_positive_overlap_threshold 0.7, negative 0.3, every box matched.
        rpn_matcher: ArgMaxMatcher | dict | None = None,
        # first_stage_minibatch_size 256, first_stage_positive_balance_fraction 0.5.
        rpn_sampler: BalancedSampler | dict | None = None,
        # first_stage_nms_iou_threshold 0.7, first_stage_max_proposals 300, score threshold 0.
        proposal_layer: ProposalLayer | dict | None = None,
        # Second stage. initial_crop_size 14 (maxpool_kernel_size dropped: module docstring).
        roi_crop: ROICrop | dict | None = None,
        box_depth: int = 1024,  # the feature extractor's Conv2d_12/13 depth, not scaled by alpha
        # second-stage target assigner: IoU 0.5, no forced match (target_assigner.py).
        box_matcher: ArgMaxMatcher | dict | None = None,
        # second_stage_batch_size 64, second_stage_balance_fraction 0.25.
        box_sampler: BalancedSampler | dict | None = None,
        add_groundtruth_to_proposals: bool = True,  # torchvision roi_heads.add_gt_proposals
        # Both stages. faster_rcnn_box_coder (10, 10, 5, 5).
        box_coder: Any = None,
        decoder: DetectionDecoder | dict | None = None,  # FRCNN_DECODER
        loss_weights: dict[str, float] | None = None,  # LOSS_WEIGHTS: 2 / 1 / 2 / 1
        weight_decay: float = 0.0,  # box predictors' l2_regularizer weight 0
        include_preprocessing: bool = True,
        preprocessor: Any = None,
        class_names: Sequence[str] | None = None,
        invalid_boxes: str = "drop",
        tflite_ops: bool = False,
        resize_mode: str | None = None,  # "stretch" (None: the preprocessor's); see SSD
        **kwargs: Any,
    ) -> None:
        given = {"proposal_layer": proposal_layer, "roi_crop": roi_crop, "rpn_sampler": rpn_sampler,
                 "box_sampler": box_sampler, "box_depth": box_depth}
        kwargs = self.upgrade_kwargs({**given, **kwargs})
        proposal_layer, roi_crop, rpn_sampler, box_sampler, box_depth = (kwargs.pop(k) for k in given)
        size, common = self.detector_inputs(
            "FasterRCNN", num_classes, image_size, bounding_box_format, preprocessor, class_names, invalid_boxes,
            weight_decay, include_preprocessing, box_coder, build_piece(decoder, FRCNN_DECODER), augment=False,
            resize_mode=resize_mode)
        check_int("rpn_depth", rpn_depth)
        check_int("box_depth", box_depth)
        weights = dict(LOSS_WEIGHTS, **(loss_weights or {}))
        if set(weights) != set(LOSS_WEIGHTS):
            raise ValueError(f"`loss_weights` keys must be among {sorted(LOSS_WEIGHTS)}, got "
                             f"{sorted(loss_weights or {})}.")
        check_backbone(backbone, "FasterRCNN", levels=(FIRST_STAGE_LEVEL,), strides={FIRST_STAGE_LEVEL: 16})
        anchor_generator = build_piece(anchor_generator, GridAnchorGenerator)
        rpn_matcher = build_piece(rpn_matcher, functools.partial(
            ArgMaxMatcher, matched_threshold=0.7, unmatched_threshold=0.3, force_match_for_each_row=True))
        rpn_sampler = build_piece(rpn_sampler, BalancedSampler)
        proposal_layer = build_piece(proposal_layer, functools.partial(ProposalLayer, name="proposals"))
        roi_crop = build_piece(roi_crop, functools.partial(ROICrop, name="roi_crop"))
        box_matcher = build_piece(box_matcher, functools.partial(
            ArgMaxMatcher, matched_threshold=0.5, unmatched_threshold=0.5, force_match_for_each_row=False))
        box_sampler = build_piece(box_sampler, functools.partial(BalancedSampler, size=64,
                                                                 positive_fraction=0.25))
        box_coder = common["box_coder"]
        channels = backbone.inputs[0].shape[-1]
        if tuple(backbone.inputs[0].shape[1:3]) != size:
            backbone = backbone.with_input_shape((*size, channels))

        # ---- first stage
        inputs = keras.Input((*size, channels), name="images")
        x = preprocessing_layer()(inputs) if include_preprocessing else inputs
        extractor = keras.Model(backbone.inputs, backbone.pyramid_outputs[FIRST_STAGE_LEVEL],
                                name="feature_extractor")
        features = extractor(x)
        anchors = anchor_generator(size, tuple(features.shape[1:3]))
        inside = inside_image(anchors)
        if not inside.any():  # RPN training samples only anchors inside the image
            h_min, w_min = anchor_generator.sizes().min(0)
            raise ValueError(
                f"`image_size` {size} is too small: no anchor fits inside the image (the smallest "
                f"anchor is {h_min:.0f}x{w_min:.0f} pixels: scales {anchor_generator.scales} of "
                f"{anchor_generator.base_anchor_size:g}, centres every {anchor_generator.stride} pixels "
                "from the corner). Use images of at least 128 pixels or smaller anchor scales.")
        rpn_boxes, rpn_logits = rpn_head(features, anchor_generator.num_anchors_per_location(), rpn_depth,
                                         RPN_INIT_STDDEV)
        proposal_layer.tflite_ops = roi_crop.tflite_ops = bool(tflite_ops)
        proposals, _, num_proposals = proposal_layer.bind(anchors, box_coder)(rpn_boxes, rpn_logits)
        first = {"features": features, "rpn_boxes": rpn_boxes, "rpn_objectness": rpn_logits,
                 "proposals": proposals, "num_proposals": num_proposals}

        # ---- second stage
        classifier = box_classifier(int(features.shape[-1]), roi_crop.crop_size, box_depth, num_classes,
                                    backbone.folded_batch_norm)
        class_logits, box_codes = classifier(roi_crop(features, proposals))
        per_image = proposal_layer.max_proposals
        outputs = {**first,
                   "classes": PerProposal(per_image, (num_classes + 1,), name="classes")(class_logits),
                   "boxes": PerProposal(per_image, (num_classes, 4), name="boxes")(box_codes)}
        kwargs.setdefault("name", "faster_rcnn_mobilenet_v1")
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        # The graph uses the backbone up to conv_pw_11 only: untracked, so its
        # conv_dw_12 ... conv_pw_13 (copied into the second stage) are not weights
        # of the detector (params, saving, training).
        self._init_detector(backbone, common, track_backbone=False)
        classifier.calls_per_example = per_image  # profile(): the second stage runs once per proposal
        init_from_backbone(classifier, backbone)
        self.first_stage = keras.Model(inputs, first, name="first_stage")
        self.extractor, self.box_classifier = extractor, classifier
        self.anchor_generator, self.anchors, self.inside = anchor_generator, anchors, inside
        self.rpn_depth, self.rpn_matcher, self.rpn_sampler = rpn_depth, rpn_matcher, rpn_sampler
        self.proposal_layer, self.roi_crop, self.box_depth = proposal_layer, roi_crop, box_depth
        self.box_matcher, self.box_sampler = box_matcher, box_sampler
        self.add_groundtruth_to_proposals = add_groundtruth_to_proposals
        self.loss_weights = weights
        self.tflite_ops = bool(tflite_ops)
        # The samplers' randomness: model state (a non-trainable variable), so the JAX
        # trainer threads it through its stateless steps; seeded by keras.utils.set_random_seed.
        self.sampler_seed = keras.random.SeedGenerator(name="sampler_seed")

    @property
    def max_proposals(self) -> int:
        return self.proposal_layer.max_proposals

    def call(self, inputs: Any, training: bool | None = None, mask: Any = None) -> dict[str, Any]:
        if training:  # fit: the first stage; compute_loss runs the second on the sampled proposals
            return self.first_stage(inputs, training=True)
        return super().call(inputs, training=training, mask=mask)

    # ------------------------------------------------------------------ training
    def detection_losses(self, y: dict, y_pred: dict, training: bool) -> tuple[Any, dict[str, Any]]:
        """TF OD API ``faster_rcnn_meta_arch.loss``: ``_loss_rpn`` on the sampled anchors,
        ``_loss_box_classifier`` on the sampled proposals (``second_stage_targets``)."""
        boxes, classes = self.ground_truth(y)
        objectness, codes, sampled, positive = rpn_targets(
            boxes, classes, self.anchors, self.inside, self.rpn_matcher, self.box_coder, self.rpn_sampler,
            seed=self.sampler_seed)
        rpn_objectness, rpn_box = sampled_losses(y_pred["rpn_objectness"], objectness, y_pred["rpn_boxes"],
                                                 codes, sampled, positive & sampled)
        s_boxes, labels, s_codes, s_weights, s_positive = second_stage_targets(
            y_pred["proposals"], y_pred["num_proposals"], boxes, classes, self.box_matcher,
            self.box_coder, self.box_sampler, self.add_groundtruth_to_proposals, seed=self.sampler_seed)
        ops = keras.ops
        crops = self.roi_crop(y_pred["features"], ops.stop_gradient(s_boxes))
        logits, box_codes = self.box_classifier(crops, training=training)
        n = self.box_sampler.size
        logits = ops.reshape(logits, (-1, n, self.num_classes + 1))
        box_codes = ops.reshape(box_codes, (-1, n, self.num_classes, 4))
        cls, box = sampled_losses(logits, labels, class_box_codes(box_codes, labels), s_codes, s_weights,
                                  s_positive)
        parts = {"rpn_box": rpn_box, "rpn_objectness": rpn_objectness, "box": box, "class": cls}
        total = sum(self.loss_weights[k] * v for k, v in parts.items())
        parts["positives"] = ops.mean(ops.sum(ops.cast(s_positive, "float32"), axis=1))
        return total, parts

    # ---------------------------------------------------------------- inference
    def decode(self, outputs: dict, tflite_ops: bool) -> dict:
        """Softmax scores, class-specific boxes decoded against the proposals, per-class NMS;
        padding proposals (after ``num_proposals``) are certain background."""
        ops = keras.ops
        valid = ops.arange(self.max_proposals)[None, :] < outputs["num_proposals"][:, None]
        background = ops.one_hot(0, self.num_classes + 1) * 2e4 - 1e4
        logits = ops.where(valid[..., None], ops.cast(outputs["classes"], "float32"), background)
        return self.decoder(outputs["boxes"], logits, outputs["proposals"], box_coder=self.box_coder,
                            tflite_ops=tflite_ops)

    def tflite_model(self) -> FasterRCNN:
        if self.tflite_ops:
            return self
        copy = type(self).from_config({**self.get_config(), "tflite_ops": True})
        copy.set_weights(self.get_weights())
        return copy


def faster_rcnn_mobilenet_v1(num_classes: int, alpha: float = 1.0, image_size: int | Sequence[int] = 300,
                             weights: str | None = "imagenet", **kwargs: Any) -> FasterRCNN:
    """The TF OD API's ``faster_rcnn_mobilenet_v1`` (paper Table 13, 300 or 600).

    Args:
        num_classes: object classes without background (COCO: 80 or 90).
        alpha: backbone width multiplier.
        image_size: 300 or 600 (or any (h, w) >= the smallest anchor, 64).
        weights: ``"imagenet"`` (default: the published 224 ImageNet weights of
            ``alpha``, downloaded once for alpha != 1.0), a preset, a weights file
            or None (``Detector.from_weights``).
        **kwargs: other ``FasterRCNN`` arguments.

    Example:

    ```python
    model = faster_rcnn_mobilenet_v1(num_classes=90, image_size=600, weights=None)
    ```
    """
    return FasterRCNN.from_weights(num_classes, alpha, image_size, weights, **kwargs)


__all__ = ["FasterRCNN", "faster_rcnn_mobilenet_v1"]
