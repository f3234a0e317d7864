"""Export to the phone and to servers: TFLite / LiteRT flatbuffers and SavedModels.

Both go through the task's own serving path (``Task.serving_function``): the exported
graph is the model's ``postprocess`` on its outputs, the code ``predict`` runs (for
a ``Detector``, ``postprocess(model(images), tflite_ops=True)``). For a detector
(``SSD``, ``FasterRCNN``) that is box decoding and per-class NMS, so the ``.tflite``
file returns final detections (``boxes`` in the model's
``bounding_box_format``, ``classes``, ``scores``, ``num_detections``). Plain
Keras models (not tasks) export their outputs as they are.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterable
from typing import Any

import keras
import numpy as np

from mobilenet_zoo.backbone import MobileNetBackbone
from mobilenet_zoo.export import metadata as tflite_metadata
from mobilenet_zoo.export import ssd_postprocess as detection_postprocess
from mobilenet_zoo.export.checks import (  # noqa: F401  (POSTPROCESS: part of the export API)
    DEFAULT_SSD_POSTPROCESS,
    POSTPROCESS,
    check_argmax,
    check_metadata,
    check_postprocess,
    check_target_file,
    open_target,
    pixel_range_samples,
    postprocess_takes_argmax,
    representative_samples,
)
from mobilenet_zoo.fold import fold_batch_norm
from mobilenet_zoo.task import Task, make_serving_function
from mobilenet_zoo.tensorflow_support import import_tensorflow

# Export is TensorFlow's job on every backend: without it, one clear error here.
tf = import_tensorflow("SavedModel / TFLite export (mobilenet_zoo.export)")

QUANTIZE = (None, "dynamic", "int8", "float16")
# SSD post-processing in the .tflite file: one builtin NMS per class (this
# package's DetectionDecoder, the Keras layout) or TFLite's
# TFLite_Detection_PostProcess op (the TF OD API layout; mobilenet_zoo.export.ssd_postprocess).


def _serving_model(model: keras.Model, image_size, argmax: bool, fold: bool = True,
                postprocess: str | None = None):
    """(model at ``image_size``, BatchNorm folded, its serving function)."""
    if keras.backend.backend() != "tensorflow":
        raise ValueError(
            "SavedModel / TFLite export traces the model with TensorFlow, and this process runs "
            f"Keras on {keras.backend.backend()!r}. Save it (model.save('model.keras')) and "
            "export the file on the TensorFlow backend: KERAS_BACKEND=tensorflow mobilenet-zoo "
            "export --model model.keras --out model.tflite"
        )
    if argmax:
        check_argmax(model)
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
    if postprocess in ("detection_postprocess", "detection_postprocess_fast"):

        return model, detection_postprocess.serving_function(
            model, use_regular_nms=postprocess == "detection_postprocess")
    if isinstance(model, Task):
        if argmax and postprocess_takes_argmax(model):  # DeepLabV3: class id per pixel
            return model, model.serving_function(argmax=True)
        if argmax:  # MobileNetClassifier: class id per image, from its final scores
            post = functools.partial(model.postprocess, tflite_ops=True)
            return model, make_serving_function(model, postprocess=lambda out: _argmax(post(out)))
        return model, model.serving_function()
    if argmax:
        return model, make_serving_function(model, postprocess=_argmax)
    return model, make_serving_function(model)


def _argmax(scores):
    # tf.argmax with an int32 output: the TFLite builtin ARG_MAX.
    return tf.argmax(scores, axis=-1, output_type=tf.int32)



def _write_archive(model: keras.Model, serving_function, directory: str) -> None:
    # keras.export.ExportArchive tracks the Keras 3 variables properly
    # (tf.lite's from_concrete_functions leaves them unbound).
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serve", serving_function)
    archive.write_out(directory, verbose=False)


SERVING_NOTES = os.path.join("assets.extra", "mobilenet_zoo.json")


def _write_serving_notes(model: keras.Model, directory: str) -> None:
    """What a client must do before calling ``serve``, beside the signature: the input
    size and, for a detector, its ``resize_mode`` and box format (``assets.extra/``: files
    that TensorFlow's loaders and TF Serving carry but never read)."""
    pre = getattr(model, "preprocessor", None)
    if getattr(pre, "resize_mode", None) is None:
        return
    height, width = (int(v) for v in model.inputs[0].shape[1:3])
    notes = {"input": f"float32 RGB images (batch, {height}, {width}, 3)",
             "image_size": [height, width], "resize_mode": pre.resize_mode,
             "resize": tflite_metadata.RESIZE_MODE_TEXT[pre.resize_mode].format(h=height, w=width),
             "bounding_box_format": pre.bounding_box_format}
    os.makedirs(os.path.join(directory, "assets.extra"), exist_ok=True)
    with open(os.path.join(directory, SERVING_NOTES), "w") as f:
        json.dump(notes, f, indent=2)


def export_saved_model(
    model: keras.Model, path: str | os.PathLike, image_size: int | tuple | None = None,
    fold: bool = True,
) -> str:
    """Writes a SavedModel with one ``serve`` signature: images in, results out.

    ``fold=True`` serves ``fold_batch_norm(model)`` (same outputs, about 1.5x
    faster on CPU) for this package's models.

    For a task model the results are ``predict``'s on model-size images (detections for
    a ``Detector``, boxes on the model input; the client resizes as the model's
    ``resize_mode`` says, written to ``assets.extra/mobilenet_zoo.json``). The
    directory is written beside ``path`` and renamed into place, so an existing
    export is replaced only by a complete one. ``path`` must be new, empty or an
    earlier SavedModel (it holds ``saved_model.pb``): any other file or folder is
    refused before anything is traced, never deleted.

    Example:

    ```python
    export_saved_model(model, "exported/ssd")   # then TF Serving or tf.saved_model.load
    ```
    """
    path = os.fspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"{path!r} is a file; a SavedModel is a folder. Give a new folder name. "
                         "Nothing was exported.")
    if os.path.isdir(path) and os.listdir(path) and not os.path.isfile(
            os.path.join(path, "saved_model.pb")):
        raise ValueError(f"{path!r} is a folder that holds other files (no saved_model.pb): it is "
                         "not replaced. Give a new or empty folder, or an earlier SavedModel. "
                         "Nothing was exported.")
    check_target_file(os.path.join(path, "saved_model.pb"))
    parent = os.path.dirname(os.path.abspath(path)) or "."
    try:
        os.makedirs(parent, exist_ok=True)
        tmp = tempfile.mkdtemp(dir=parent, prefix=".export-")
    except OSError as err:
        raise ValueError(f"cannot write {path!r} ({err.strerror or err}). Nothing was exported.") from err
    old = f"{tmp}-old"
    try:
        model, fn = _serving_model(model, image_size, argmax=False, fold=fold)
        _write_archive(model, fn, tmp)
        _write_serving_notes(model, tmp)
        if os.path.isdir(path):
            os.replace(path, old)  # keep the earlier export until the new one is in place
        try:
            os.replace(tmp, path)
        except OSError:
            if os.path.isdir(old):
                os.replace(old, path)
            raise
    finally:
        for leftover in (tmp, old):
            if os.path.isdir(leftover):
                shutil.rmtree(leftover)
    return path


def to_tflite(
    model,
    path: str | os.PathLike | None = None,
    quantize: str | None = None,
    representative_data: Iterable[np.ndarray] | Callable[[], Iterable] | None = None,
    serving_function=None,
    image_size: int | tuple | None = None,
    argmax: bool = False,
    fold: bool = True,
    postprocess: str | None = None,
    metadata: bool | dict = True,
    uint8_io: bool = False,
    serving_fn=None,
) -> bytes:
    """Converts a Keras model (a detector with its decoding and NMS) to a TFLite flatbuffer.

    Every request is checked before the (slow) conversion, and one that cannot be
    honoured is an error, never a silent downgrade: an unknown ``quantize``;
    ``"int8"`` without calibration samples, or with samples of another shape;
    ``representative_data`` with another ``quantize`` (the converter would ignore
    it); ``argmax`` for a model without class scores; ``path`` a folder or
    unwritable. The file is written to ``{path}.tmp-PID`` and renamed into place,
    and the temporary file is removed on every failure.

    Args:
        model: a ``Detector`` (``SSD``, ``FasterRCNN``), ``MobileNetClassifier``, segmentation model or any Keras model
            with a static input size.
        path: where to write the ``.tflite`` file (optional).
        quantize: ``None`` (float32), ``"dynamic"`` (int8 weights), ``"float16"``
            or ``"int8"`` (full-integer where possible, float I/O; needs
            ``representative_data``).
        representative_data: for ``"int8"`` only, the calibration images, as the
            model takes them: a folder of images (read recursively, resized to the
            input; at most 100); the task's own preprocessor pipeline,
            ``model.preprocessor.pipeline(source, batch_size)`` (a ``tf.data.Dataset``
            of ``(images, targets)`` batches; any dataset or iterator of images or of
            such pairs; the first 100 images, so a repeating dataset is fine); or a
            non-empty list (or a function returning one) of arrays of the model's
            input shape with batch 1, ``(1, H, W, C)``, or without the batch axis;
            or one ``(N, H, W, C)`` array. Read into memory and checked before
            conversion; anything else is refused with the accepted forms.
        serving_function: a ``tf.function`` to export instead of the default (then
            ``image_size`` and ``argmax`` must be left unset).
        image_size: rebuild a task model at this side or ``(height, width)``
            first (TFLite needs a static size; e.g. a dynamic-size DeepLabV3);
            weights are copied.
        argmax: export class ids (``argmax`` over the last axis, int32) instead of
            scores: for ``MobileNetClassifier`` (one id per image), ``DeepLabV3``
            (one per pixel) and plain Keras models with one output. Refused for
            detectors (``SSD``, ``FasterRCNN``), whose outputs are already detections.
        fold: export ``fold_batch_norm(model)`` (this package's models); the
            converter folds BatchNorm too, so the file is the same size either way.
        postprocess: an ``SSD``'s post-processing in the file (others take none):
            ``"builtin_nms"`` (default, chosen by measurement: docs/deploy.md):
            this package's per-class builtin NMS, the Keras ``predict`` layout
            (int32 classes, -1 padding; MediaPipe refuses int32 outputs);
            ``"detection_postprocess"`` (the export CLI's default): TFLite's
            ``TFLite_Detection_PostProcess`` op with per-class ("regular") NMS,
            the Keras detections in the TF OD API's float32 layout (``boxes`` in
            ``bounding_box_format``, ``classes`` 0-based as floats, ``scores``,
            ``num_detections``; padding zeros), which MediaPipe Tasks and every
            TFLite runtime run; ``"detection_postprocess_fast"``: the same op
            with its fast class-agnostic NMS (the TF OD API's TFLite default;
            one class per box, so multi-class results can differ from Keras;
            in int8 with 90 classes about 2x faster than ``"builtin_nms"`` and
            7x than ``"detection_postprocess"``, docs/deploy.md). In int8 the op's
            boxes stay float after it (``detection_postprocess.float_box_clip``).
            A Faster R-CNN always exports builtin NMS.
        metadata: write TFLite model metadata (``metadata_schema.fbs``) and the
            label file into the file: ``True`` (default), ``False``, or a dict
            with ``preset`` (name, description, licence and source of that
            preset), ``name``, ``description``, ``version``, ``author``,
            ``license``, ``labels``, ``normalization`` ``(mean, std)``,
            ``segmenter_activation`` (see ``mobilenet_zoo.export.metadata``).
        uint8_io: with ``quantize="int8"``: a uint8 image input (pixels as
            cameras give them; the model must take pixels in [0, 255],
            ``include_preprocessing=True``) and uint8 outputs for classifiers and
            segmenters (detector outputs stay float32).

    A quantization-aware model (``mobilenet_zoo.qat.quantization_aware``) exports with
    ``quantize="int8"`` only, without ``representative_data`` (its trained FakeQuant ranges
    are the file's) and at its own size.

    Returns:
        The flatbuffer bytes.

    Raises:
        ValueError: for any of the requests above that cannot be honoured; nothing
            is written then.
    """
    if serving_fn is not None:  # the name before 0.2: one name per idea now
        warnings.warn("`serving_fn=` is deprecated: pass `serving_function=`.", DeprecationWarning,
                      stacklevel=2)
        serving_function = serving_function if serving_function is not None else serving_fn
    if quantize not in QUANTIZE:
        raise ValueError(f"`quantize` must be one of {QUANTIZE}, got {quantize!r}.")
    if quantize != "int8" and representative_data is not None:
        raise ValueError(
            f"`representative_data` is only used by quantize='int8' (got quantize={quantize!r}); "
            "pass quantize='int8' to calibrate with it, or leave it out.")
    if serving_function is not None and (argmax or image_size is not None or postprocess is not None):
        raise ValueError("`serving_function` replaces the exported function: `argmax`, `image_size` and "
                         "`postprocess` cannot apply to it. Build them into `serving_function`, or leave "
                         "it out.")
    if serving_function is None:
        postprocess = check_postprocess(model, postprocess)
    info = check_metadata(metadata)
    qat = bool(getattr(model, "quantization_aware", False))  # mobilenet_zoo.qat's models
    if qat:
        _check_quantization_aware(model, quantize, representative_data, image_size)
    if uint8_io and quantize != "int8":
        raise ValueError(f"`uint8_io=True` needs quantize='int8' (got quantize={quantize!r}): only a "
                         "fully quantised model has uint8 inputs and outputs.")
    if path is not None:
        path = os.fspath(path)
        check_target_file(path)
    if serving_function is None:
        model, serving_function = _serving_model(model, None if qat else image_size, argmax, fold, postprocess)
    samples = None
    if quantize == "int8":
        signature = getattr(serving_function, "input_signature", None)
        shape = tuple(signature[0].shape) if signature else (1, *model.inputs[0].shape[1:])
        samples = None if qat else representative_samples(representative_data, shape, model)
        if uint8_io and not qat:
            samples = pixel_range_samples(model, samples)
    tmp_path, target = open_target(path) if path is not None else (None, None)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            _write_archive(model, serving_function, tmp)
            converter = tf.lite.TFLiteConverter.from_saved_model(tmp, signature_keys=["serve"])
            flatbuffer = _convert(converter, quantize, samples,
                                  custom_ops=str(postprocess).startswith("detection_postprocess"),
                                  uint8_io=uint8_io, float_outputs=postprocess is not None, qat=qat)
        if quantize == "int8" and str(postprocess).startswith("detection_postprocess"):

            # The clip of the op's float boxes stays float (not rounded to 1/255).
            flatbuffer = detection_postprocess.float_box_clip(flatbuffer)
        if info is not None:

            flatbuffer = tflite_metadata.populate(
                flatbuffer, *tflite_metadata.for_model(model, flatbuffer, info))
        if target is not None:
            with target:  # write then rename: never a partial .tflite
                target.write(flatbuffer)
                target.flush()
                os.fsync(target.fileno())
            os.replace(tmp_path, path)
    finally:
        if target is not None:
            target.close()
            if os.path.exists(tmp_path):
                os.remove(tmp_path)
    return flatbuffer



def _check_quantization_aware(model, quantize, representative_data, image_size) -> None:
    if quantize != "int8":
        raise ValueError(f"`{model.name}` is quantization-aware: its file is int8 (quantize='int8'); "
                         f"got quantize={quantize!r}. Export the float model for a float file.")
    if representative_data is not None:
        raise ValueError(f"`{model.name}` is quantization-aware: its trained ranges are the file's, "
                         "so `representative_data` is not used; leave it out.")
    if image_size is not None:
        size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        if size != tuple(model.inputs[0].shape[1:3]):
            raise ValueError(f"`{model.name}` is quantization-aware at {tuple(model.inputs[0].shape[1:3])}: "
                             "a rebuild at another size would lose its ranges. Leave `image_size` out, "
                             "or build the float model at that size first.")


def _convert(converter, quantize, samples, custom_ops: bool = False, uint8_io: bool = False,
             float_outputs: bool = False, qat: bool = False) -> bytes:
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if custom_ops:  # TFLite_Detection_PostProcess, registered by every TFLite runtime
        converter.allow_custom_ops = True
    if quantize in ("dynamic", "float16", "int8"):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    # A quantization-aware model's ranges come from its FakeQuant ops: the converter's
    # quantization-aware mode (TFLiteConverterBase's QuantizationMode), which needs the default
    # op set and no representative data.
    if quantize == "int8" and not qat:
        converter.representative_dataset = lambda: ([x] for x in samples)
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
            tf.lite.OpsSet.TFLITE_BUILTINS,
        ]
    if quantize == "int8" and uint8_io:
        converter.inference_input_type = tf.uint8
        if not float_outputs:
            converter.inference_output_type = tf.uint8
    return converter.convert()


class TFLiteRunner:
    """Runs a ``.tflite`` model with LiteRT (``ai_edge_litert``), TF's interpreter as fallback.

    ``runner(images)`` returns a dict of output arrays named as the Keras outputs, each
    with a batch axis, as ``keras.Model.predict``: ``images`` is a batch ``(N, H, W, C)``
    of any ``N`` or one image ``(H, W, C)`` (results with a batch axis of 1). The files
    this package writes have a fixed batch (1 by default; their ``Reshape`` and
    ``TFLite_Detection_PostProcess`` ops cannot be resized), so a batch of another size
    runs in chunks of the file's batch, the last one padded with zeros (dropped from the
    results). Images are not resized: ``H, W, C`` must be the file's, RGB (a detector's
    ``x, frame = model.preprocessor.resize(image)`` makes ``x`` so; ``frame`` maps the
    boxes back to the image).

    Example:

    ```python
    runner = TFLiteRunner("ssd.tflite")
    detections = runner(images)          # (N, 300, 300, 3) -> boxes (N, K, 4), ...
    one = runner(image)                  # (300, 300, 3)    -> boxes (1, K, 4), ...
    ```
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
        self.input_name, details = next(iter(self.runner.get_input_details().items()))
        #: the file's input shape (batch, height, width, channels) and dtype.
        shape = [int(v) for v in details["shape"]]
        signature = details.get("shape_signature")
        if signature is not None and len(signature) and int(signature[0]) < 0:
            shape[0] = -1  # a batch of any size (the signature runner resizes the input)
        self.input_shape = tuple(shape)
        self.input_dtype = np.dtype(details["dtype"])

    def __call__(self, images: np.ndarray) -> dict[str, np.ndarray]:
        images = np.asarray(images)
        given = tuple(images.shape)
        expected = self.input_shape[1:]
        if images.ndim == len(expected):  # one image: a batch of one
            images = images[None]
        if images.ndim != len(self.input_shape) or tuple(images.shape[1:]) != expected or not len(images):
            raise ValueError(self._shape_error(given))
        batch = self.input_shape[0] if self.input_shape[0] > 0 else len(images)
        if self.input_dtype.kind in "iu" and images.dtype.kind == "f":  # uint8 input: round, clip
            info = np.iinfo(self.input_dtype)
            images = np.clip(np.rint(images), info.min, info.max)
        images = images.astype(self.input_dtype, copy=False)
        chunks = []
        for start in range(0, len(images), batch):
            chunk = images[start:start + batch]
            if len(chunk) < batch:  # the file's batch is fixed: pad, then drop the padding
                pad = np.zeros((batch - len(chunk), *chunk.shape[1:]), chunk.dtype)
                chunk = np.concatenate([chunk, pad])
            chunks.append(self.runner(**{self.input_name: chunk}))
        n = len(images)
        return {k: np.concatenate([np.asarray(c[k]) for c in chunks])[:n] for k in chunks[0]}

    def _shape_error(self, got: tuple[int, ...]) -> str:
        """What is wrong with images of shape ``got`` (as given), and how to fix it."""
        expected = self.input_shape[1:]
        takes = (f"TFLiteRunner: the file takes images of shape {expected} (one image) or "
                 f"(N, {', '.join(map(str, expected))}) (a batch)")
        # `resize` returns the model's input and the frame that maps boxes back
        # (detection.preprocessor: (x, frame)); only x goes to the runner.
        resize = ("x, frame = model.preprocessor.resize(image) makes a detector's input that "
                  "size (in the model's resize_mode); pass x")
        rgb = len(expected) == 3 and expected[-1] == 3
        if len(got) == len(expected) + 1 and got[0] == 0:
            return f"{takes}; got an empty batch {got}: pass at least one image. ({resize}.)"
        if rgb and (len(got) == 2 or (len(got) in (3, 4) and got[-1] == 1)):
            return (f"{takes}, (H, W, 3) RGB; got {got}, a grayscale image (one channel): convert "
                    "it to RGB (PIL: Image.convert('RGB'); NumPy: np.stack([image] * 3, -1) for "
                    f"(H, W)). Then, if its size differs: {resize}.")
        if rgb and len(got) in (3, 4) and got[-1] == 4:
            return (f"{takes}, (H, W, 3) RGB; got {got}, RGBA (4 channels): drop the alpha "
                    f"channel (image[..., :3]). Then, if its size differs: {resize}.")
        return f"{takes}; got {got}. Resize them first: {resize}."
