"""The segmentation data contract: crop size, classes, ignore label, mask handling."""

from __future__ import annotations

from typing import Any

import keras

from mobilenet_zoo.data.constants import IGNORE_LABEL
from mobilenet_zoo.tensorflow_support import import_tensorflow
from mobilenet_zoo.utils import ConfigMixin, check_num_classes


@keras.saving.register_keras_serializable(package="mobilenet_zoo")
class SegmentationPreprocessor(ConfigMixin):
    """Training crop size and mask handling of a segmenter.

    Args:
        image_size: square side of training crops and evaluation resizes.
        num_classes: classes of the masks, background included.
        ignore_label: mask value that no loss or metric counts (VOC: 255).
        scale_range: random scale range in training (DeepLab: 0.5-2.0).

    Masks are resized by nearest neighbour, padded with ``ignore_label`` and
    cropped with the image; labels outside ``[0, num_classes)`` other than
    ``ignore_label`` fail with a message naming the allowed range.

    Example:

    ```python
    train = model.preprocessor.pipeline(source, batch_size=8, training=True)
    ```
    """

    def __init__(
        self,
        image_size: int = 512,
        num_classes: int = 21,
        ignore_label: int = IGNORE_LABEL,
        scale_range: tuple[float, float] = (0.5, 2.0),
    ) -> None:
        check_num_classes(num_classes)
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 32:
            raise ValueError(f"`image_size` must be an int >= 32, got {image_size!r}.")
        if not 0 < scale_range[0] <= scale_range[1]:
            raise ValueError(f"`scale_range` must be (low, high) with 0 < low <= high, got {scale_range}.")
        self.image_size = image_size
        self.num_classes = num_classes
        self.ignore_label = ignore_label
        self.scale_range = tuple(scale_range)

    def pipeline(self, source: Any, batch_size: int, training: bool = False, seed: int | None = None):
        """Batches of ``(images float32 [0, 255], masks int32 HxW)``: a tf.data pipeline."""
        import_tensorflow("the tf.data input pipeline")  # one clear error without it
        from mobilenet_zoo.data import segmentation as sdata  # a TensorFlow module: lazily

        return sdata.segmentation_pipeline(
            source, self.num_classes, self.image_size, batch_size, training=training,
            ignore_label=self.ignore_label, scale_range=self.scale_range, seed=seed,
        )

    def get_config(self) -> dict[str, Any]:
        return {
            "image_size": self.image_size,
            "num_classes": self.num_classes,
            "ignore_label": self.ignore_label,
            "scale_range": list(self.scale_range),
        }
