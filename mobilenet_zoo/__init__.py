"""mobilenet_zoo: MobileNet v1 (Howard et al. 2017) for Keras 3, with task heads.

``import mobilenet_zoo`` registers every serialisable class of the package
(backbone, task models, preprocessors, detection pieces, layers, losses), so
``keras.saving.load_model`` opens any ``.keras`` file a recipe or the converter
writes after this import alone.
"""

import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TF C++ INFO and WARNING logs


def _import_tensorflow_quietly() -> None:
    """Imports TensorFlow with its C++ start-up lines discarded.

    TF writes absl / oneDNN / CUDA-stub lines to the stderr file descriptor
    before its log level applies (TF_CPP_MIN_LOG_LEVEL does not reach them), so
    a CLI or recipe would start with a page of them. Python-level warnings and
    import errors are unaffected (errors still raise). Set
    ``MOBILENET_ZOO_TF_LOGS=1`` to see the lines.
    """
    if "tensorflow" in sys.modules or os.environ.get("MOBILENET_ZOO_TF_LOGS"):
        return
    try:
        saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    except OSError:  # no stderr descriptor (embedded interpreters)
        return
    try:
        sys.stderr.flush()
        os.dup2(devnull, 2)
        import tensorflow as tf

        tf.config.list_physical_devices()  # device start-up logs (CUDA probes) too
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


_import_tensorflow_quietly()

# The order below is the layering of the package: backbone, task base, tasks.
from mobilenet_zoo.backbone import MobileNetBackbone  # noqa: E402
from mobilenet_zoo.classification import ImageClassifierPreprocessor, MobileNetClassifier  # noqa: E402
from mobilenet_zoo.detection import (  # noqa: E402
    SSD,
    DetectionPreprocessor,
    FasterRCNN,
    faster_rcnn_mobilenet_v1,
    ssd_mobilenet_v1,
)
from mobilenet_zoo.distillation import losses as _distillation_losses  # noqa: E402,F401
from mobilenet_zoo.fold import fold_batch_norm  # noqa: E402
from mobilenet_zoo.preprocessing import preprocess_input  # noqa: E402
from mobilenet_zoo.presets import list_presets  # noqa: E402
from mobilenet_zoo.segmentation import DeepLabV3, SegmentationPreprocessor  # noqa: E402
from mobilenet_zoo.task import Task  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "MobileNetBackbone",
    "Task",
    "MobileNetClassifier",
    "ImageClassifierPreprocessor",
    "SSD",
    "ssd_mobilenet_v1",
    "FasterRCNN",
    "faster_rcnn_mobilenet_v1",
    "DetectionPreprocessor",
    "DeepLabV3",
    "SegmentationPreprocessor",
    "preprocess_input",
    "fold_batch_norm",
    "list_presets",
    "__version__",
]
