"""Export to the phone: TFLite / LiteRT flatbuffers, float or quantized.

``to_tflite(model)`` works for any Keras model of this package. For an ``SSD``
the exported graph includes box decoding and per-class NMS, written as a loop
of single-class ``NonMaxSuppressionV5`` ops (which convert to TFLite builtins,
unlike ``combined_non_max_suppression``), so the ``.tflite`` file returns final
detections: ``boxes`` (in the model's ``bounding_box_format``), ``classes``,
``scores`` and ``num_detections``, like ``SSD.predict``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import tensorflow as tf

QUANTIZE = (None, "dynamic", "int8", "float16")


def _ssd_serving_fn(model, batch_size: int = 1) -> tf.types.experimental.GenericFunction:
    import keras

    h, w = model.image_size
    channels = model.inputs[0].shape[-1]
    decoder, coder = model.decoder, model.box_coder
    anchors = tf.constant(model.anchors)
    k_total = decoder.max_detections

    def detect_one(boxes, scores):
        """Per-class NMS for one image: boxes (N, 4), scores (N, C)."""
        per_class = decoder.max_detections_per_class
        sel_boxes, sel_scores, sel_classes = [], [], []
        for c in range(model.num_classes):
            # Padded single-class NMS (NonMaxSuppressionV5): static shapes, which
            # is how the TFLite kernel returns them anyway.
            idx, sc, count = tf.raw_ops.NonMaxSuppressionV5(
                boxes=boxes, scores=scores[:, c], max_output_size=per_class,
                iou_threshold=decoder.iou_threshold, score_threshold=decoder.score_threshold,
                soft_nms_sigma=0.0, pad_to_max_output_size=True,
            )
            keep = tf.range(per_class) < count
            sel_boxes.append(tf.gather(boxes, idx))
            sel_scores.append(tf.where(keep, sc, -1.0))
            sel_classes.append(tf.fill([per_class], c))
        all_scores = tf.concat(sel_scores, 0)
        all_boxes = tf.concat(sel_boxes, 0)
        all_classes = tf.concat(sel_classes, 0)
        short = k_total - model.num_classes * per_class
        if short > 0:  # fewer candidates than output slots: pad statically
            all_scores = tf.pad(all_scores, [[0, short]], constant_values=-1.0)
            all_boxes = tf.pad(all_boxes, [[0, short], [0, 0]])
            all_classes = tf.pad(all_classes, [[0, short]], constant_values=-1)
        num = tf.minimum(tf.reduce_sum(tf.cast(all_scores >= 0, tf.int32)), k_total)
        top_scores, top_idx = tf.math.top_k(all_scores, k_total)
        valid = tf.range(k_total) < num
        out_boxes = tf.clip_by_value(tf.gather(all_boxes, top_idx), 0.0, 1.0)
        return (
            tf.where(valid[:, None], out_boxes, -1.0),
            tf.where(valid, tf.gather(all_classes, top_idx), -1),
            tf.where(valid, top_scores, 0.0),
            num,
        )

    @tf.function(input_signature=[tf.TensorSpec((batch_size, h, w, channels), tf.float32, name="images")])
    def serve(images):
        raw = model(images, training=False)
        boxes, scores = decoder.scores_and_boxes(raw["boxes"], raw["classes"], anchors, coder)
        outs = [detect_one(boxes[i], scores[i]) for i in range(batch_size)]
        boxes_out = tf.stack([o[0] for o in outs])
        classes = tf.stack([o[1] for o in outs])
        converted = keras.utils.bounding_boxes.convert_format(
            boxes_out, source="rel_yxyx", target=model.bounding_box_format, height=h, width=w
        )
        return {
            "boxes": tf.where(classes[..., None] >= 0, converted, -1.0),
            "classes": classes,
            "scores": tf.stack([o[2] for o in outs]),
            "num_detections": tf.stack([o[3] for o in outs]),
        }

    return serve


def _plain_serving_fn(model, batch_size: int = 1, argmax: bool = False):
    shape = (batch_size, *model.inputs[0].shape[1:])
    if any(s is None for s in shape[1:]):
        raise ValueError(
            f"TFLite export needs a static input size; the model's input is {shape}. "
            "Build the model with a fixed input_shape (e.g. (224, 224, 3))."
        )

    @tf.function(input_signature=[tf.TensorSpec(shape, tf.float32, name="images")])
    def serve(images):
        out = model(images, training=False)
        if argmax:  # class ids (segmentation masks, labels) instead of scores
            return tf.argmax(out, axis=-1, output_type=tf.int32)
        return out

    return serve


def to_tflite(
    model,
    path: str | os.PathLike | None = None,
    quantize: str | None = None,
    representative_data: Iterable[np.ndarray] | Callable[[], Iterable] | None = None,
    serving_fn=None,
    input_shape: tuple | None = None,
    argmax: bool = False,
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
        input_shape: rebuild a dynamic-size model at this ``(H, W, C)`` first
            (TFLite needs a static size); weights are copied.
        argmax: export ``argmax`` over the last axis (class ids) instead of scores
            (not for SSD, whose output is already detections).

    Returns:
        The flatbuffer bytes.
    """
    if quantize not in QUANTIZE:
        raise ValueError(f"`quantize` must be one of {QUANTIZE}, got {quantize!r}.")
    if quantize == "int8" and representative_data is None:
        raise ValueError("quantize='int8' needs `representative_data` (calibration inputs).")
    if input_shape is not None:
        from mobilenet_zoo.utils import rebuild_at

        model = rebuild_at(model, input_shape, copy_weights=True)
    if serving_fn is None:
        is_ssd = hasattr(model, "anchors") and hasattr(model, "decoder")
        serving_fn = _ssd_serving_fn(model) if is_ssd else _plain_serving_fn(model, argmax=argmax)
    import tempfile

    import keras

    # Through a SavedModel written by keras.export.ExportArchive: it tracks the
    # Keras 3 variables properly (from_concrete_functions leaves them unbound).
    with tempfile.TemporaryDirectory() as tmp:
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint("serve", serving_fn)
        archive.write_out(tmp, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp, signature_keys=["serve"])
        flatbuffer = _convert(converter, quantize, representative_data)
    if path is not None:
        os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
        with open(path, "wb") as f:
            f.write(flatbuffer)
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
