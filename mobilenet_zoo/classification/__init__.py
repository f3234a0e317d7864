"""Image classification heads on MobileNetBackbone."""

from mobilenet_zoo.classification.classifier import MobileNetClassifier

__all__ = ["MobileNetClassifier"]
