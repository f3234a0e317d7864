"""MobileNet classifier: backbone + the paper's head (Table 1, last rows)."""

from __future__ import annotations

from typing import Any

import keras
from keras import layers

from mobilenet_zoo.backbone import MobileNetBackbone
from mobilenet_zoo.preprocessing import preprocessing_layer
from mobilenet_zoo.utils import check_num_classes
from mobilenet_zoo.weights_io import TaskModelMixin


@keras.saving.register_keras_serializable(package="mobilenet_zoo")
class MobileNetClassifier(TaskModelMixin, keras.Model):
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
        **kwargs: Any,
    ) -> None:
        if backbone is None:
            backbone = MobileNetBackbone()
        if not isinstance(backbone, keras.Model):
            raise ValueError(
                f"`backbone` must be a MobileNetBackbone (a keras.Model), got "
                f"{type(backbone).__name__}."
            )
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
        wd = getattr(backbone, "weight_decay", 0.0)  # slim decays the logits too
        x = layers.Conv2D(
            num_classes, 1, kernel_regularizer=keras.regularizers.L2(wd / 2) if wd else None,
            name="conv_preds",
        )(x)
        x = layers.Reshape((num_classes,), name="reshape")(x)
        outputs = layers.Activation(classifier_activation, name="predictions")(x)
        kwargs.setdefault("name", "mobilenet_v1_classifier")
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        self.backbone = backbone
        self.num_classes = num_classes
        self.dropout = dropout
        self.include_preprocessing = include_preprocessing
        self.classifier_activation = classifier_activation
        if weights is not None:
            from mobilenet_zoo import presets

            presets.load_into(self, weights)

    @classmethod
    def from_preset(cls, preset: str, **kwargs: Any) -> MobileNetClassifier:
        """Builds the preset's architecture and loads its weights.

        ``kwargs`` go to the classifier (for example ``include_preprocessing``)
        and ``input_shape`` to the backbone (fully convolutional: any size).
        """
        from mobilenet_zoo import presets

        meta = presets.get_preset(preset)
        backbone = MobileNetBackbone.from_preset(
            preset, input_shape=kwargs.pop("input_shape", None)
        )
        kwargs.setdefault("num_classes", meta["num_classes"])
        return cls(backbone, weights=preset, **kwargs)

    def get_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "trainable": self.trainable,
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "num_classes": self.num_classes,
            "dropout": self.dropout,
            "include_preprocessing": self.include_preprocessing,
            "classifier_activation": self.classifier_activation,
        }
