"""TensorFlow where it is the point: tf.data pipelines, SavedModel / TFLite export, converters.

The models run on every Keras 3 backend (JAX, PyTorch, TensorFlow) through
``keras.ops``; TensorFlow is imported only when one of its jobs is called, through
``import_tensorflow``. It imports quietly and, when TensorFlow is not installed,
raises one clear error that names the job and how to get it.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from types import ModuleType


class TensorFlowRequiredError(ImportError):
    """A TensorFlow-only job (tf.data, export, TF-format conversion) called without TensorFlow."""


def tensorflow_available() -> bool:
    """True when ``import tensorflow`` can succeed (found on the path, not blocked)."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"] is not None
    try:
        return importlib.util.find_spec("tensorflow") is not None
    except (ImportError, ValueError):
        return False


def import_tensorflow(purpose: str = "this feature") -> ModuleType:
    """``tensorflow``, imported with its C++ start-up lines discarded.

    TF writes absl / oneDNN / CUDA-stub lines to the stderr file descriptor
    before its log level applies (``TF_CPP_MIN_LOG_LEVEL`` does not reach them),
    so a CLI or recipe would start with a page of them. Python-level warnings and
    import errors are unaffected. Set ``MOBILENET_ZOO_TF_LOGS=1`` to see the lines.

    Args:
        purpose: what needs TensorFlow, for the error message (e.g. "TFLite export").

    Raises:
        TensorFlowRequiredError: TensorFlow is not installed (or cannot be imported).
    """
    if sys.modules.get("tensorflow") is not None:
        return sys.modules["tensorflow"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TF C++ INFO and WARNING logs
    try:
        if os.environ.get("MOBILENET_ZOO_TF_LOGS"):
            import tensorflow as tf
        else:
            tf = _import_quietly()
    except ImportError as err:
        raise TensorFlowRequiredError(
            f"{purpose} needs TensorFlow, which cannot be imported here ({err}). The models "
            "themselves run on JAX and PyTorch without it; for tf.data pipelines, SavedModel / "
            "TFLite export and TF-format converters install it: `pip install tensorflow`."
        ) from err
    _keep_off_the_gpus(tf)
    return tf


def _keep_off_the_gpus(tf: ModuleType) -> None:
    """Beside JAX or PyTorch, TensorFlow (there for tf.data) sees no GPU, so it does not
    reserve their memory (Keras' guides on tf.data with JAX do the same)."""
    backend = os.environ.get("KERAS_BACKEND") or getattr(
        getattr(sys.modules.get("keras"), "backend", None), "backend", lambda: "tensorflow")()
    if backend == "tensorflow":
        return
    try:
        tf.config.set_visible_devices([], "GPU")
    except RuntimeError:  # devices already initialised: too late, and harmless on CPU
        pass


def _import_quietly() -> ModuleType:
    try:
        saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    except OSError:  # no stderr descriptor (embedded interpreters)
        import tensorflow as tf

        return tf
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
    return tf
