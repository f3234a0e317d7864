"""MobileNet classifier: backbone + the paper's head (Table 1, last rows)."""

from __future__ import annotations

from typing import Any

import keras
from keras import layers

from mobilenet_zoo import presets
from mobilenet_zoo.backbone import MobileNetBackbone, check_backbone
from mobilenet_zoo.classification.preprocessor import ImageClassifierPreprocessor
from mobilenet_zoo.hub.tasks import register_task
from mobilenet_zoo.preprocessing import preprocessing_layer
from mobilenet_zoo.task import Task
from mobilenet_zoo.utils import assert_in_graph, build_piece, check_num_classes


@register_task()
@keras.saving.register_keras_serializable(package="mobilenet_zoo")
class MobileNetClassifier(Task):
    """Backbone + global average pool, dropout, 1x1 conv logits, softmax.

    The head is keras.applications.MobileNet's (same layer names: ``dropout``,
    ``conv_preds``, ``predictions``), which is TF-slim's ``Logits`` scope.

    Args:
        backbone: a ``MobileNetBackbone``; default ``MobileNetBackbone()``
            (alpha 1.0, 224x224).
        num_classes: number of classes (1000 for ImageNet, background dropped).
        dropout: dropout rate before the logits (keras.applications: 1e-3).
        include_preprocessing: if True the model takes raw pixels in [0, 255]
            (uint8 images welcome) and maps them to [-1, 1] itself.
        classifier_activation: ``"softmax"`` (default), ``None`` for logits, or
            any Keras activation.
        weights: ``None``, a preset name (``mobilenet_zoo.presets.list_presets()``)
            or a path to a weights file; loads backbone and head. For a new
            ``num_classes``, give the weights to the backbone instead.
        preprocessor: an ``ImageClassifierPreprocessor``; default one at the
            backbone's input size (224 for a dynamic-size backbone).
        **kwargs: ``name``, ``dtype``, ``trainable`` for ``keras.Model``.

    Example:

    ```python
    model = MobileNetClassifier(MobileNetBackbone(alpha=0.5), num_classes=10,
                                include_preprocessing=True)
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    model.fit(uint8_images, labels)
    ```
    """

    def __init__(
        self,
        backbone: MobileNetBackbone | None = None,
        num_classes: int = 1000,
        dropout: float = 1e-3,
        include_preprocessing: bool = False,
        classifier_activation: str | None = "softmax",
        weights: str | None = None,
        preprocessor: ImageClassifierPreprocessor | dict | None = None,
        **kwargs: Any,
    ) -> None:
        if backbone is None:
            backbone = MobileNetBackbone()
        check_backbone(backbone, "MobileNetClassifier")
        check_num_classes(num_classes)
        if not 0 <= dropout < 1:
            raise ValueError(f"`dropout` must be in [0, 1), got {dropout!r}.")
        input_shape = tuple(backbone.inputs[0].shape[1:])
        if include_preprocessing and input_shape[-1] != 3:
            raise ValueError(
                "`include_preprocessing=True` expects RGB images (3 channels); the "
                f"backbone's input_shape is {input_shape}."
            )
        inputs = keras.Input(shape=input_shape, name="images")
        x = inputs
        if include_preprocessing:
            x = preprocessing_layer()(x)
        x = backbone(x)
        x = layers.GlobalAveragePooling2D(keepdims=True, name="global_pool")(x)
        x = layers.Dropout(dropout, name="dropout")(x)
        wd = backbone.weight_decay  # slim decays the logits too
        x = layers.Conv2D(
            num_classes, 1, kernel_regularizer=keras.regularizers.L2(wd / 2) if wd else None,
            name="conv_preds",
        )(x)
        x = layers.Reshape((num_classes,), name="reshape")(x)
        outputs = layers.Activation(classifier_activation, name="predictions")(x)
        kwargs.setdefault("name", "mobilenet_v1_classifier")
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        if preprocessor is None:
            preprocessor = ImageClassifierPreprocessor(input_shape[0] or 224)
        self._init_task(backbone, build_piece(preprocessor, ImageClassifierPreprocessor))
        self.num_classes = num_classes
        self.dropout = dropout
        self.include_preprocessing = include_preprocessing
        self.classifier_activation = classifier_activation
        if weights is not None:
            presets.load_into(self, weights)

    # ------------------------------------------------------------------ training
    # The loss is the user's (compile(loss=...)); the labels are checked here, on every
    # backend: Keras' sparse cross-entropy raises on TensorFlow, but on JAX a label >=
    # num_classes gathers nothing and trains on a loss of 0.0 without a word.
    own_loss = False

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        self.check_labels(y)
        return super().compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight,
                                    training=training)

    def check_labels(self, y: Any) -> None:
        """Stops ``fit`` / ``evaluate`` when a class id is outside ``[0, num_classes)``.
        One-hot labels (last axis ``num_classes``) are taken as they are."""
        if y is None or isinstance(y, (dict, list, tuple)):
            return
        shape = tuple(getattr(y, "shape", ()))
        if len(shape) >= 2 and shape[-1] == self.num_classes and self.num_classes > 1:
            return  # one-hot / soft labels for categorical cross-entropy
        ops = keras.ops
        # One output unit: a binary classifier (sigmoid), labels 0 and 1 (or in between).
        top = max(self.num_classes, 2)
        assert_in_graph(
            ops.all(ops.logical_and(y >= 0, y < top)),
            f"{type(self).__name__}(num_classes={self.num_classes}): a label is outside "
            f"[0, {top}); class ids run from 0 to {top - 1}. Fix the "
            f"labels, or build the model with the number of classes the data has.")

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({
            "num_classes": self.num_classes,
            "dropout": self.dropout,
            "include_preprocessing": self.include_preprocessing,
            "classifier_activation": self.classifier_activation,
        })
        return config
