"""SSD with a MobileNet backbone, as the TF Object Detection API builds it.

The paper's Table 13 detector (TF OD API ``ssd_mobilenet_v1_coco.config``):
features from conv_pw_11 (stride 16) and conv_pw_13 (stride 32), four extra
layers (1x1 conv to d/2, then 3x3 stride-2 conv to d, d = 512, 256, 256, 128,
BN + ReLU6, depth ``max(int(d * alpha), 16)``), one 1x1 box and one 1x1 class
predictor per map, anchors of ``ssd_anchor_generator``, the (10, 10, 5, 5) box
coder, the argmax matcher, sigmoid + smooth L1 with hard negative mining, and
per-class NMS. Each piece is a small object passed to the constructor, so a user
can swap it (for example ``detection_loss=FocalLoss()``); each is a registered
Keras object, so a subclass comes back as itself after save/load.

Training and decoding are ``keras.ops`` (TF OD API ``meta_architectures/ssd_meta_arch.py``),
so the model fits and predicts on the TensorFlow, JAX and PyTorch backends.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
from keras import layers

from mobilenet_zoo.backbone import check_backbone
from mobilenet_zoo.detection.anchors import SSDAnchorGenerator, feature_map_sizes
from mobilenet_zoo.detection.box_coder import FasterRCNNBoxCoder
from mobilenet_zoo.detection.detector import Detector
from mobilenet_zoo.detection.losses import SSDLoss, build_targets
from mobilenet_zoo.detection.matcher import ArgMaxMatcher
from mobilenet_zoo.detection.postprocess import DetectionDecoder
from mobilenet_zoo.detection.preprocessor import DetectionPreprocessor
from mobilenet_zoo.hub.tasks import register_task
from mobilenet_zoo.layers import batch_norm
from mobilenet_zoo.preprocessing import preprocessing_layer
from mobilenet_zoo.utils import build_piece

# ssd_mobilenet_v1_feature_extractor.py: feature_map_layout layer_depth.
EXTRA_LAYER_DEPTHS = (512, 256, 256, 128)
# ssd_mobilenet_v1_coco.config: feature_extractor { min_depth: 16 }.
MIN_DEPTH = 16
# ssd_mobilenet_v1_coco.config: l2_regularizer weight 4e-5 (slim: w * sum(x^2) / 2).
WEIGHT_DECAY = 4e-5
# conv_hyperparams initializer: truncated_normal stddev 0.03.
KERNEL_INIT_STDDEV = 0.03


@register_task()
@keras.saving.register_keras_serializable(package="mobilenet_zoo")
class SSD(Detector):
    """SSD-MobileNet detector (paper Table 13; TF OD API ``ssd_mobilenet_v1``).

    Args:
        backbone: a ``MobileNetBackbone`` of any alpha with output stride 32
            (rebuilt at ``image_size`` with its weights when its input size
            differs). ``ssd_mobilenet_v1()`` builds the TF OD API's (min_depth 16).
        num_classes: object classes, without background (the TF OD API and
            KerasHub convention for detectors; the class head has one more).
        image_size: input side or (height, width); 300 by default, anchors follow
            (1917 at 300, 5118 at 512).
        bounding_box_format: format of the boxes given to ``fit`` and returned by
            ``predict`` (Keras / keras-cv names: ``"xyxy"``, ``"rel_yxyx"``, ...;
            absolute formats are pixels of the ``image_size`` input).
        extra_layer_depths: depths d of the extra layers (1x1 to d/2, 3x3 s2 to d).
        min_depth: floor of the extra layers' depths (config: 16).
        include_preprocessing: take pixels in [0, 255] and map them to [-1, 1].
        anchor_generator / box_coder / matcher / detection_loss / decoder: the
            pieces, as objects or config dicts; defaults are the TF OD API's.
        weight_decay: L2 on conv kernels, slim convention ``w * sum(k^2) / 2``
            (config 4e-5); depthwise kernels are not decayed.
        class_prior: if set, class logits start at ``log(p / (1 - p))`` (RetinaNet
            init, helps short runs); ``None`` = zeros as the TF OD API.
        preprocessor: a ``DetectionPreprocessor``; default one built from
            ``image_size`` and ``bounding_box_format`` (a given one must agree).
        class_names: optional names of the ``num_classes`` classes (saved with
            the model; the detect CLI prints them).
        invalid_boxes: ground-truth boxes that are non-finite, empty or wholly
            outside the image are never trained on: ``"drop"`` (default; counted
            in the ``invalid_boxes`` metric) or ``"raise"``.
        resize_mode: how ``predict`` and the detect CLI fit images of another size,
            as the weights were trained: ``"stretch"`` (default; the TF OD API's
            ``fixed_shape_resizer``, the COCO presets) or ``"pad"`` (black padding at
            the bottom and right to a square, then resized: the face preset, as
            face-api.js). ``None``: the preprocessor's. Saved in the preprocessor.

    Training data: images plus ``{"boxes": (B, M, 4), "classes": (B, M)}`` padded
    with -1. ``predict`` returns ``{"boxes", "classes", "scores",
    "num_detections"}`` in ``bounding_box_format``; images of another size (a list
    of ``(H, W, 3)`` arrays, or a batch) are resized with ``resize_mode`` and their
    boxes come back in each image's own pixels.

    Example:

    ```python
    model = ssd_mobilenet_v1(num_classes=80, bounding_box_format="xyxy")
    model.compile(keras.optimizers.RMSprop(0.004, rho=0.9, momentum=0.9, epsilon=1.0))
    model.fit(model.preprocessor.pipeline(source, 24, training=True), epochs=10)
    detections = model.predict(images)
    ```
    """

    def __init__(
        self,
        backbone: keras.Model,
        num_classes: int,
        image_size: int | Sequence[int] = 300,
        bounding_box_format: str = "rel_yxyx",
        extra_layer_depths: Sequence[int] = EXTRA_LAYER_DEPTHS,
        min_depth: int = MIN_DEPTH,
        include_preprocessing: bool = True,
        anchor_generator: SSDAnchorGenerator | dict | None = None,
        box_coder: FasterRCNNBoxCoder | dict | None = None,
        matcher: ArgMaxMatcher | dict | None = None,
        detection_loss: SSDLoss | dict | None = None,
        decoder: DetectionDecoder | dict | None = None,
        weight_decay: float = WEIGHT_DECAY,
        class_prior: float | None = None,
        preprocessor: DetectionPreprocessor | dict | None = None,
        class_names: Sequence[str] | None = None,
        invalid_boxes: str = "drop",
        resize_mode: str | None = None,
        **kwargs: Any,
    ) -> None:
        size, common = self.detector_inputs(
            "SSD", num_classes, image_size, bounding_box_format, preprocessor, class_names, invalid_boxes,
            weight_decay, include_preprocessing, box_coder, decoder, resize_mode=resize_mode)
        check_backbone(backbone, "SSD", levels=("P4", "P5"), strides={"P4": 16, "P5": 32})
        if class_prior is not None and not 0 < class_prior < 1:
            raise ValueError(f"`class_prior` must be in (0, 1), got {class_prior}.")
        anchor_generator = build_piece(anchor_generator, SSDAnchorGenerator)
        n_maps = 2 + len(extra_layer_depths)
        if anchor_generator.num_layers != n_maps:
            raise ValueError(
                f"The anchor generator has {anchor_generator.num_layers} layers but the "
                f"feature layout has {n_maps} maps (2 + len(extra_layer_depths))."
            )
        alpha = backbone.alpha
        channels = backbone.inputs[0].shape[-1]
        if tuple(backbone.inputs[0].shape[1:3]) != (None, None):  # a dynamic one takes any size
            backbone = backbone.with_input_shape((*size, channels))

        init = keras.initializers.TruncatedNormal(stddev=KERNEL_INIT_STDDEV)
        inputs = keras.Input((*size, channels), name="images")
        x = preprocessing_layer()(inputs) if include_preprocessing else inputs
        extractor = keras.Model(
            backbone.inputs,
            [backbone.pyramid_outputs["P4"], backbone.pyramid_outputs["P5"]],
            name="feature_extractor",
        )
        maps = list(extractor(x))

        folded = backbone.folded_batch_norm

        def depth(d):
            return max(int(d * alpha), min_depth)

        h = maps[-1]
        for index, d in enumerate(extra_layer_depths, start=2):
            for name, filters, kernel, stride in (
                (f"Conv2d_13_pointwise_1_Conv2d_{index}_1x1_{depth(d / 2)}", depth(d / 2), 1, 1),
                (f"Conv2d_13_pointwise_2_Conv2d_{index}_3x3_s2_{depth(d)}", depth(d), 3, 2),
            ):
                h = layers.Conv2D(
                    filters, kernel, strides=stride, padding="same", use_bias=folded,
                    kernel_initializer=init, name=name,
                )(h)
                h = batch_norm(h, f"{name}_bn", folded)
                h = layers.ReLU(6.0, name=f"{name}_relu")(h)
            maps.append(h)

        bias = "zeros" if class_prior is None else keras.initializers.Constant(
            float(np.log(class_prior / (1 - class_prior)))
        )
        box_outputs, class_outputs = [], []
        for k, (fmap, anchors_per_cell) in enumerate(
            zip(maps, anchor_generator.num_anchors_per_location())
        ):
            b = layers.Conv2D(anchors_per_cell * 4, 1, kernel_initializer=init,
                              name=f"BoxPredictor_{k}_BoxEncodingPredictor")(fmap)
            c = layers.Conv2D(anchors_per_cell * (num_classes + 1), 1, kernel_initializer=init,
                              bias_initializer=bias, name=f"BoxPredictor_{k}_ClassPredictor")(fmap)
            box_outputs.append(layers.Reshape((-1, 4), name=f"box_reshape_{k}")(b))
            class_outputs.append(layers.Reshape((-1, num_classes + 1), name=f"class_reshape_{k}")(c))
        outputs = {
            "boxes": layers.Concatenate(axis=1, name="boxes", dtype="float32")(box_outputs),
            "classes": layers.Concatenate(axis=1, name="classes", dtype="float32")(class_outputs),
        }
        kwargs.setdefault("name", "ssd_mobilenet_v1")
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)

        self._init_detector(backbone, common)
        self.extra_layer_depths = tuple(extra_layer_depths)
        self.min_depth = min_depth
        self.anchor_generator = anchor_generator
        self.matcher = build_piece(matcher, ArgMaxMatcher)
        self.detection_loss = build_piece(detection_loss, SSDLoss)
        self.class_prior = class_prior
        grids = [tuple(m.shape[1:3]) for m in maps]
        assert grids == feature_map_sizes(size, n_maps), (grids, feature_map_sizes(size, n_maps))
        self.anchors = anchor_generator(size, grids)

    loss_names = ("cls_loss", "box_loss", "num_matches")
    config_attributes = ("extra_layer_depths", "min_depth", "anchor_generator", "matcher", "detection_loss",
                         "class_prior")

    # ------------------------------------------------------------------ training
    def compute_targets(self, y):
        """Matches ground truth to anchors: box codes, class one-hots, masks."""
        boxes, classes = self.ground_truth(y)
        anchors = keras.ops.convert_to_tensor(self.anchors, "float32")
        matches = self.matcher.match(boxes, classes >= 0, anchors)
        return build_targets(matches, boxes, classes, anchors, self.box_coder, self.num_classes)

    def detection_losses(self, y, y_pred, training):
        return self.detection_loss(y_pred["boxes"], y_pred["classes"], *self.compute_targets(y))

    def decode(self, outputs, tflite_ops):
        return self.decoder(outputs["boxes"], outputs["classes"],
                            keras.ops.convert_to_tensor(self.anchors, "float32"),
                            box_coder=self.box_coder, tflite_ops=tflite_ops)

    backbone_defaults = {"min_depth": MIN_DEPTH}


def ssd_mobilenet_v1(num_classes: int, alpha: float = 1.0, image_size: int | Sequence[int] = 300,
                     weights: str | None = "imagenet", **kwargs: Any) -> SSD:
    """The TF OD API's ``ssd_mobilenet_v1`` (paper Table 13 "SSD 300 MobileNet").

    Owns the feature extractor settings of ``ssd_mobilenet_v1_coco.config``:
    MobileNet v1 with ``min_depth=16``, features from conv_pw_11 / conv_pw_13.

    Args:
        num_classes: object classes without background (COCO: 80 or 90).
        alpha: backbone width multiplier (the shipped presets are 1.0).
        image_size: input side or (h, w) (300 in the paper).
        weights: initialisation: ``"imagenet"`` (default: the published 224
            ImageNet weights of ``alpha``, downloaded once for alpha != 1.0, as the
            TF OD API starts from the 224 classification checkpoint), ``None``, a
            weights file for the backbone, or a preset. A classification preset initialises the backbone; a
            detection preset (``ssd_mobilenet_v1_face_512``) the whole detector:
            feature extractor, extra layers and box predictor, and the class
            head when ``num_classes`` matches (its anchor order too).
        **kwargs: other ``SSD`` arguments (``bounding_box_format``, pieces...).

    Example:

    ```python
    model = ssd_mobilenet_v1(num_classes=80)   # ImageNet-initialised backbone
    ```
    """
    return SSD.from_weights(num_classes, alpha, image_size, weights, **kwargs)
