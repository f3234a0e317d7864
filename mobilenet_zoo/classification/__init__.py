"""Image classification heads on MobileNetBackbone."""

from mobilenet_zoo.classification.classifier import MobileNetClassifier
from mobilenet_zoo.classification.preprocessor import ImageClassifierPreprocessor

__all__ = ["MobileNetClassifier", "ImageClassifierPreprocessor"]
