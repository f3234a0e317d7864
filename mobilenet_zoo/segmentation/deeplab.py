"""DeepLabV3 / DeepLabV3+ on MobileNetBackbone (mobile semantic segmentation).

ASPP of Chen et al. 2017 (arXiv 1706.05587, s.3.3): a 1x1 branch, three atrous
3x3 branches (rates 6, 12, 18 at output stride 16, doubled at 8), an
image-pooling branch, concatenation and a 1x1 projection, 256 filters each,
BN + ReLU. The optional decoder is DeepLabV3+'s (arXiv 1802.02611, s.3.1):
low-level features reduced to 48 channels by a 1x1 conv, concatenated with the
upsampled ASPP output, two 3x3 convs of 256. ``separable_aspp`` uses depthwise
separable atrous convs (the mobile form, DeepLabV3+ s.3.2).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
from keras import layers

from mobilenet_zoo.backbone import check_backbone
from mobilenet_zoo.hub.tasks import register_task
from mobilenet_zoo.layers import batch_norm
from mobilenet_zoo.preprocessing import preprocessing_layer
from mobilenet_zoo.segmentation.preprocessor import IGNORE_LABEL, SegmentationPreprocessor
from mobilenet_zoo.task import Task
from mobilenet_zoo.utils import assert_in_graph, build_piece, check_num_classes

# DeepLabV3 s.3.3: rates (6, 12, 18) at output stride 16, doubled at 8;
# at 32 (not in the paper) we halve them to keep the same field of view.
ASPP_RATES = {8: (12, 24, 36), 16: (6, 12, 18), 32: (3, 6, 9)}
ASPP_FILTERS = 256  # DeepLabV3 s.3.3
LOW_LEVEL_FILTERS = 48  # DeepLabV3+ s.3.1 (Table 1: 48 is best)
DECODER_FILTERS = 256  # DeepLabV3+ s.3.1


@keras.saving.register_keras_serializable(package="mobilenet_zoo")
class ResizeLike(layers.Layer):
    """Bilinear resize of the first input to the spatial size of the second."""

    def call(self, inputs):
        x, ref = inputs
        shape = keras.ops.shape(ref)  # dynamic on TF for (None, None) inputs
        return keras.ops.image.resize(x, (shape[1], shape[2]), interpolation="bilinear")

    def compute_output_shape(self, input_shapes):
        x, ref = input_shapes
        return (x[0], ref[1], ref[2], x[3])


def _conv_bn_relu(x, filters, name, kernel=1, rate=1, separable=False, folded=False):
    if separable and kernel > 1:
        x = layers.DepthwiseConv2D(kernel, padding="same", dilation_rate=rate, use_bias=folded,
                                   name=f"{name}_depthwise")(x)
        x = batch_norm(x, f"{name}_depthwise_bn", folded)
        x = layers.ReLU(name=f"{name}_depthwise_relu")(x)
        kernel, rate = 1, 1
    x = layers.Conv2D(filters, kernel, padding="same", dilation_rate=rate, use_bias=folded, name=name)(x)
    x = batch_norm(x, f"{name}_bn", folded)
    return layers.ReLU(name=f"{name}_relu")(x)


@register_task()
@keras.saving.register_keras_serializable(package="mobilenet_zoo")
class DeepLabV3(Task):
    """DeepLabV3 (optionally V3+) semantic segmentation on a MobileNetBackbone.

    Args:
        backbone: a ``MobileNetBackbone``; its ``output_stride`` (8, 16, 32) sets
            the ASPP rates. Use ``input_shape=(None, None, 3)`` for any size.
        num_classes: classes including background.
        aspp_rates: three atrous rates; default from the output stride.
        aspp_filters: filters of every ASPP branch and the projection (256).
        separable_aspp: depthwise separable atrous branches (mobile form).
        use_decoder: add the DeepLabV3+ decoder with a low-level skip.
        low_level_level: pyramid level of the skip (``"P2"``: stride 4).
        dropout: dropout after the ASPP projection (0.1 in the reference code).
        include_preprocessing: take pixels in [0, 255] and map them to [-1, 1].
        preprocessor: a ``SegmentationPreprocessor`` (training crop size,
            ignore label, mask handling); default one for ``num_classes`` at the
            backbone's size (512 for a dynamic-size backbone).

    ``num_classes`` counts background: it is a class of the mask, as in the
    DeepLab and KerasHub segmenters. Outputs logits ``(B, H, W, num_classes)`` at the input size.

    Example:

    ```python
    backbone = MobileNetBackbone(output_stride=16, input_shape=(None, None, 3),
                                 weights=presets.IMAGENET)
    model = DeepLabV3(backbone, num_classes=3, use_decoder=True)
    model.compile("adam", segmentation_loss(), metrics=[MeanIoU(3)])
    ```
    """

    #: ``from_preset`` builds the backbone at output stride 16, the one DeepLabV3 trains at
    #: (s.4) and DeepLabV3+ (s.3.1) names the speed / accuracy trade-off.
    backbone_defaults = {"output_stride": 16}

    def __init__(
        self,
        backbone: keras.Model,
        num_classes: int,
        aspp_rates: Sequence[int] | None = None,
        aspp_filters: int = ASPP_FILTERS,
        separable_aspp: bool = False,
        use_decoder: bool = False,
        low_level_level: str = "P2",
        dropout: float = 0.1,
        include_preprocessing: bool = True,
        preprocessor: SegmentationPreprocessor | dict | None = None,
        **kwargs: Any,
    ) -> None:
        check_num_classes(num_classes)
        check_backbone(backbone, "DeepLabV3")
        decoder = use_decoder
        stride = backbone.output_stride
        if stride not in ASPP_RATES:
            raise ValueError(
                f"Backbone output_stride {stride!r} is not supported; use one of {tuple(ASPP_RATES)}."
            )
        rates = tuple(aspp_rates) if aspp_rates is not None else ASPP_RATES[stride]
        if len(rates) != 3 or any(int(r) < 1 for r in rates):
            raise ValueError(f"`aspp_rates` must be three ints >= 1, got {aspp_rates!r}.")
        pyramid = backbone.pyramid_outputs
        if decoder and low_level_level not in pyramid:
            raise ValueError(
                f"`low_level_level` {low_level_level!r} is not a pyramid level of the backbone "
                f"({sorted(pyramid)})."
            )
        inputs = keras.Input(backbone.inputs[0].shape[1:], name="images")
        x = preprocessing_layer()(inputs) if include_preprocessing else inputs
        outputs = [backbone.outputs[0]] + ([pyramid[low_level_level]] if decoder else [])
        features = keras.Model(backbone.inputs, outputs, name="feature_extractor")(x)
        high = features[0] if decoder else features
        if isinstance(high, (list, tuple)):
            high = high[0]

        folded = backbone.folded_batch_norm
        branches = [_conv_bn_relu(high, aspp_filters, "aspp_1x1", folded=folded)]
        for i, rate in enumerate(rates, start=1):
            branches.append(_conv_bn_relu(high, aspp_filters, f"aspp_atrous_{i}", 3, int(rate),
                                          separable_aspp, folded=folded))
        pooled = layers.GlobalAveragePooling2D(keepdims=True, name="aspp_image_pool")(high)
        pooled = _conv_bn_relu(pooled, aspp_filters, "aspp_image_pool_conv", folded=folded)
        branches.append(ResizeLike(name="aspp_image_pool_upsample")([pooled, high]))
        y = layers.Concatenate(name="aspp_concat")(branches)
        y = _conv_bn_relu(y, aspp_filters, "aspp_projection", folded=folded)
        y = layers.Dropout(dropout, name="aspp_dropout")(y)
        if decoder:
            low = _conv_bn_relu(features[1], LOW_LEVEL_FILTERS, "decoder_low_level", folded=folded)
            y = ResizeLike(name="decoder_upsample")([y, low])
            y = layers.Concatenate(name="decoder_concat")([y, low])
            y = _conv_bn_relu(y, DECODER_FILTERS, "decoder_conv_1", 3, separable=True, folded=folded)
            y = _conv_bn_relu(y, DECODER_FILTERS, "decoder_conv_2", 3, separable=True, folded=folded)
        y = layers.Conv2D(num_classes, 1, name="logits")(y)
        logits = ResizeLike(name="logits_upsample", dtype="float32")([y, inputs])
        kwargs.setdefault("name", "deeplabv3_mobilenet_v1")
        super().__init__(inputs=inputs, outputs=logits, **kwargs)
        if preprocessor is None:
            preprocessor = SegmentationPreprocessor(inputs.shape[1] or 512, num_classes)
        preprocessor = build_piece(preprocessor, SegmentationPreprocessor)
        if preprocessor.num_classes != num_classes:
            raise ValueError(
                f"The preprocessor has num_classes={preprocessor.num_classes}, the model "
                f"{num_classes}; give both the same value."
            )
        self._init_task(backbone, preprocessor)
        self.num_classes = num_classes
        self.aspp_rates = rates
        self.aspp_filters = aspp_filters
        self.separable_aspp = separable_aspp
        self.use_decoder = use_decoder
        self.low_level_level = low_level_level
        self.dropout = dropout
        self.include_preprocessing = include_preprocessing
        self._explicit_rates = aspp_rates is not None

    def postprocess(self, outputs, tflite_ops: bool = False, argmax: bool = False,
                    export: bool | None = None):
        """Logits, or class ids per pixel with ``argmax=True`` (tf.argmax: a TFLite
        builtin, unlike keras.ops.argmax's NaN handling); the same graph either way of
        ``tflite_ops`` (``export=`` is its old name)."""
        if not argmax:
            return outputs
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf  # already loaded: it is the backend

            return tf.argmax(outputs, axis=-1, output_type=tf.int32)
        return keras.ops.cast(keras.ops.argmax(outputs, axis=-1), "int32")

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({
            "num_classes": self.num_classes,
            "aspp_rates": list(self.aspp_rates) if self._explicit_rates else None,
            "aspp_filters": self.aspp_filters,
            "separable_aspp": self.separable_aspp,
            "use_decoder": self.use_decoder,
            "low_level_level": self.low_level_level,
            "dropout": self.dropout,
            "include_preprocessing": self.include_preprocessing,
        })
        return config


@keras.saving.register_keras_serializable(package="mobilenet_zoo")
class SegmentationLoss(keras.losses.SparseCategoricalCrossentropy):
    """Per-pixel softmax cross-entropy on logits that ignores ``ignore_label``.

    Masks may be ``(B, H, W)`` or ``(B, H, W, 1)``; a label outside
    ``[0, num_classes)`` other than ``ignore_label`` stops ``fit`` with a message
    naming the allowed range (instead of an error deep in the graph).
    """

    def __init__(self, ignore_label: int = IGNORE_LABEL, name: str = "segmentation_loss", **kwargs):
        kwargs.pop("from_logits", None)
        kwargs.pop("ignore_class", None)
        super().__init__(from_logits=True, ignore_class=ignore_label, name=name, **kwargs)
        self.ignore_label = ignore_label

    def call(self, y_true, y_pred):
        ops = keras.ops
        y_true = ops.cast(y_true, "int32")
        if len(y_true.shape) == 4 and y_true.shape[-1] == 1:
            y_true = y_true[..., 0]
        num_classes = y_pred.shape[-1]
        ok = ops.all(((y_true >= 0) & (y_true < num_classes)) | (y_true == self.ignore_label))
        message = (f"mask labels must be in [0, num_classes) = [0, {num_classes}) or "
                   f"{self.ignore_label} (ignored); "
                   "check num_classes (it counts background) and the mask values")
        assert_in_graph(ok, message)
        return super().call(y_true, y_pred)

    def get_config(self):
        config = super().get_config()
        config.pop("from_logits", None)
        config.pop("ignore_class", None)
        return {**config, "ignore_label": self.ignore_label}


def segmentation_loss(ignore_label: int = IGNORE_LABEL) -> keras.losses.Loss:
    """Per-pixel softmax cross-entropy on logits, ignoring ``ignore_label`` (``SegmentationLoss``)."""
    return SegmentationLoss(ignore_label)
