"""Semantic segmentation on MobileNetBackbone: DeepLabV3 / V3+ heads, metrics, data."""

from mobilenet_zoo.segmentation.deeplab import (
    ASPP_RATES,
    IGNORE_LABEL,
    DeepLabV3,
    segmentation_loss,
)
from mobilenet_zoo.segmentation.metrics import (
    MeanIoU,
    PixelAccuracy,
    confusion_matrix,
    segmentation_scores,
)
from mobilenet_zoo.segmentation.preprocessor import SegmentationPreprocessor

__all__ = [
    "ASPP_RATES",
    "IGNORE_LABEL",
    "DeepLabV3",
    "SegmentationPreprocessor",
    "segmentation_loss",
    "MeanIoU",
    "PixelAccuracy",
    "confusion_matrix",
    "segmentation_scores",
]
