"""Students and stand-in teachers for the distillation recipes."""

from __future__ import annotations

import keras

from mobilenet_zoo.backbone import MobileNetBackbone
from mobilenet_zoo.preprocessing import preprocessing_layer


def mobilenet_head_model(
    outputs: int,
    alpha: float = 1.0,
    image_size: int = 224,
    weights: str | None = None,
    l2_normalize: bool = False,
    bn_momentum: float = 0.99,
    name: str = "mobilenet_student",
) -> keras.Model:
    """Pixels [0, 255] of any size -> resize to ``image_size`` -> MobileNet -> GAP ->
    Dense(``outputs``) logits / embedding (unit-normalised if ``l2_normalize``).

    Teacher and student each resize internally, so they can run at different
    resolutions on the same batch (paper Tables 12 and 14 vary the student's).
    """
    inputs = keras.Input((None, None, 3), name="images")
    x = keras.layers.Resizing(image_size, image_size, name="resize")(inputs)
    x = preprocessing_layer()(x)
    backbone = MobileNetBackbone(alpha=alpha, input_shape=(image_size, image_size, 3),
                                 bn_momentum=bn_momentum, weights=weights)
    x = keras.layers.GlobalAveragePooling2D(name="global_pool")(backbone(x))
    x = keras.layers.Dense(outputs, name="head")(x)
    if l2_normalize:
        x = keras.layers.UnitNormalization(name="l2_normalize")(x)
    return keras.Model(inputs, x, name=name)
