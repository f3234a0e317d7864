"""The one place where the package touches the choice of Keras backend.

Keras 3 chooses its backend itself: ``KERAS_BACKEND``, else ``~/.keras/keras.json``,
else TensorFlow (keras/src/backend/config.py). The package keeps that choice and
adds one thing, ``prepare_backend()``, called before the package's first Keras
import by the entry points (``mobilenet-zoo`` sub-commands, recipes) and by the
first use of a name from ``mobilenet_zoo`` (``from mobilenet_zoo import SSD``):

* TF-free fallback: when neither place names a backend (or keras.json names a
  TensorFlow that is not installed: Keras writes ``"tensorflow"`` there on its first
  start whatever is installed) and TensorFlow is missing, ``KERAS_BACKEND`` is set to
  JAX, else PyTorch, whichever is installed, so a TensorFlow-free install runs as it is;
* on the TensorFlow backend, TensorFlow is imported before Keras imports it, with its
  C++ start-up lines discarded (``tensorflow_support.import_tensorflow``).

``import mobilenet_zoo`` alone calls nothing here. A program that imports a
submodule directly (``from mobilenet_zoo.backbone import MobileNetBackbone``) gets
Keras' own choice, as with any Keras library.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys

from mobilenet_zoo.tensorflow_support import import_tensorflow, tensorflow_available

FALLBACK_BACKENDS = ("jax", "torch")
# The backends Keras 3 knows (keras/src/backend/config.py, ``KERAS_BACKEND``).
KERAS_BACKENDS = ("tensorflow", "jax", "torch", "numpy", "openvino")


class BackendError(RuntimeError):
    """``KERAS_BACKEND`` (or keras.json) names no Keras backend."""


def configured_backend() -> str | None:
    """The backend Keras will take: an imported Keras' own, else ``KERAS_BACKEND``, else
    keras.json's (unless it names a TensorFlow that is not installed), else None."""
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
    if backend and (backend != "tensorflow" or tensorflow_available()):
        return str(backend)
    return None


def check_backend() -> str | None:
    """``configured_backend()``, checked without importing anything.

    Raises:
        BackendError: ``KERAS_BACKEND`` or keras.json names no Keras backend.
    """
    backend = configured_backend()
    if backend is not None and backend not in KERAS_BACKENDS and "keras" not in sys.modules:
        where = "KERAS_BACKEND" if os.environ.get("KERAS_BACKEND") else "~/.keras/keras.json"
        raise BackendError(f"{where} names the Keras backend {backend!r}, which Keras does not have; "
                           f"use one of {', '.join(KERAS_BACKENDS)} (or leave it unset).")
    return backend


def prepare_backend() -> str:
    """Applies the TF-free fallback and the quiet TensorFlow import; returns the backend.

    Idempotent; does nothing once Keras is imported (its choice is then made).

    Raises:
        BackendError: ``KERAS_BACKEND`` or keras.json names no Keras backend.
    """
    backend = check_backend()
    if backend is None:
        if tensorflow_available():
            backend = "tensorflow"  # Keras' own default
        else:
            backend = next((b for b in FALLBACK_BACKENDS if importlib.util.find_spec(b)), "tensorflow")
            if backend != "tensorflow":
                os.environ["KERAS_BACKEND"] = backend  # Keras reads it when it starts
    if backend == "tensorflow" and "keras" not in sys.modules and tensorflow_available():
        import_tensorflow("the TensorFlow backend")
    return backend
