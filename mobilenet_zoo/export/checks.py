"""What ``to_tflite`` / ``export_saved_model`` check before the slow conversion: the
target file, the quantisation request and its calibration samples, the post-processing
and metadata options (every request that cannot be honoured is an error, never a silent
downgrade; the TFLite converter docs, "Post-training quantization", describe what each
option needs)."""

from __future__ import annotations

import inspect
import os
from typing import Any

import keras
import numpy as np

from mobilenet_zoo.backbone import MobileNetBackbone
from mobilenet_zoo.classification.classifier import MobileNetClassifier
from mobilenet_zoo.detection.detector import Detector
from mobilenet_zoo.detection.preprocessor import DetectionPreprocessor
from mobilenet_zoo.detection.ssd import SSD
from mobilenet_zoo.export import metadata as tflite_metadata
from mobilenet_zoo.export import ssd_postprocess as detection_postprocess
from mobilenet_zoo.images import IMAGE_SUFFIXES, load_rgb
from mobilenet_zoo.task import Task
from mobilenet_zoo.tensorflow_support import import_tensorflow

POSTPROCESS = ("builtin_nms", "detection_postprocess", "detection_postprocess_fast")
# Measured (benchmarks/tflite_roofline.py, docs/deploy.md): the op with per-class NMS
# is slower than builtin NMS when many anchors of many classes pass the score
# threshold, so to_tflite keeps builtin NMS (the Keras detections, but for the order
# among equal scores: docs/deploy.md, "TFLite against Keras"); the export CLI (phones,
# MediaPipe) defaults to "detection_postprocess_fast", the TF OD API's TFLite default.
DEFAULT_SSD_POSTPROCESS = "builtin_nms"

def postprocess_takes_argmax(model: Task) -> bool:
    return "argmax" in inspect.signature(model.postprocess).parameters


def check_argmax(model: keras.Model) -> None:
    """``argmax=True`` needs class scores on the last axis: a classifier's, a
    segmentation model's, or a plain Keras model with one output tensor."""
    if isinstance(model, Task):
        if postprocess_takes_argmax(model) or isinstance(model, MobileNetClassifier):
            return
        raise ValueError(
            f"argmax=True needs class scores on the last axis (MobileNetClassifier, DeepLabV3 or a "
            f"plain Keras model with one output); a {type(model).__name__} already exports its final "
            "results (detections: boxes, classes, scores). Export it without argmax."
        )
    outputs = getattr(model, "outputs", None) or [None]  # a subclassed model: not known before tracing
    if isinstance(model, MobileNetBackbone) or len(outputs) != 1:
        raise ValueError(
            f"argmax=True needs one output of class scores; {type(model).__name__} `{model.name}` "
            f"has {len(outputs)} output(s)"
            + (" of features (a backbone has no classes)" if isinstance(model, MobileNetBackbone) else "")
            + ". Export it without argmax, or wrap it in a model whose single output is class scores."
        )


def check_target_file(path: str) -> None:
    """Cheap checks on an output file path, before any slow conversion."""
    if os.path.isdir(path) or path.endswith((os.sep, "/")):
        raise ValueError(
            f"{path!r} is a folder; the export needs a file name inside it (e.g. "
            f"{os.path.join(path, 'model.tflite')!r}). Nothing was converted."
        )
    parent = os.path.dirname(os.path.abspath(path))
    blocker = parent
    while blocker and not os.path.exists(blocker):
        blocker = os.path.dirname(blocker)
    if blocker and not os.path.isdir(blocker):
        raise ValueError(
            f"cannot write {path!r}: {blocker!r} is a file, not a folder. Nothing was converted."
        )


def open_target(path: str):
    """Creates the folders and the temporary file ``{path}.tmp-PID`` now, so an
    unwritable target fails before the conversion; returns (tmp path, open file)."""
    check_target_file(path)
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
        tmp_path = f"{path}.tmp-{os.getpid()}"
        return tmp_path, open(tmp_path, "wb")
    except OSError as err:
        raise ValueError(f"cannot write {path!r} ({err.strerror or err}). Nothing was converted.") from err


# Calibration images read from a folder, a tf.data.Dataset or an iterator: at most
# this many ("Post-training integer quantization": about 100 to 500 samples do).
MAX_REPRESENTATIVE = 100


def resize_mode_of(model: Any) -> str | None:
    """A detector's resize mode (its preprocessor's), else None."""
    return getattr(getattr(model, "preprocessor", None), "resize_mode", None)


def folder_samples(folder: str, height: int, width: int, limit: int = MAX_REPRESENTATIVE,
                   minus_one_to_one: bool = False, skipped: list | None = None,
                   resize_mode: str | None = None) -> list[np.ndarray]:
    """Up to ``limit`` images of ``folder`` (recursive, sorted) resized to
    ``(height, width)``, float32 pixels in [0, 255] (or [-1, 1] for a model
    without its own preprocessing), batch 1 each. Unreadable files are named in
    ``skipped``; a folder without a readable image is an error.

    ``resize_mode``: a detector's (``"stretch"`` / ``"pad"``): the images are resized as
    its ``predict`` resizes them (``DetectionPreprocessor.resize``), so int8 ranges are
    calibrated on what the model will see; ``None``: ``tf.image.resize`` (classifiers).
    """
    detector_resize = (DetectionPreprocessor((height, width), resize_mode=resize_mode).resize
                       if resize_mode is not None else None)

    tf = import_tensorflow("TFLite export")


    if not os.path.isdir(folder):
        raise ValueError(f"calibration images: {folder!r} is not a folder.")
    paths = sorted(os.path.join(root, f) for root, dirs, files in os.walk(folder)
                   for f in files if f.lower().endswith(IMAGE_SUFFIXES) and not f.startswith("."))
    samples = []
    for path in paths[:limit]:
        try:
            image = load_rgb(path)
        except (OSError, ValueError) as err:
            if skipped is not None:
                skipped.append(f"{path}: {err}")
            continue
        if detector_resize is not None:
            x = detector_resize(np.asarray(image, np.float32))[0][None]
        else:
            x = tf.image.resize(np.asarray(image, np.float32)[None], (height, width)).numpy()
        samples.append(x / 127.5 - 1.0 if minus_one_to_one else x)
    if not samples:
        raise ValueError(f"calibration images: {folder!r} holds no readable image "
                         f"({', '.join(IMAGE_SUFFIXES)}).")
    return samples


def _images_of(element):
    """The images of one element of a preprocessor pipeline: ``(images, targets)``
    (``model.preprocessor.pipeline(...)`` of every task), ``{"images": ...}`` or images."""
    if isinstance(element, dict):
        return element.get("images", element)
    if isinstance(element, (list, tuple)) and len(element) in (1, 2):
        return element[0]  # [input] (the converter's own form) or (images, targets)
    return element


def _dataset_items(data, shape: tuple, limit: int):
    """Batch-1 arrays from a ``tf.data.Dataset`` or an iterator (at most ``limit``):
    batches of ``shape`` are split, single images get a batch axis."""

    tf = import_tensorflow("TFLite export")

    if isinstance(data, tf.data.Dataset):
        data = data.as_numpy_iterator()
    items = []
    for element in data:
        x = _images_of(element)
        if hasattr(x, "numpy"):
            x = x.numpy()
        x = np.asarray(x) if not isinstance(x, (dict, str, bytes)) else x
        if isinstance(x, np.ndarray) and x.ndim == len(shape) and (x.shape[0] != 1 or shape[0] != 1):
            items.extend(x[i:i + 1] for i in range(len(x)))  # a batch: one sample per image
        else:
            items.append(x)
        if len(items) >= limit:
            break
    return items[:limit]


def representative_samples(representative_data, shape: tuple, model=None) -> list[np.ndarray]:
    """The calibration samples as float32 arrays of exactly ``shape`` (the exported
    signature's input, batch 1), checked before conversion: the TFLite converter
    calibrates int8 ranges on them ("Post-training integer quantization",
    tensorflow.org/lite/performance/post_training_integer_quant), and with none
    it would leave the model float.

    ``representative_data`` is a folder of images (str / PathLike; at most
    ``MAX_REPRESENTATIVE``, resized to the input), a ``tf.data.Dataset`` or an
    iterator as the model's preprocessor produces them
    (``model.preprocessor.pipeline(source, batch_size)``: batches of
    ``(images, targets)``; the first ``MAX_REPRESENTATIVE`` images), or arrays
    (a list, one ``(N, H, W, C)`` array, or a function returning either).
    A model without its own preprocessing (``include_preprocessing=False``) takes
    [-1, 1]; samples in [0, 255] for it are refused (the calibrated ranges would
    be wrong), not rescaled silently."""
    what = ("`representative_data` must be a folder of images, a tf.data.Dataset or iterator of "
            "images (or of (images, targets) batches, as `model.preprocessor.pipeline(...)` gives "
            "them), or a non-empty list (or a function returning one) of float arrays of shape "
            f"{shape} or {shape[1:]} (the model's input)")
    if representative_data is None:
        raise ValueError(f"quantize='int8' needs calibration inputs: {what}.")
    minus_one_to_one = model is not None and getattr(model, "include_preprocessing", True) is False
    if isinstance(representative_data, (str, os.PathLike)):
        folder = os.fspath(representative_data)
        if not os.path.isdir(folder):
            raise ValueError(f"{what}; {folder!r} is not a folder.")
        return folder_samples(folder, shape[1], shape[2], minus_one_to_one=minus_one_to_one,
                              resize_mode=resize_mode_of(model))
    data = representative_data() if callable(representative_data) else representative_data
    if isinstance(data, np.ndarray) and data.ndim == len(shape):  # one array: a batch of samples
        data = [x[None] for x in data]
    if isinstance(data, (str, bytes, dict)) or not hasattr(data, "__iter__"):
        raise ValueError(f"{what}; got {type(data).__name__}.")
    if isinstance(data, (list, tuple, np.ndarray)):
        items = list(data)
    else:  # a tf.data.Dataset, generator or other iterator: maybe endless (.repeat())
        items = _dataset_items(data, shape, MAX_REPRESENTATIVE)
    if not items:
        raise ValueError(f"{what}; got none. Without them the converter would write a float32 model.")
    samples = []
    for i, item in enumerate(items):
        item = _images_of(item) if isinstance(item, (list, tuple, dict)) else item
        if hasattr(item, "numpy"):
            item = item.numpy()
        try:
            x = np.asarray(item, np.float32)
        except (TypeError, ValueError):
            raise ValueError(f"{what}; item {i} is {type(item).__name__}, not an array.") from None
        if x.ndim == len(shape) - 1:
            x = x[None]
        if x.ndim == len(shape) and shape[0] == 1 and x.shape[0] > 1:  # a batch: split it
            parts = [x[j:j + 1] for j in range(len(x))]
        else:
            parts = [x]
        for x in parts:
            if x.ndim != len(shape) or any(d is not None and d != n for d, n in zip(shape, x.shape)):
                raise ValueError(f"{what}; item {i} has shape {x.shape}.")
            if not np.isfinite(x).all():
                raise ValueError(f"{what}; item {i} has non-finite values (NaN or inf).")
            samples.append(x)
    high = max(float(np.abs(x).max()) for x in samples)
    if minus_one_to_one and high > 1.5:
        raise ValueError(f"this model has no preprocessing layer (include_preprocessing=False) and "
                         f"takes images in [-1, 1]; the calibration samples reach {high:g} (pixels "
                         "in [0, 255]?). Give them as the model takes them (x / 127.5 - 1).")
    return samples


def check_postprocess(model, postprocess: str | None) -> str | None:
    """The post-processing to export: ``DEFAULT_SSD_POSTPROCESS`` for an SSD unless
    asked, ``"builtin_nms"`` for Faster R-CNN, None for the others."""

    if postprocess is not None and postprocess not in POSTPROCESS:
        raise ValueError(f"`postprocess` must be one of {POSTPROCESS} (or None: the default), "
                         f"got {postprocess!r}.")
    if isinstance(model, SSD):
        postprocess = postprocess or DEFAULT_SSD_POSTPROCESS
        if postprocess != "builtin_nms":

            detection_postprocess.check_ssd(model)
        return postprocess
    if isinstance(model, Detector):
        if postprocess not in (None, "builtin_nms"):
            raise ValueError(f"postprocess={postprocess!r}: only an SSD exports through the "
                             f"TFLite_Detection_PostProcess op; {type(model).__name__} takes "
                             "'builtin_nms' (or leave `postprocess` unset).")
        return "builtin_nms"
    if postprocess is not None:
        raise ValueError(f"postprocess={postprocess!r} is for detectors (detection_postprocess*: SSD "
                         f"only); {type(model).__name__} has no NMS. Leave `postprocess` unset.")
    return None


def check_metadata(metadata) -> dict | None:
    """``metadata=`` of ``to_tflite``: None (no metadata) or the checked info dict."""
    if metadata is False or metadata is None:
        return None
    if metadata is True:
        return {}
    if isinstance(metadata, dict):

        return tflite_metadata.check_info(metadata)
    raise ValueError(f"`metadata` must be True, False or a dict, got {type(metadata).__name__}.")


def pixel_range_samples(model, samples: list[np.ndarray]) -> list[np.ndarray]:
    """A uint8 input means camera pixels: the calibrated input range must be
    [0, 255] exactly (scale 1, zero point 0). The samples must hold pixels
    (values in [0, 255]); one pixel of the first is set to 0 and one to 255
    so the converter's min / max are those."""
    if not getattr(model, "include_preprocessing", False):
        raise ValueError("`uint8_io=True` feeds camera pixels in [0, 255]: the model must take "
                         "them (build it with include_preprocessing=True).")
    low, high = min(float(s.min()) for s in samples), max(float(s.max()) for s in samples)
    if low < 0 or high > 255:
        raise ValueError(f"`uint8_io=True` needs calibration images of pixels in [0, 255]; the "
                         f"samples range over [{low:g}, {high:g}].")
    first = samples[0].copy()
    first.reshape(-1)[0], first.reshape(-1)[-1] = 0.0, 255.0
    return [first, *samples[1:]]
