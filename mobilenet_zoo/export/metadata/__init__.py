"""TFLite model metadata, so phone runtimes run our ``.tflite`` files as they are.

MediaPipe Tasks (``ObjectDetector``, ``ImageClassifier``, ``ImageSegmenter``,
the successor of the TFLite Task Library) read the input normalisation, the
label files and the meaning of each output from the metadata flatbuffer that
TFLite's ``metadata_schema.fbs`` defines (tensorflow/tflite-support, also
shipped as ``mediapipe/tasks/metadata/metadata_schema.fbs``). It lives inside
the model flatbuffer as the buffer of a ``Model.metadata`` entry named
``"TFLITE_METADATA"`` (file identifier ``"M001"``); the label files are packed
as a zip archive appended after the flatbuffer, as TFLite's
``MetadataPopulator`` does.

How it is written: **with the ``flatbuffers`` package directly** (a TensorFlow
dependency), from the table layout of ``metadata_schema.fbs`` transcribed in
``_SCHEMA`` below (schema version 1.5.0; field slots in declaration order, a
union taking two slots: its type then its value). Neither mediapipe nor
tflite-support is needed to export; the tests read our files back with
MediaPipe's own generated schema classes and run them with MediaPipe Tasks.
The model flatbuffer itself is edited with the TFLite schema classes that
``ai_edge_litert`` (or TensorFlow) ships (``schema_py_generated``).

The tensor layouts follow the TFLite metadata writers (tflite-support /
MediaPipe ``metadata_writers``): image input (RGB, ``NormalizationOptions``
mean/std, ``Stats`` of the normalised range); classifier scores with an
axis-labels file; detector outputs named ``location`` (``BoundingBoxProperties``
index 1, 0, 3, 2 = ymin, xmin, ymax, xmax, ratio), ``category`` (value-labels
file), ``score`` and ``number of detections``, the TF Object Detection API's
post-processing layout; segmenter scores per pixel with axis labels and the
``SEGMENTER_METADATA`` custom metadata (MediaPipe's
``image_segmenter_metadata_schema.fbs``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flatbuffers

from mobilenet_zoo import presets
from mobilenet_zoo.classification.classifier import MobileNetClassifier
from mobilenet_zoo.data.imagenet import class_names
from mobilenet_zoo.export.metadata.schema import (  # noqa: F401  (the format's public API)
    BOX_BOUNDARIES,
    BOX_CENTER,
    BOX_UPPER_LEFT,
    COLOR_RGB,
    CONTENT_BOUNDING_BOX,
    CONTENT_FEATURE,
    CONTENT_IMAGE,
    COORD_PIXEL,
    COORD_RATIO,
    FILE_DESCRIPTIONS,
    METADATA_FIELD_NAME,
    METADATA_FILE_IDENTIFIER,
    PROCESS_NORMALIZATION,
    SEGMENTER_ACTIVATION,
    TENSOR_AXIS_LABELS,
    TENSOR_VALUE_LABELS,
    TFLITE_FILE_IDENTIFIER,
    T,
    _model_bytes,
    _schema,
    associated_files,
    parse,
    populate,
    read_metadata,
    serialize,
)
from mobilenet_zoo.segmentation.deeplab import DeepLabV3
from mobilenet_zoo.version import __version__

# How a detector's image of another size becomes its input (DetectionPreprocessor
# resize_mode), in words for the phone code that prepares the tensor itself. The metadata
# schema (metadata_schema.fbs 1.5: ImageProperties = colour space and size only) has no
# field for it, so it is stated in the input's description as "resize_mode: MODE".
RESIZE_MODE_TEXT = {
    "stretch": "stretch the whole image to {h}x{w} (aspect ratio not kept; TF OD API "
               "fixed_shape_resizer, what MediaPipe Tasks do)",
    "pad": "pad the image with black at the bottom and right to a square (aspect ratio "
           "{h}:{w}), then resize it to {h}x{w}; boxes are fractions of that padded image "
           "(face-api.js padToSquare). MediaPipe Tasks stretch: pad the image yourself first",
}


def resize_mode_of(tflite: bytes) -> str | None:
    """The ``resize_mode`` that the input description of a ``.tflite`` file names
    (``"stretch"`` / ``"pad"``), or None (no metadata, or not a detector of this package)."""
    meta = read_metadata(tflite)
    if not meta:
        return None
    for tensor in meta["subgraph_metadata"][0].get("input_tensor_metadata") or []:
        text = tensor.get("description") or ""
        for mode in RESIZE_MODE_TEXT:
            if f"resize_mode: {mode}." in text or f"resize_mode: {mode} " in text:
                return mode
    return None


# --------------------------------------------------------------- tensor builders
def image_input(height: int, width: int, mean: float, std: float, dtype: str,
                name: str = "image", resize_mode: str | None = None) -> T:
    """An RGB image input: normalisation ``(pixel - mean) / std`` for a float
    input; a uint8 input takes the pixels as they are (camera frames).
    ``resize_mode`` (detectors): how an image of another size becomes this input,
    stated in the description (``resize_mode_of`` reads it back)."""
    if std <= 0:
        raise ValueError(f"the normalisation std must be > 0, got {std}")
    if resize_mode is not None and resize_mode not in RESIZE_MODE_TEXT:
        raise ValueError(f"resize_mode must be one of {sorted(RESIZE_MODE_TEXT)}, got {resize_mode!r}")
    lo, hi = (0.0, 255.0) if dtype == "uint8" else ((0 - mean) / std, (255 - mean) / std)
    resize = "" if resize_mode is None else (
        f" resize_mode: {resize_mode}. Images of another size: "
        + RESIZE_MODE_TEXT[resize_mode].format(h=height, w=width) + ".")
    return T("TensorMetadata", name=name,
             description=f"Input image, RGB, {height}x{width}; pixels in [0, 255]"
             + ("" if dtype == "uint8" else f", normalised as (pixel - {mean:g}) / {std:g}") + "."
             + resize,
             content=T("Content", content_properties=(
                 "ImageProperties", T("ImageProperties", color_space=COLOR_RGB,
                                      default_size=T("ImageSize", width=width, height=height)))),
             process_units=[T("ProcessUnit", options=(
                 "NormalizationOptions", T("NormalizationOptions", mean=[mean], std=[std])))],
             stats=T("Stats", max=[hi], min=[lo]))


def label_file(name: str, labels: Sequence[str], value_labels: bool = False) -> tuple[T, bytes]:
    """An associated label file (one name per line): axis labels (a score per
    class) or value labels (a tensor of class ids)."""
    text = "\n".join(str(x) for x in labels) + "\n"
    return (T("AssociatedFile", name=name, description="Labels for the classes, one per line.",
              type=TENSOR_VALUE_LABELS if value_labels else TENSOR_AXIS_LABELS),
            text.encode("utf8"))


def feature_output(name: str, description: str, files: Sequence[T] = (),
                   value_range: tuple[int, int] | None = None,
                   stats: tuple[float, float] | None = None) -> T:
    return T("TensorMetadata", name=name, description=description,
             content=T("Content", content_properties=("FeatureProperties", T("FeatureProperties")),
                       range=None if value_range is None else T("ValueRange", min=value_range[0],
                                                                max=value_range[1])),
             stats=None if stats is None else T("Stats", max=[stats[1]], min=[stats[0]]),
             associated_files=list(files) or None)


# keras / keras-cv box formats -> (index of left, top, right, bottom (or the
# first two for x/y of upper-left or centre, then width, height), type, coordinates).
BOX_FORMATS = {
    "rel_yxyx": ([1, 0, 3, 2], BOX_BOUNDARIES, COORD_RATIO),
    "yxyx": ([1, 0, 3, 2], BOX_BOUNDARIES, COORD_PIXEL),
    "rel_xyxy": ([0, 1, 2, 3], BOX_BOUNDARIES, COORD_RATIO),
    "xyxy": ([0, 1, 2, 3], BOX_BOUNDARIES, COORD_PIXEL),
    "rel_xywh": ([0, 1, 2, 3], BOX_UPPER_LEFT, COORD_RATIO),
    "xywh": ([0, 1, 2, 3], BOX_UPPER_LEFT, COORD_PIXEL),
    "rel_center_xywh": ([0, 1, 2, 3], BOX_CENTER, COORD_RATIO),
    "center_xywh": ([0, 1, 2, 3], BOX_CENTER, COORD_PIXEL),
    "rel_center_yxhw": ([1, 0, 3, 2], BOX_CENTER, COORD_RATIO),
    "center_yxhw": ([1, 0, 3, 2], BOX_CENTER, COORD_PIXEL),
}


def detection_outputs(label: T, box_format: str = "rel_yxyx") -> dict[str, T]:
    """The four outputs of the TF OD API post-processing layout, by our output keys."""
    if box_format not in BOX_FORMATS:
        raise ValueError(f"no metadata box layout for bounding_box_format {box_format!r}; "
                         f"known: {sorted(BOX_FORMATS)}")
    index, box_type, coords = BOX_FORMATS[box_format]
    dims = T("ValueRange", min=2, max=2)  # the box / class axis is dimension 2 (after batch, k)
    return {
        "boxes": T("TensorMetadata", name="location",
                   description=f"The locations of the detected boxes ({box_format}).",
                   content=T("Content", content_properties=(
                       "BoundingBoxProperties", T("BoundingBoxProperties", index=index, type=box_type,
                                                  coordinate_type=coords)), range=dims)),
        "classes": T("TensorMetadata", name="category",
                     description="The categories of the detected boxes (0-based class ids).",
                     content=T("Content", content_properties=("FeatureProperties",
                                                              T("FeatureProperties")), range=dims),
                     associated_files=[label]),
        "scores": T("TensorMetadata", name="score", description="The scores of the detected boxes.",
                    content=T("Content", content_properties=("FeatureProperties",
                                                             T("FeatureProperties")), range=dims)),
        "num_detections": T("TensorMetadata", name="number of detections",
                            description="The number of the detected boxes."),
    }


def segmenter_options(activation: str = "none") -> T:
    """MediaPipe's ``SEGMENTER_METADATA`` custom metadata (activation of the scores)."""
    b = flatbuffers.Builder(64)
    version = b.CreateString("1.0.0")
    b.StartObject(2)
    b.PrependInt8Slot(0, SEGMENTER_ACTIVATION[activation], 0)
    b.PrependUOffsetTRelativeSlot(1, version, 0)
    b.Finish(b.EndObject(), b"V001")
    return T("CustomMetadata", name="SEGMENTER_METADATA", data=bytes(b.Output()))


def model_metadata(name: str, description: str, version: str, author: str, license: str,
                   inputs: Sequence[T], outputs: Sequence[T],
                   custom: Sequence[T] = ()) -> T:
    """The ``ModelMetadata`` of a one-subgraph model (tensors in subgraph order)."""
    return T("ModelMetadata", name=name, description=description, version=version,
             author=author, license=license,
             subgraph_metadata=[T("SubGraphMetadata", input_tensor_metadata=list(inputs),
                                  output_tensor_metadata=list(outputs),
                                  custom_metadata=list(custom) or None)],
             # metadata_schema.fbs history: CustomMetadata needs 1.5.0; the rest is 1.0.0.
             min_parser_version="1.5.0" if custom else "1.0.0")


# ------------------------------------------------------------ for this package's models
_TFLITE_TYPES = {0: "float32", 2: "int32", 3: "uint8", 4: "int64", 9: "int8", 10: "float16"}
INFO_KEYS = ("name", "description", "version", "author", "license", "labels", "normalization",
             "preset", "segmenter_activation")


def tensors_of(tflite: bytes) -> dict[str, list[dict]]:
    """Inputs and outputs of the first subgraph, in order: name (the signature's
    key when there is one), shape, dtype and quantisation (scale, zero point)."""
    schema = _schema()
    model = schema.Model.GetRootAs(_model_bytes(tflite), 0)
    graph = model.Subgraphs(0)
    keys: dict[int, str] = {}
    if model.SignatureDefsLength():
        sig = model.SignatureDefs(0)
        for i in range(sig.InputsLength()):
            keys[sig.Inputs(i).TensorIndex()] = sig.Inputs(i).Name().decode()
        for i in range(sig.OutputsLength()):
            keys[sig.Outputs(i).TensorIndex()] = sig.Outputs(i).Name().decode()

    def info(index: int) -> dict:
        t = graph.Tensors(index)
        q = t.Quantization()
        scale = q.ScaleAsNumpy() if q is not None and q.ScaleLength() else None
        zero = q.ZeroPointAsNumpy() if q is not None and q.ZeroPointLength() else None
        return {"name": keys.get(index, t.Name().decode()), "shape": t.ShapeAsNumpy().tolist(),
                "dtype": _TFLITE_TYPES.get(t.Type(), f"type{t.Type()}"),
                "quantization": None if scale is None else (float(scale[0]), int(zero[0]))}

    return {"inputs": [info(i) for i in graph.InputsAsNumpy()],
            "outputs": [info(i) for i in graph.OutputsAsNumpy()]}


def preset_info(name: str, input_size: tuple[int, int] | None = None) -> dict[str, Any]:
    """Name, description, version, author (source) and licence of a preset, for the metadata.

    ``input_size``: ``(height, width)`` of the exported file when known (an export at
    another ``image_size`` than the preset's), so the description says the real size."""

    meta = presets.get_preset(name)
    what = {"SSD": "object detector", "FasterRCNN": "object detector",
            "MobileNetClassifier": "image classifier", "DeepLabV3": "image segmenter"}.get(
        meta.get("task"), "MobileNet v1 model")
    metric = meta.get("published_top1")
    size = meta.get("input_size") if input_size is None else (
        input_size[0] if input_size[0] == input_size[1] else f"{input_size[0]}x{input_size[1]}")
    resized = input_size is not None and size != meta.get("input_size")
    return {
        "name": name,
        "description": f"MobileNet v1 {what} (alpha {meta.get('alpha')}, input {size}"
                       + (f"; the preset's weights, trained at {meta.get('input_size')}" if resized else "")
                       + f"), preset {name} of mobilenet_zoo"
                       + (f"; published top-1 {metric}%" if metric else "") + ".",
        "version": f"mobilenet_zoo {__version__}, weights sha256 {str(meta.get('sha256', ''))[:16]}",
        "author": str(meta.get("source") or "unknown source"),
        "license": str(meta.get("license") or "unknown licence"),
    }


def _generic_info(model) -> dict[str, Any]:

    return {"name": model.name,
            "description": f"{type(model).__name__} `{model.name}` exported by mobilenet_zoo.",
            "version": f"mobilenet_zoo {__version__}",
            "author": "exported with mobilenet_zoo (weights: not from a preset; source not recorded)",
            "license": "not recorded: the weights' own licence applies"}


def check_info(info: dict[str, Any] | None) -> dict[str, Any]:
    """A ``metadata=`` dict of ``to_tflite``, checked before any conversion."""
    info = dict(info or {})
    unknown = sorted(set(info) - set(INFO_KEYS))
    if unknown:
        raise ValueError(f"`metadata` has unknown key(s) {unknown}; known: {list(INFO_KEYS)}.")
    if info.get("preset") is not None:
        preset_info(info["preset"])  # ValueError listing the presets for an unknown name
    norm = info.get("normalization")
    if norm is not None and (len(norm) != 2 or not float(norm[1]) > 0):
        raise ValueError(f"`metadata['normalization']` must be (mean, std) with std > 0, got {norm!r}.")
    act = info.get("segmenter_activation")
    if act is not None and act not in SEGMENTER_ACTIVATION:
        raise ValueError(f"`metadata['segmenter_activation']` must be one of "
                         f"{sorted(SEGMENTER_ACTIVATION)}, got {act!r}.")
    labels = info.get("labels")
    if labels is not None and (isinstance(labels, str) or not all(isinstance(x, str) for x in labels)):
        raise ValueError("`metadata['labels']` must be a list of class names (strings).")
    return info


def _labels(model, info, count: int | None) -> list[str]:

    labels = info.get("labels") or getattr(model, "class_names", None)
    if not labels and isinstance(model, MobileNetClassifier) and model.num_classes == 1000:

        labels = class_names()
    if not labels:
        labels = [f"class_{i}" for i in range(count or getattr(model, "num_classes", 0) or 0)]
    labels = [str(x) for x in labels]
    if count is not None and len(labels) != count:
        raise ValueError(f"{len(labels)} labels for {count} classes in the exported output.")
    return labels


def _normalization(model, info) -> tuple[float, float]:
    if info.get("normalization") is not None:
        mean, std = info["normalization"]
        return float(mean), float(std)
    if getattr(model, "include_preprocessing", False):
        return 0.0, 1.0  # the model maps [0, 255] to [-1, 1] itself
    return 127.5, 127.5  # MobileNet's [-1, 1] input


def for_model(model, tflite: bytes, info: dict[str, Any] | None = None,
              layout: str | None = None, box_format: str | None = None,
              ) -> tuple[T, dict[str, bytes]]:
    """The metadata (and its label files) of ``tflite``, the export of ``model``.

    ``layout``: ``"detection"`` (boxes, classes, scores, num_detections),
    ``"classification"``, ``"segmentation"``, or None to infer from the model.
    ``box_format``: of the exported boxes (default: the model's ``bounding_box_format``).
    """

    info = check_info(info)
    tensors = tensors_of(tflite)
    if len(tensors["inputs"]) != 1 or len(tensors["inputs"][0]["shape"]) != 4:
        raise ValueError("metadata needs one image input (batch, height, width, channels); the file "
                         f"has {[t['shape'] for t in tensors['inputs']]}. Export with metadata=False.")
    inp = tensors["inputs"][0]
    _, height, width, _ = inp["shape"]
    # The size of the file's input, not the preset's: an export at another image_size.
    base = preset_info(info["preset"], (height, width)) if info.get("preset") else _generic_info(model)
    base.update({k: v for k, v in info.items() if k in ("name", "description", "version", "author",
                                                          "license") and v})
    mean, std = _normalization(model, info)
    resize_mode = getattr(getattr(model, "preprocessor", None), "resize_mode", None)
    inputs = [image_input(height, width, mean, std, inp["dtype"],
                          resize_mode=resize_mode if resize_mode in RESIZE_MODE_TEXT else None)]
    outs = tensors["outputs"]
    keys = [o["name"] for o in outs]
    if layout is None:
        if {"boxes", "classes", "scores", "num_detections"} <= set(keys):
            layout = "detection"
        elif isinstance(model, DeepLabV3):
            layout = "segmentation"
        elif isinstance(model, MobileNetClassifier):
            layout = "classification"
    files: dict[str, bytes] = {}
    custom: list[T] = []
    if layout == "detection":
        labels = _labels(model, info, getattr(model, "num_classes", None))
        label, files["labels.txt"] = label_file("labels.txt", labels, value_labels=True)
        by_key = detection_outputs(
            label, box_format or getattr(model, "bounding_box_format", None) or "rel_yxyx")
        integer = {o["name"] for o in outs if o["dtype"] in ("int32", "int64")}
        if integer:  # builtin NMS (Faster R-CNN, an SSD's "builtin_nms"): the Keras layout
            by_key["classes"]["description"] = ("The categories of the detected boxes (0-based int32 "
                                             "class ids; -1 after the last detection).")
            by_key["num_detections"]["description"] = "The number of the detected boxes (int32)."
            description = (
                "Detections in the Keras `predict` layout (builtin NMS): boxes, int32 class ids "
                "(-1 pads), scores and the int32 number of detections. Not the TF OD API layout "
                "of TFLite_Detection_PostProcess (all float32), so MediaPipe Tasks' ObjectDetector "
                "does not run this file (it requires float32 outputs); read the outputs by name.")
        else:
            description = "Detections: boxes, classes, scores and their number (TF OD API layout)."
        outputs = [by_key.get(k) or feature_output(k, f"Output {k!r}.") for k in keys]
    elif layout in ("classification", "segmentation") and len(outs) == 1:
        out = outs[0]
        argmax = out["dtype"] in ("int32", "int64")
        count = None if argmax else out["shape"][-1]
        labels = _labels(model, info, count)
        label, files["labels.txt"] = label_file("labels.txt", labels, value_labels=argmax)
        if layout == "classification":
            probs = getattr(model, "classifier_activation", None) == "softmax"
            outputs = [feature_output(
                "category" if argmax else "probability",
                "Class id of the image." if argmax else
                ("Probabilities" if probs else "Scores") + " of the classes.",
                [label], stats=(0.0, 1.0) if probs and not argmax else None)]
            description = "Image classification."
        else:
            outputs = [feature_output(
                "segmentation_masks" if not argmax else "category_mask",
                "Class id per pixel (category mask)." if argmax else
                "Class scores (logits) per pixel; the category mask is their argmax.", [label])]
            custom = [segmenter_options(info.get("segmenter_activation") or "none")]
            description = "Semantic segmentation: category mask over the classes."
    else:
        outputs = [feature_output(o["name"], f"Output {o['name']!r}, shape {o['shape']}.") for o in outs]
        description = "Outputs as the Keras model returns them."
    text = f"{base['description']} {description}"
    return model_metadata(base["name"], text, base["version"], base["author"], base["license"],
                          inputs, outputs, custom), files


def describe(tflite: bytes) -> str:
    """Human-readable inputs and outputs of a ``.tflite`` file, with its metadata."""
    tensors = tensors_of(tflite)
    meta = read_metadata(tflite)
    files = associated_files(tflite)
    lines = []
    if meta:
        lines.append(f"model: {meta.get('name')} ({meta.get('version', '')})")
        lines.append(f"  {meta.get('description', '')}")
        lines.append(f"  licence: {meta.get('license', '')}")
        sub = meta["subgraph_metadata"][0]
    else:
        lines.append("model: no TFLite metadata")
        sub = {}
    for kind, key in (("input", "input_tensor_metadata"), ("output", "output_tensor_metadata")):
        for i, t in enumerate(tensors[kind + "s"]):
            md = (sub.get(key) or [{}] * (i + 1))[i] if i < len(sub.get(key) or []) else {}
            q = f" quantized scale={t['quantization'][0]:.4g} zero_point={t['quantization'][1]}" \
                if t["quantization"] else ""
            extra = []
            for pu in md.get("process_units", []):
                if pu.get("options", (None,))[0] == "NormalizationOptions":
                    opts = pu["options"][1]
                    extra.append(f"normalisation mean={opts['mean']} std={opts['std']}")
            for f in md.get("associated_files", []):
                n = files.get(f["name"], b"").decode("utf8", "replace").count("\n")
                extra.append(f"labels {f['name']} ({n} names)")
            if kind == "input" and meta and resize_mode_of(tflite):
                extra.append(f"resize_mode {resize_mode_of(tflite)}")
            label = f" [{md['name']}]" if md.get("name") else ""
            lines.append(f"{kind} {t['name']}{label}: {t['dtype']}{t['shape']}{q}"
                         + (f"; {'; '.join(extra)}" if extra else ""))
    return "\n".join(lines)
