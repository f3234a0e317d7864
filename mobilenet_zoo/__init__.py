"""mobilenet_zoo: MobileNet v1 (Howard et al. 2017) for Keras 3, with task heads."""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # silence TF C++ start-up logs

from mobilenet_zoo.backbone import MobileNetBackbone  # noqa: E402
from mobilenet_zoo.classification import MobileNetClassifier  # noqa: E402
from mobilenet_zoo.preprocessing import preprocess_input  # noqa: E402

__version__ = "0.1.0"

__all__ = ["MobileNetBackbone", "MobileNetClassifier", "preprocess_input", "__version__"]
