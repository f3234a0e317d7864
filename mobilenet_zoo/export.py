"""Export to the phone and to servers: TFLite / LiteRT flatbuffers and SavedModels.

Both go through the task's own serving path (``Task.serving_fn``): the exported
graph is ``model.postprocess(model(images), export=True)``, the code ``predict``
runs. For an ``SSD`` that is box decoding and per-class NMS, so the ``.tflite``
file returns final detections (``boxes`` in the model's
``bounding_box_format``, ``classes``, ``scores``, ``num_detections``). Plain
Keras models (not tasks) export their outputs as they are.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from mobilenet_zoo.backbone import MobileNetBackbone
from mobilenet_zoo.fold import fold_batch_norm
from mobilenet_zoo.task import Task, serving_function

QUANTIZE = (None, "dynamic", "int8", "float16")


def _serving_fn(model: keras.Model, image_size, argmax: bool, fold: bool = True):
    """(model at ``image_size``, BatchNorm folded, its serving function)."""
    if fold and isinstance(model, (Task, MobileNetBackbone)):
        model = fold_batch_norm(model)
    if image_size is not None:
        size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        if isinstance(model, Task):
            model = model.with_image_size(size)
        elif hasattr(model, "with_input_shape"):  # a MobileNetBackbone
            model = model.with_input_shape((*size, model.inputs[0].shape[-1]))
        else:
            raise ValueError(
                f"`image_size` needs a model of this package; got {type(model).__name__}. "
                "Build the model with a static input size instead."
            )
    if isinstance(model, Task):
        kwargs = {"argmax": True} if argmax else {}
        return model, model.serving_fn(**kwargs)
    if argmax:
        return model, serving_function(
            model, postprocess=lambda out: tf.argmax(out, axis=-1, output_type=tf.int32))
    return model, serving_function(model)


def _write_archive(model: keras.Model, serving_fn, directory: str) -> None:
    # keras.export.ExportArchive tracks the Keras 3 variables properly
    # (tf.lite's from_concrete_functions leaves them unbound).
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serve", serving_fn)
    archive.write_out(directory, verbose=False)


def export_saved_model(
    model: keras.Model, path: str | os.PathLike, image_size: int | tuple | None = None,
    fold: bool = True,
) -> str:
    """Writes a SavedModel with one ``serve`` signature: images in, results out.

    ``fold=True`` serves ``fold_batch_norm(model)`` (same outputs, about 1.5x
    faster on CPU) for this package's models.

    For a task model the results are ``predict``'s (detections for SSD). The
    directory is written beside ``path`` and renamed into place, so an existing
    export is replaced only by a complete one.

    Example:

    ```python
    export_saved_model(model, "exported/ssd")   # then TF Serving or tf.saved_model.load
    ```
    """
    path = os.fspath(path)
    model, fn = _serving_fn(model, image_size, argmax=False, fold=fold)
    parent = os.path.dirname(os.path.abspath(path)) or "."
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent, prefix=".export-")
    try:
        _write_archive(model, fn, tmp)
        if os.path.isdir(path):
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp)
    return path


def to_tflite(
    model,
    path: str | os.PathLike | None = None,
    quantize: str | None = None,
    representative_data: Iterable[np.ndarray] | Callable[[], Iterable] | None = None,
    serving_fn=None,
    image_size: int | tuple | None = None,
    argmax: bool = False,
    fold: bool = True,
) -> bytes:
    """Converts a Keras model (SSD with its decoding and NMS) to a TFLite flatbuffer.

    Args:
        model: an ``SSD``, ``MobileNetClassifier``, segmentation model or any Keras model
            with a static input size.
        path: where to write the ``.tflite`` file (optional).
        quantize: ``None`` (float32), ``"dynamic"`` (int8 weights), ``"float16"``
            or ``"int8"`` (full-integer where possible, float I/O; needs
            ``representative_data``).
        representative_data: input batches (arrays of the model's input shape with
            batch 1) for ``"int8"`` calibration.
        serving_fn: a ``tf.function`` to export instead of the default.
        image_size: rebuild a task model at this side or ``(height, width)``
            first (TFLite needs a static size; e.g. a dynamic-size DeepLabV3);
            weights are copied.
        argmax: export ``argmax`` over the last axis (class ids) instead of scores
            (not for SSD, whose output is already detections).
        fold: export ``fold_batch_norm(model)`` (this package's models); the
            converter folds BatchNorm too, so the file is the same size either way.

    Returns:
        The flatbuffer bytes.
    """
    if quantize not in QUANTIZE:
        raise ValueError(f"`quantize` must be one of {QUANTIZE}, got {quantize!r}.")
    if quantize == "int8" and representative_data is None:
        raise ValueError("quantize='int8' needs `representative_data` (calibration inputs).")
    if serving_fn is None:
        model, serving_fn = _serving_fn(model, image_size, argmax, fold)
    with tempfile.TemporaryDirectory() as tmp:
        _write_archive(model, serving_fn, tmp)
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp, signature_keys=["serve"])
        flatbuffer = _convert(converter, quantize, representative_data)
    if path is not None:
        path = os.fspath(path)
        os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
        tmp_path = f"{path}.tmp-{os.getpid()}"
        with open(tmp_path, "wb") as f:  # write then rename: never a partial .tflite
            f.write(flatbuffer)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    return flatbuffer


def _convert(converter, quantize, representative_data) -> bytes:
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize in ("dynamic", "float16", "int8"):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if quantize == "int8":
        data = representative_data() if callable(representative_data) else representative_data

        def gen():
            for x in data:
                yield [np.asarray(x, np.float32)]

        converter.representative_dataset = gen
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
            tf.lite.OpsSet.TFLITE_BUILTINS,
        ]
    return converter.convert()


class TFLiteRunner:
    """Runs a ``.tflite`` model with LiteRT (``ai_edge_litert``), TF's interpreter as fallback.

    ``runner(images)`` returns a dict of output arrays named as the Keras outputs.
    """

    def __init__(self, model_content: bytes | str | os.PathLike, num_threads: int = 2) -> None:
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:  # pragma: no cover - fallback when LiteRT is absent
            Interpreter = tf.lite.Interpreter
        kwargs: dict[str, Any] = {"num_threads": num_threads}
        if isinstance(model_content, bytes):
            kwargs["model_content"] = model_content
        else:
            kwargs["model_path"] = os.fspath(model_content)
        self.interpreter = Interpreter(**kwargs)
        self.runner = self.interpreter.get_signature_runner()
        self.input_name = next(iter(self.runner.get_input_details()))

    def __call__(self, images: np.ndarray) -> dict[str, np.ndarray]:
        return self.runner(**{self.input_name: np.asarray(images, np.float32)})
