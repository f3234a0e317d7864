"""SSD export with TFLite's ``TFLite_Detection_PostProcess`` op.

The op (box decoding + NMS in C++, float inside even in an int8 model) is
registered by every TFLite runtime (LiteRT, MediaPipe Tasks, the TFLite Task
Library) and is what the TF Object Detection API's exported SSDs end with. TF2
makes it as the TF OD API's ``export_tflite_graph_lib_tf2.py`` and the TF Model
Garden (``official/vision``, ``nms_version="tflite"``) do: a ``tf.function``
annotated with ``experimental_implements`` (the op name and its attributes as a
``NameAttrList`` text proto) whose body is a stand-in; the TFLite converter,
with ``allow_custom_ops``, replaces the call by the custom op.

Inputs of the op: box encodings ``[B, N, 4]`` (ty, tx, th, tw), class scores
``[B, N, C + 1]`` with the background column first (after the score converter:
sigmoid for SSD), anchors ``[N, 4]`` as (y-centre, x-centre, height, width).
Outputs (the TF OD API layout, all float32): boxes ``[B, K, 4]`` normalised
(ymin, xmin, ymax, xmax; clipped to [0, 1] after the op, as ``predict`` does, and
converted to the model's ``bounding_box_format`` when it is not ``rel_yxyx``), classes ``[B, K]`` (0-based, background removed),
scores ``[B, K]``, number of detections ``[B]``; padding is zeros.

``use_regular_nms=True`` is per-class NMS (``detections_per_class`` each) then
the ``max_detections`` best, the algorithm of ``DetectionDecoder`` and of the
Keras ``predict``; ``False`` is the op's fast class-agnostic NMS.
"""

from __future__ import annotations

import numpy as np

from mobilenet_zoo.detection.box_coder import FasterRCNNBoxCoder
from mobilenet_zoo.detection.ssd import SSD
from mobilenet_zoo.export.metadata import schema as meta_schema
from mobilenet_zoo.tensorflow_support import import_tensorflow

tf = import_tensorflow("the TFLite_Detection_PostProcess export")

OP_NAME = "TFLite_Detection_PostProcess"


def check_ssd(model) -> None:
    """The op decodes the TF OD API's SSD box codes against one set of anchors:
    an ``SSD`` with ``FasterRCNNBoxCoder``; anything else is refused."""

    if not isinstance(model, SSD):
        raise ValueError(
            f"postprocess='detection_postprocess' exports an SSD (one set of anchors, box codes "
            f"(ty, tx, th, tw)); got {type(model).__name__}. Leave `postprocess` unset for it.")
    if type(model.box_coder) is not FasterRCNNBoxCoder:
        raise ValueError("postprocess='detection_postprocess' needs the TF OD API box coder "
                         f"(FasterRCNNBoxCoder); this SSD has {type(model.box_coder).__name__}.")
    if model.decoder.score_converter not in ("sigmoid", "softmax"):  # pragma: no cover
        raise ValueError(f"unknown score converter {model.decoder.score_converter!r}")


def implements_signature(num_classes: int, max_detections: int, detections_per_class: int,
                         score_threshold: float, iou_threshold: float,
                         scale_factors, use_regular_nms: bool = True,
                         max_classes_per_detection: int = 1) -> str:
    """The ``experimental_implements`` string: op name and attributes (text proto)."""
    y, x, h, w = (float(s) for s in scale_factors)
    attrs = [
        ("max_detections", "i", int(max_detections)),
        ("max_classes_per_detection", "i", int(max_classes_per_detection)),
        ("detections_per_class", "i", int(detections_per_class)),
        ("use_regular_nms", "b", "true" if use_regular_nms else "false"),
        ("nms_score_threshold", "f", repr(float(score_threshold))),
        ("nms_iou_threshold", "f", repr(float(iou_threshold))),
        ("y_scale", "f", repr(y)), ("x_scale", "f", repr(x)),
        ("h_scale", "f", repr(h)), ("w_scale", "f", repr(w)),
        ("num_classes", "i", int(num_classes)),
    ]
    return " ".join([f'name: "{OP_NAME}"'] + [
        f'attr {{ key: "{key}" value {{ {kind}: {value} }} }}' for key, kind, value in attrs])


def center_anchors(anchors_yxyx: np.ndarray) -> np.ndarray:
    """Normalised (ymin, xmin, ymax, xmax) anchors -> (y-centre, x-centre, h, w)."""
    a = np.asarray(anchors_yxyx, np.float32)
    h, w = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]
    return np.stack([a[:, 0] + h / 2, a[:, 1] + w / 2, h, w], axis=1).astype(np.float32)


def serving_function(model, batch_size: int = 1, use_regular_nms: bool = True):
    """A ``tf.function`` (static ``(batch, H, W, C)`` float32 input) whose
    post-processing converts into ``TFLite_Detection_PostProcess``."""
    check_ssd(model)
    decoder = model.decoder
    num_classes = int(model.num_classes)
    signature = implements_signature(
        num_classes, decoder.max_detections, decoder.max_detections_per_class,
        decoder.score_threshold, decoder.iou_threshold, model.box_coder.scale_factors,
        use_regular_nms=use_regular_nms)
    anchors = tf.constant(center_anchors(model.anchors))
    k = int(decoder.max_detections)

    @tf.function(experimental_implements=signature)
    def detection_postprocess(box_encodings, class_scores, anchors):
        # Stand-in body (the converter replaces the whole call by the op), shaped
        # as the op's outputs so the SavedModel signature has their shapes.
        batch = tf.shape(box_encodings)[0]
        zero = 0.0 * (tf.reduce_sum(box_encodings) + tf.reduce_sum(class_scores)
                      + tf.reduce_sum(anchors))
        boxes = tf.zeros([batch, k, 4]) + zero
        classes = tf.zeros([batch, k]) + zero
        scores = tf.zeros([batch, k]) + zero
        num = tf.zeros([batch]) + zero
        return boxes, classes, scores, num

    shape = (batch_size, *model.inputs[0].shape[1:])
    if any(s is None for s in shape[1:]):
        raise ValueError(f"Export needs a static input size; the model's input is {shape}. "
                         "Pass `image_size=` to the exporter.")
    convert = tf.sigmoid if decoder.score_converter == "sigmoid" else tf.nn.softmax

    @tf.function(input_signature=[tf.TensorSpec(shape, tf.float32, name="images")])
    def serve(images):
        out = model(images, training=False)
        scores = convert(tf.cast(out["classes"], tf.float32))
        boxes, classes, det_scores, num = detection_postprocess(
            tf.cast(out["boxes"], tf.float32), scores, anchors)
        # Boxes clipped to the image, as DetectionDecoder (and predict) clips them,
        # in the model's bounding_box_format (rel_yxyx: the TF OD API's layout).
        boxes = model.preprocessor.from_model_boxes(tf.clip_by_value(boxes, 0.0, 1.0))
        return {"boxes": boxes, "classes": classes, "scores": det_scores, "num_detections": num}

    return serve


# The clip of the boxes after the op, which the int8 converter wraps in
# QUANTIZE -> op (int8) -> DEQUANTIZE; each has a float kernel.
_FLOAT_AGAIN = ("RELU", "RELU6", "RELU_N1_TO_1", "RELU_0_TO_1")


def float_box_clip(tflite: bytes) -> bytes:
    """An int8 file whose boxes stay float after the op.

    The op's outputs are float32 in every TFLite file (its kernel,
    ``tensorflow/lite/kernels/detection_postprocess.cc``, decodes and runs NMS in
    float even for quantized inputs). The int8 converter then quantizes the clip
    of the boxes to [0, 1] that follows the op (``tf.clip_by_value`` as
    ``predict`` clips): QUANTIZE -> RELU (int8) -> DEQUANTIZE, which rounds every
    box coordinate to 1/255 (about a pixel at 512). This puts those clip ops back
    on the float tensors and drops the QUANTIZE / DEQUANTIZE pair. The op's inputs
    stay as the converter wrote them (a DEQUANTIZE of the int8 box encodings and
    sigmoid scores): the kernel reads quantized class scores and box encodings
    only as uint8 (with uint8 anchors), not the int8 of full-integer models.
    Files without such a pattern come back unchanged.
    """

    schema = meta_schema._schema()
    model = schema.ModelT.InitFromPackedBuf(bytearray(bytes(tflite)), 0)
    builtin_names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    names = [code.customCode.decode() if code.customCode else
             builtin_names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "")
             for code in model.operatorCodes]
    changed = False
    for graph in model.subgraphs:
        ops = list(graph.operators)
        kind = [names[op.opcodeIndex] for op in ops]
        if OP_NAME not in kind:
            continue

        def consumers(tensor, ops=ops):
            return [i for i, op in enumerate(ops) if tensor in [int(t) for t in op.inputs]]

        after_op = set()  # tensors computed from the op's outputs (operators are in order)
        for op, name in zip(ops, kind):
            if name == OP_NAME or after_op & {int(t) for t in op.inputs}:
                after_op.update(int(t) for t in op.outputs)
        drop = set()
        for q, quant in enumerate(ops):  # QUANTIZE -> clip op (int8) -> DEQUANTIZE
            source = int(quant.inputs[0])
            if kind[q] != "QUANTIZE" or source not in after_op or graph.tensors[source].type != \
                    schema.TensorType.FLOAT32:
                continue
            users = consumers(int(quant.outputs[0]))
            if len(users) != 1 or kind[users[0]] not in _FLOAT_AGAIN or len(ops[users[0]].inputs) != 1:
                continue
            clip = ops[users[0]]
            after = consumers(int(clip.outputs[0]))
            if len(after) != 1 or kind[after[0]] != "DEQUANTIZE":
                continue
            clip.inputs = np.asarray([source], np.int32)
            clip.outputs = np.asarray([int(ops[after[0]].outputs[0])], np.int32)
            drop.update((q, after[0]))
        if drop:
            graph.operators = [op for k, op in enumerate(ops) if k not in drop]
            changed = True
    if not changed:
        return bytes(tflite)
    import flatbuffers

    builder = flatbuffers.Builder(len(tflite) + 1024)
    builder.Finish(model.Pack(builder), meta_schema.TFLITE_FILE_IDENTIFIER)
    return bytes(builder.Output())


def has_op(tflite: bytes) -> bool:
    """True when the flatbuffer's operator codes hold the ``TFLite_Detection_PostProcess``
    custom op (read from the model, not searched in the bytes: the metadata may name it)."""

    model = meta_schema._schema().Model.GetRootAs(meta_schema._model_bytes(tflite), 0)
    return any((model.OperatorCodes(i).CustomCode() or b"").decode() == OP_NAME
               for i in range(model.OperatorCodesLength()))
