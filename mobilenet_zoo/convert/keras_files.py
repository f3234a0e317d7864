"""keras.applications ``.h5`` files, Keras 3 ``save_weights`` files and ``.keras`` models."""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from mobilenet_zoo import weights_io
from mobilenet_zoo.hub import catalog
from mobilenet_zoo.hub.tasks import get_task
from mobilenet_zoo.spec import BLOCK_SPECS

# keras.applications.mobilenet writes alpha as "1_0", "7_5", "5_0", "2_5" in its file names
# (BASE_WEIGHT_PATH + "mobilenet_%s_%d_tf.h5" % (alpha_text, rows), "..._tf_no_top.h5").
_KERAS_ALPHA_TEXT = {text: alpha for alpha, text in catalog.KERAS_ALPHA.items()}
_KERAS_NAME = re.compile("mobilenet_(" + "|".join(_KERAS_ALPHA_TEXT) + r")_(\d+)_tf(?:_no_top)?\.h5")
_SLIM_NAME = re.compile(r"mobilenet_v1_(\d+(?:\.\d+)?)_(\d+)")


def alpha_from_name(path: str | os.PathLike) -> tuple[float | None, int | None]:
    """Alpha and input size read from a published file name; (None, None) when absent.

    TF-slim: ``mobilenet_v1_0.25_128`` (checkpoint, ``.tgz``, frozen graph) -> (0.25, 128);
    keras.applications: ``mobilenet_2_5_128_tf.h5`` or ``mobilenet_5_0_160_tf_no_top.h5``
    -> (0.25, 128), (0.5, 160).
    """
    name = Path(path).name
    if m := _KERAS_NAME.search(name):
        return _KERAS_ALPHA_TEXT[m.group(1)], int(m.group(2))
    if m := _SLIM_NAME.search(name):
        return float(m.group(1)), int(m.group(2))
    return None, None


def _keras3_weight_shapes(path: str) -> dict[str, tuple] | None:
    """Dataset shapes of a Keras 3 ``save_weights`` file (``layers/<auto name>/vars/<i>``),
    or None for another file."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if "layers" not in f or "layer_names" in f.attrs:
                return None
            shapes: dict[str, tuple] = {}
            f.visititems(lambda name, obj: shapes.__setitem__(name, obj.shape)
                         if isinstance(obj, h5py.Dataset) else None)
            return shapes
    except OSError:
        return None


def read_keras3_weights(path: str | os.PathLike) -> dict[str, list[np.ndarray]]:
    """A Keras 3 ``model.save_weights`` file of a ``MobileNetBackbone`` or ``MobileNetClassifier``.

    Such files name layers by creation order (``conv2d_3``), not by the MobileNet names, so
    the model is rebuilt from the shapes (alpha from conv1's 32 * alpha filters, classes
    from the logits) and loaded with Keras' own ``load_weights``, which checks every variable.
    """
    MobileNetBackbone, MobileNetClassifier = get_task("MobileNetBackbone"), get_task("MobileNetClassifier")
    path = os.fspath(path)
    shapes = _keras3_weight_shapes(path) or {}
    stems = [s for s in shapes.values() if len(s) == 4 and s[:3] == (3, 3, 3)]
    if not stems:
        raise ValueError(f"{path}: a Keras weights file without MobileNet's 3x3 RGB stem conv; "
                         "not a MobileNetBackbone / MobileNetClassifier save_weights file.")
    alpha = stems[0][3] / 32
    logits = [s for s in shapes.values() if len(s) == 4 and s[:3] == (1, 1, int(1024 * alpha))]
    candidates = [lambda: MobileNetBackbone(alpha=alpha, input_shape=(224, 224, 3))]
    for k in {s[3] for s in logits}:
        for prep in (False, True):
            candidates.append(lambda k=k, prep=prep: MobileNetClassifier(
                MobileNetBackbone(alpha=alpha, input_shape=(224, 224, 3)), num_classes=k,
                include_preprocessing=prep))
    for build in candidates:
        model = build()
        try:
            with warnings.catch_warnings():  # Keras notes empty containers it skips; every
                warnings.filterwarnings("ignore", message="Skipping nested container")  # variable is checked
                model.load_weights(path)
        except ValueError:
            continue
        return {la.name: la.get_weights() for la in weights_io.iter_weighted_layers(model)}
    raise ValueError(f"{path}: a Keras save_weights file whose layers fit no MobileNetBackbone or "
                     f"MobileNetClassifier of alpha {alpha:g}; load it into the model that wrote it "
                     "and save that model as .keras, then convert the .keras file.")


def read_keras_file(path: str | os.PathLike) -> dict[str, list[np.ndarray]]:
    """keras.applications ``.h5`` (by layer name), a Keras 3 ``save_weights`` file of a
    MobileNet, or a Keras 3 ``.keras`` model."""
    path = os.fspath(path)
    if weights_io.is_by_name_file(path):
        return weights_io.read_by_name(path)
    if _keras3_weight_shapes(path) is not None:
        return read_keras3_weights(path)
    if path.endswith(".keras"):
        import keras

        try:
            model = keras.saving.load_model(path, compile=False)
        except Exception as err:  # zip, JSON or deserialisation errors of a broken file
            raise ValueError(f"{path}: not a readable .keras file (truncated, or saved by a class "
                             f"that is not registered): {err}") from err
        return {la.name: la.get_weights() for la in weights_io.iter_weighted_layers(model)}
    raise ValueError(
        f"{path}: not a keras.applications .h5 (layer_names layout), a Keras save_weights file "
        "nor a .keras file."
    )


def _keras_meta(weights: dict[str, list[np.ndarray]]) -> dict[str, Any]:
    if "conv_pw_13" not in weights:
        raise ValueError(
            "The Keras file has no `conv_pw_13` layer: not a keras.applications "
            f"MobileNet. Layers found: {sorted(weights)[:8]}..."
        )
    meta: dict[str, Any] = {"alpha": weights["conv_pw_13"][0].shape[-1] / BLOCK_SPECS[-1][1]}
    meta["depth_multiplier"] = int(weights["conv_dw_1"][0].shape[-1])
    if "conv_preds" in weights:
        meta["num_classes"] = int(weights["conv_preds"][0].shape[-1])
    return meta


