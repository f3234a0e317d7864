"""Object detection on MobileNetBackbone (paper Table 13): ``Detector``, its SSD and Faster R-CNN."""

from mobilenet_zoo.detection.anchors import (
    GridAnchorGenerator,
    SSDAnchorGenerator,
    feature_map_sizes,
)
from mobilenet_zoo.detection.box_coder import FasterRCNNBoxCoder
from mobilenet_zoo.detection.detector import Detector
from mobilenet_zoo.detection.faster_rcnn import FasterRCNN, faster_rcnn_mobilenet_v1
from mobilenet_zoo.detection.losses import FocalLoss, SSDLoss
from mobilenet_zoo.detection.matcher import ArgMaxMatcher
from mobilenet_zoo.detection.postprocess import DetectionDecoder, non_max_suppression
from mobilenet_zoo.detection.preprocessor import DetectionPreprocessor, keep_aspect_ratio_size
from mobilenet_zoo.detection.roi import ProposalLayer, ROICrop
from mobilenet_zoo.detection.rpn import BalancedSampler
from mobilenet_zoo.detection.ssd import SSD, ssd_mobilenet_v1

__all__ = [
    "Detector",
    "SSD",
    "ssd_mobilenet_v1",
    "FasterRCNN",
    "faster_rcnn_mobilenet_v1",
    "GridAnchorGenerator",
    "keep_aspect_ratio_size",
    "DetectionPreprocessor",
    "SSDAnchorGenerator",
    "feature_map_sizes",
    "FasterRCNNBoxCoder",
    "ArgMaxMatcher",
    "SSDLoss",
    "FocalLoss",
    "DetectionDecoder",
    "non_max_suppression",
    "BalancedSampler",
    "ProposalLayer",
    "ROICrop",
]

from mobilenet_zoo.detection.coco_eval import evaluate_coco  # noqa: E402

__all__ += ["evaluate_coco"]
