"""mobilenet_zoo: MobileNet v1 (Howard et al. 2017) for Keras 3, with task heads.

``import mobilenet_zoo`` only defines names: it imports neither Keras nor
TensorFlow, writes no environment variable and reads no command line. Each public
name loads on first use (PEP 562 ``__getattr__``); that first use also prepares
the Keras backend (``mobilenet_zoo.backend``) and registers every serialisable
class of the package (``mobilenet_zoo.models``), so ``keras.saving.load_model``
opens the package's ``.keras`` files from then on; ``mobilenet_zoo.load_model``
does both in one call.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from mobilenet_zoo.version import __version__

# Public name -> the module that defines it.
_EXPORTS: dict[str, str] = {
    "MobileNetBackbone": "mobilenet_zoo.backbone",
    "Task": "mobilenet_zoo.task",
    "MobileNetClassifier": "mobilenet_zoo.classification",
    "ImageClassifierPreprocessor": "mobilenet_zoo.classification",
    "SSD": "mobilenet_zoo.detection",
    "ssd_mobilenet_v1": "mobilenet_zoo.detection",
    "FasterRCNN": "mobilenet_zoo.detection",
    "faster_rcnn_mobilenet_v1": "mobilenet_zoo.detection",
    "DetectionPreprocessor": "mobilenet_zoo.detection",
    "DeepLabV3": "mobilenet_zoo.segmentation",
    "SegmentationPreprocessor": "mobilenet_zoo.segmentation",
    "preprocess_input": "mobilenet_zoo.preprocessing",
    "fold_batch_norm": "mobilenet_zoo.fold",
    "list_presets": "mobilenet_zoo.hub.presets",
    "load_model": "mobilenet_zoo.models",
}

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
    "load_model",
    "__version__",
]

if TYPE_CHECKING:  # what IDEs and type checkers see; nothing is imported at run time
    from mobilenet_zoo.backbone import MobileNetBackbone
    from mobilenet_zoo.classification import ImageClassifierPreprocessor, MobileNetClassifier
    from mobilenet_zoo.detection import (
        SSD,
        DetectionPreprocessor,
        FasterRCNN,
        faster_rcnn_mobilenet_v1,
        ssd_mobilenet_v1,
    )
    from mobilenet_zoo.fold import fold_batch_norm
    from mobilenet_zoo.hub.presets import list_presets
    from mobilenet_zoo.models import load_model
    from mobilenet_zoo.preprocessing import preprocess_input
    from mobilenet_zoo.segmentation import DeepLabV3, SegmentationPreprocessor
    from mobilenet_zoo.task import Task


def __getattr__(name: str) -> Any:
    """A public name, imported on first use (PEP 562)."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'mobilenet_zoo' has no attribute {name!r}")
    if _EXPORTS[name] != "mobilenet_zoo.hub.presets":  # the preset listing needs no Keras
        importlib.import_module("mobilenet_zoo.backend").prepare_backend()
        importlib.import_module("mobilenet_zoo.models")  # registers every serialisable class
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
