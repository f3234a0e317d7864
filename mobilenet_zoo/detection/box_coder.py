"""Faster R-CNN box coder of the TF OD API (``faster_rcnn_box_coder``), on Keras core.

Codes ``[ty, tx, th, tw] = [10 dy / ha, 10 dx / wa, 5 log(h / ha), 5 log(w / wa)]``
(scale factors 10, 10, 5, 5 from ``ssd_mobilenet_v1_coco.config``). Built on
``keras.utils.bounding_boxes.encode_box_to_deltas`` / ``decode_deltas_to_boxes``
with ``variance = 1 / scale_factors``. Boxes and anchors are normalised yxyx.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras

from mobilenet_zoo.utils import ConfigMixin


@keras.saving.register_keras_serializable(package="mobilenet_zoo")
class FasterRCNNBoxCoder(ConfigMixin):
    """Encodes boxes against anchors and back.

    Args:
        scale_factors: (y, x, h, w) multipliers of the codes (config: 10, 10, 5, 5).

    Example:

    ```python
    coder = FasterRCNNBoxCoder()
    codes = coder.encode(gt_boxes, anchors)      # (..., N, 4)
    boxes = coder.decode(codes, anchors)         # == gt_boxes
    ```
    """

    code_size = 4

    def __init__(self, scale_factors: Sequence[float] = (10.0, 10.0, 5.0, 5.0)) -> None:
        if len(scale_factors) != 4 or any(s <= 0 for s in scale_factors):
            raise ValueError(f"`scale_factors` must be 4 positive numbers, got {scale_factors}.")
        self.scale_factors = tuple(float(s) for s in scale_factors)
        self._variance = [1.0 / s for s in self.scale_factors]

    def encode(self, boxes, anchors):
        return keras.utils.bounding_boxes.encode_box_to_deltas(
            anchors, boxes, "yxyx", "yxyx", "center_yxhw", variance=self._variance
        )

    def decode(self, codes, anchors):
        return keras.utils.bounding_boxes.decode_deltas_to_boxes(
            anchors, codes, "yxyx", "yxyx", "center_yxhw", variance=self._variance
        )

    def get_config(self) -> dict:
        return {"scale_factors": list(self.scale_factors)}
