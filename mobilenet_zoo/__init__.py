"""mobilenet_zoo: MobileNet v1 (Howard et al. 2017) for Keras 3, with task heads.

``import mobilenet_zoo`` registers every serialisable class of the package
(backbone, task models, preprocessors, detection pieces, layers, losses), so
``keras.saving.load_model`` opens any ``.keras`` file a recipe or the converter
writes after this import alone.
"""

import importlib.util
import json
import os
import sys

from mobilenet_zoo.tensorflow_support import import_tensorflow, tensorflow_available


def _keras_backend() -> str:
    """The backend Keras will take: ``KERAS_BACKEND``, else ``~/.keras/keras.json``, else ours.

    Keras 3 reads the same two places (keras/src/backend/config.py). With neither
    set (or a keras.json naming a TensorFlow that is not installed), TensorFlow when
    it is installed (Keras' own default), else JAX or PyTorch, whichever is
    installed, so a TensorFlow-free install imports as it is.
    """
    if "keras" in sys.modules:  # Keras has chosen already
        return sys.modules["keras"].backend.backend()
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    config = os.path.join(os.environ.get("KERAS_HOME", os.path.expanduser("~/.keras")), "keras.json")
    try:
        with open(config, encoding="utf8") as f:
            backend = json.load(f).get("backend")
    except (OSError, ValueError, AttributeError):
        backend = None
    # Keras writes keras.json with "tensorflow" on its first start whatever the backend,
    # so that entry is passed over where TensorFlow is missing.
    if backend and (backend != "tensorflow" or tensorflow_available()):
        return str(backend)
    if tensorflow_available():
        return "tensorflow"
    for backend in ("jax", "torch"):
        if importlib.util.find_spec(backend) is not None:
            os.environ["KERAS_BACKEND"] = backend
            return backend
    return "tensorflow"  # Keras then says that TensorFlow is missing


def _import_tensorflow_quietly() -> None:
    """On the TensorFlow backend, TensorFlow before Keras (Keras imports it), quietly."""
    if _keras_backend() == "tensorflow" and tensorflow_available():
        import_tensorflow("the TensorFlow backend")


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

# ``python -m mobilenet_zoo.detect`` (and classify) and the recipes parse their flags
# before TensorFlow loads, so ``--help`` and usage errors answer at once; the presets
# listing needs no TensorFlow at all.
_PARSE_FIRST_MODULES = ("mobilenet_zoo.detect", "mobilenet_zoo.classify", "mobilenet_zoo.presets",
                        "mobilenet_zoo.export", "mobilenet_zoo.convert")


def _parse_first() -> bool:
    """True while a CLI that parses its flags first is starting.

    ``python -m PKG.MOD`` imports ``PKG`` before running ``MOD``, with
    ``sys.argv[0] == "-m"`` meanwhile (Python docs, "Command line and
    environment", ``-m``); ``sys.orig_argv`` names ``MOD``. A script (a recipe)
    asks by defining ``MOBILENET_ZOO_PARSE_FIRST = True`` before its first
    ``mobilenet_zoo`` import. Either way the CLI then calls ``_load_everything()``.
    """
    if sys.argv[:1] == ["-m"]:
        argv = list(getattr(sys, "orig_argv", []))
        return "-m" in argv[:-1] and argv[argv.index("-m") + 1] in _PARSE_FIRST_MODULES
    return bool(getattr(sys.modules.get("__main__"), "MOBILENET_ZOO_PARSE_FIRST", False))


_loaded = False


def _load_everything() -> None:
    """TensorFlow (quietly, on its backend) and every public, serialisable class of the package."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    _import_tensorflow_quietly()
    # The order below is the layering of the package: backbone, task base, tasks.
    from mobilenet_zoo.backbone import MobileNetBackbone
    from mobilenet_zoo.classification import ImageClassifierPreprocessor, MobileNetClassifier
    from mobilenet_zoo.detection import (
        SSD,
        DetectionPreprocessor,
        FasterRCNN,
        faster_rcnn_mobilenet_v1,
        ssd_mobilenet_v1,
    )
    from mobilenet_zoo.distillation import losses as _distillation_losses  # noqa: F401
    from mobilenet_zoo.fold import fold_batch_norm
    from mobilenet_zoo.preprocessing import preprocess_input
    from mobilenet_zoo.presets import list_presets
    from mobilenet_zoo.segmentation import DeepLabV3, SegmentationPreprocessor
    from mobilenet_zoo.task import Task

    globals().update(
        MobileNetBackbone=MobileNetBackbone, Task=Task, MobileNetClassifier=MobileNetClassifier,
        ImageClassifierPreprocessor=ImageClassifierPreprocessor, SSD=SSD,
        ssd_mobilenet_v1=ssd_mobilenet_v1, FasterRCNN=FasterRCNN,
        faster_rcnn_mobilenet_v1=faster_rcnn_mobilenet_v1, DetectionPreprocessor=DetectionPreprocessor,
        DeepLabV3=DeepLabV3, SegmentationPreprocessor=SegmentationPreprocessor,
        preprocess_input=preprocess_input, fold_batch_norm=fold_batch_norm, list_presets=list_presets,
    )


def __getattr__(name: str):
    """Only reached while a parse-first CLI starts: the public names load on first use."""
    if name in __all__ and not _loaded:
        _load_everything()
        return globals()[name]
    raise AttributeError(f"module 'mobilenet_zoo' has no attribute {name!r}")


if not _parse_first():
    _load_everything()
