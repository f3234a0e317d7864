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

import io
import zipfile
from collections.abc import Sequence
from typing import Any

import flatbuffers
import numpy as np
from flatbuffers import number_types as _nt
from flatbuffers.table import Table as _FbTable

METADATA_FIELD_NAME = "TFLITE_METADATA"
METADATA_FILE_IDENTIFIER = b"M001"
TFLITE_FILE_IDENTIFIER = b"TFL3"

# Enums of metadata_schema.fbs.
FILE_DESCRIPTIONS, TENSOR_AXIS_LABELS, TENSOR_VALUE_LABELS = 1, 2, 3
COLOR_RGB = 1
BOX_BOUNDARIES, BOX_UPPER_LEFT, BOX_CENTER = 1, 2, 3
COORD_RATIO, COORD_PIXEL = 0, 1
# Union members (index = declaration order + 1).
CONTENT_FEATURE, CONTENT_IMAGE, CONTENT_BOUNDING_BOX = 1, 2, 3
PROCESS_NORMALIZATION = 1
# image_segmenter_metadata_schema.fbs: Activation.
SEGMENTER_ACTIVATION = {"none": 0, "sigmoid": 1, "softmax": 2}

# metadata_schema.fbs tables: (field, kind) in declaration order. Kinds: str,
# i8 / u32 / i32 scalars, [u32] / [f32] / [u8] / [str] vectors, T (a table),
# [T] (vector of tables), U:<member types> (a union: two slots).
_SCHEMA: dict[str, list[tuple[str, str]]] = {
    "AssociatedFile": [("name", "str"), ("description", "str"), ("type", "i8"),
                       ("locale", "str"), ("version", "str")],
    "FeatureProperties": [],
    "ImageSize": [("width", "u32"), ("height", "u32")],
    "ImageProperties": [("color_space", "i8"), ("default_size", "T:ImageSize")],
    "BoundingBoxProperties": [("index", "[u32]"), ("type", "i8"), ("coordinate_type", "i8")],
    "ValueRange": [("min", "i32"), ("max", "i32")],
    "Content": [("content_properties",
                 "U:FeatureProperties,ImageProperties,BoundingBoxProperties,AudioProperties"),
                ("range", "T:ValueRange")],
    "NormalizationOptions": [("mean", "[f32]"), ("std", "[f32]")],
    "ProcessUnit": [("options", "U:NormalizationOptions")],
    "Stats": [("max", "[f32]"), ("min", "[f32]")],
    "TensorMetadata": [("name", "str"), ("description", "str"), ("dimension_names", "[str]"),
                       ("content", "T:Content"), ("process_units", "[T:ProcessUnit]"),
                       ("stats", "T:Stats"), ("associated_files", "[T:AssociatedFile]")],
    "CustomMetadata": [("name", "str"), ("data", "[u8]")],
    "SubGraphMetadata": [("name", "str"), ("description", "str"),
                         ("input_tensor_metadata", "[T:TensorMetadata]"),
                         ("output_tensor_metadata", "[T:TensorMetadata]"),
                         ("associated_files", "[T:AssociatedFile]"),
                         ("input_process_units", "[T:ProcessUnit]"),
                         ("output_process_units", "[T:ProcessUnit]"),
                         ("input_tensor_groups", "[T:TensorGroup]"),
                         ("output_tensor_groups", "[T:TensorGroup]"),
                         ("custom_metadata", "[T:CustomMetadata]")],
    "ModelMetadata": [("name", "str"), ("description", "str"), ("version", "str"),
                      ("subgraph_metadata", "[T:SubGraphMetadata]"), ("author", "str"),
                      ("license", "str"), ("associated_files", "[T:AssociatedFile]"),
                      ("min_parser_version", "str")],
}
_SCALARS = {"i8": (_nt.Int8Flags, "PrependInt8Slot"), "u32": (_nt.Uint32Flags, "PrependUint32Slot"),
            "i32": (_nt.Int32Flags, "PrependInt32Slot")}


class T(dict):
    """One table of the schema: ``T("ImageSize", width=224, height=224)``; a
    union value is ``(member type name, T)``."""

    def __init__(self, type_name: str, **fields: Any) -> None:
        if type_name not in _SCHEMA:
            raise ValueError(f"unknown metadata table {type_name!r}")
        known = {name for name, _ in _SCHEMA[type_name]}
        unknown = set(fields) - known
        if unknown:
            raise ValueError(f"{type_name} has no field(s) {sorted(unknown)}; it has {sorted(known)}")
        super().__init__((k, v) for k, v in fields.items() if v is not None)
        self.type_name = type_name


def _slots(type_name: str) -> list[tuple[str, str, int]]:
    out, slot = [], 0
    for name, kind in _SCHEMA[type_name]:
        out.append((name, kind, slot))
        slot += 2 if kind.startswith("U:") else 1
    return out


def _build(b: flatbuffers.Builder, table: T) -> int:
    """Serialises ``table`` (children first, as flatbuffers requires); its offset."""
    offsets: dict[str, Any] = {}
    for name, kind, _ in _slots(table.type_name):
        if name not in table:
            continue
        value = table[name]
        if kind == "str":
            offsets[name] = b.CreateString(str(value))
        elif kind.startswith("T:"):
            offsets[name] = _build(b, value)
        elif kind.startswith("U:"):
            member, sub = value
            offsets[name] = (kind[2:].split(",").index(member) + 1, _build(b, sub))
        elif kind == "[str]" or kind.startswith("[T:"):
            items = [b.CreateString(str(v)) if kind == "[str]" else _build(b, v) for v in value]
            b.StartVector(4, len(items), 4)
            for off in reversed(items):
                b.PrependUOffsetTRelative(off)
            offsets[name] = b.EndVector()
        elif kind == "[u8]":  # CustomMetadata.data: (force_align: 16)
            data = bytes(value)
            b.StartVector(1, len(data), 16)
            b.head = b.head - len(data)
            b.Bytes[b.head:b.head + len(data)] = data
            offsets[name] = b.EndVector()
        elif kind in ("[u32]", "[f32]"):
            dtype = np.uint32 if kind == "[u32]" else np.float32
            offsets[name] = b.CreateNumpyVector(np.asarray(value, dtype))
    slots = _slots(table.type_name)
    b.StartObject(sum(2 if k.startswith("U:") else 1 for _, k, _ in slots))
    for name, kind, slot in slots:
        if name not in table:
            continue
        if kind in _SCALARS:
            getattr(b, _SCALARS[kind][1])(slot, int(table[name]), 0)
        elif kind.startswith("U:"):
            member, off = offsets[name]
            b.PrependUint8Slot(slot, member, 0)
            b.PrependUOffsetTRelativeSlot(slot + 1, off, 0)
        else:
            b.PrependUOffsetTRelativeSlot(slot, offsets[name], 0)
    return b.EndObject()


def serialize(model_metadata: T) -> bytes:
    """The ``ModelMetadata`` flatbuffer (file identifier ``M001``)."""
    if model_metadata.type_name != "ModelMetadata":
        raise ValueError("serialize() takes a ModelMetadata table")
    b = flatbuffers.Builder(1024)
    b.Finish(_build(b, model_metadata), METADATA_FILE_IDENTIFIER)
    return bytes(b.Output())


def _read(buf: bytes, pos: int, type_name: str) -> dict:
    tab = _FbTable(buf, pos)
    out: dict[str, Any] = {}
    for name, kind, slot in _slots(type_name):
        o = tab.Offset(4 + 2 * slot)
        if kind.startswith("U:"):
            member = tab.Get(_nt.Uint8Flags, tab.Pos + o) if o else 0
            o2 = tab.Offset(4 + 2 * (slot + 1))
            if member and o2:
                mtype = kind[2:].split(",")[member - 1]
                out[name] = (mtype, _read(buf, tab.Indirect(tab.Pos + o2), mtype))
            continue
        if not o:
            continue
        if kind == "str":
            out[name] = tab.String(tab.Pos + o).decode("utf8")
        elif kind in _SCALARS:
            out[name] = tab.Get(_SCALARS[kind][0], tab.Pos + o)
        elif kind.startswith("T:"):
            out[name] = _read(buf, tab.Indirect(tab.Pos + o), kind[2:])
        else:
            start, n = tab.Vector(o), tab.VectorLen(o)
            if kind == "[str]":
                out[name] = [tab.String(start + 4 * i).decode("utf8") for i in range(n)]
            elif kind.startswith("[T:"):
                out[name] = [_read(buf, tab.Indirect(start + 4 * i), kind[3:-1]) for i in range(n)]
            else:
                dtype = {"[u32]": "<u4", "[f32]": "<f4", "[u8]": "u1"}[kind]
                out[name] = np.frombuffer(buf, dtype, n, start).tolist()
    return out


def parse(metadata_buffer: bytes) -> dict:
    """A ``ModelMetadata`` flatbuffer as nested dicts (field names of the schema)."""
    buf = bytes(metadata_buffer)
    if buf[4:8] != METADATA_FILE_IDENTIFIER:
        raise ValueError("not a TFLite metadata flatbuffer (file identifier is not M001)")
    return _read(buf, flatbuffers.encode.Get(_nt.UOffsetTFlags.packer_type, buf, 0), "ModelMetadata")


# ----------------------------------------------------------------- the model file
def _schema():
    try:
        from ai_edge_litert import schema_py_generated
    except ImportError:  # pragma: no cover - TensorFlow ships the same generated module
        import importlib

        schema_py_generated = importlib.import_module("tensorflow.lite.python.schema_py_generated")
    return schema_py_generated


def _model_bytes(tflite: bytes) -> bytes:
    """The flatbuffer part of a ``.tflite`` file (without an appended zip)."""
    tflite = bytes(tflite)
    if tflite[4:8] != TFLITE_FILE_IDENTIFIER:
        raise ValueError("not a TFLite model (file identifier is not TFL3)")
    return tflite


def read_metadata(tflite: bytes) -> dict | None:
    """The metadata of a ``.tflite`` file as nested dicts, or None when it has none."""
    schema = _schema()
    model = schema.Model.GetRootAs(_model_bytes(tflite), 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name().decode() == METADATA_FIELD_NAME:
            data = model.Buffers(entry.Buffer()).DataAsNumpy()
            return parse(data.tobytes())
    return None


def associated_files(tflite: bytes) -> dict[str, bytes]:
    """The files packed after the flatbuffer (label files), by name."""
    try:
        with zipfile.ZipFile(io.BytesIO(bytes(tflite))) as zf:
            return {name: zf.read(name) for name in zf.namelist()}
    except zipfile.BadZipFile:
        return {}


def populate(tflite: bytes, metadata: T | bytes, files: dict[str, bytes] | None = None) -> bytes:
    """``tflite`` with ``metadata`` in its ``TFLITE_METADATA`` entry (replaced if
    present) and ``files`` zipped after the flatbuffer, as TFLite's
    ``MetadataPopulator`` writes them. Every file named in the metadata must be given."""
    meta_buf = serialize(metadata) if isinstance(metadata, T) else bytes(metadata)
    named = _file_names(parse(meta_buf))
    files = dict(files or {})
    missing = sorted(named - set(files))
    if missing:
        raise ValueError(f"the metadata names associated files {missing} that were not given")
    schema = _schema()
    model = schema.ModelT.InitFromPackedBuf(bytearray(_model_bytes(tflite)), 0)
    data = schema.BufferT()
    data.data = np.frombuffer(meta_buf, np.uint8)
    model.metadata = list(model.metadata or [])
    model.buffers = list(model.buffers or [])
    for entry in model.metadata:
        name = entry.name.decode() if isinstance(entry.name, bytes) else entry.name
        if name == METADATA_FIELD_NAME:
            model.buffers[entry.buffer] = data
            break
    else:
        model.buffers.append(data)
        entry = schema.MetadataT()
        entry.name = METADATA_FIELD_NAME
        entry.buffer = len(model.buffers) - 1
        model.metadata.append(entry)
    b = flatbuffers.Builder(len(tflite) + len(meta_buf) + 1024)
    b.Finish(model.Pack(b), TFLITE_FILE_IDENTIFIER)
    out = io.BytesIO()
    out.write(b.Output())
    if files:
        with zipfile.ZipFile(out, "a", compression=zipfile.ZIP_STORED) as zf:
            for name, content in files.items():
                zf.writestr(name, content)
    return out.getvalue()


def _file_names(meta: Any) -> set[str]:
    names = set()
    if isinstance(meta, dict):
        for key, value in meta.items():
            if key == "associated_files":
                names.update(f["name"] for f in value)
            else:
                names |= _file_names(value)
    elif isinstance(meta, (list, tuple)):
        for value in meta:
            names |= _file_names(value)
    return names


# --------------------------------------------------------------- tensor builders
def image_input(height: int, width: int, mean: float, std: float, dtype: str,
                name: str = "image") -> T:
    """An RGB image input: normalisation ``(pixel - mean) / std`` for a float
    input; a uint8 input takes the pixels as they are (camera frames)."""
    if std <= 0:
        raise ValueError(f"the normalisation std must be > 0, got {std}")
    lo, hi = (0.0, 255.0) if dtype == "uint8" else ((0 - mean) / std, (255 - mean) / std)
    return T("TensorMetadata", name=name,
             description=f"Input image, RGB, {height}x{width}; pixels in [0, 255]"
             + ("" if dtype == "uint8" else f", normalised as (pixel - {mean:g}) / {std:g}") + ".",
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


def preset_info(name: str) -> dict[str, Any]:
    """Name, description, version, author (source) and licence of a preset, for the metadata."""
    from mobilenet_zoo import __version__, presets

    meta = presets.get_preset(name)
    what = {"SSD": "object detector", "FasterRCNN": "object detector",
            "MobileNetClassifier": "image classifier", "DeepLabV3": "image segmenter"}.get(
        meta.get("task"), "MobileNet v1 model")
    metric = meta.get("published_top1")
    return {
        "name": name,
        "description": f"MobileNet v1 {what} (alpha {meta.get('alpha')}, input "
                       f"{meta.get('input_size')}), preset {name} of mobilenet_zoo"
                       + (f"; published top-1 {metric}%" if metric else "") + ".",
        "version": f"mobilenet_zoo {__version__}, weights sha256 {str(meta.get('sha256', ''))[:16]}",
        "author": str(meta.get("source") or "unknown source"),
        "license": str(meta.get("license") or "unknown licence"),
    }


def _generic_info(model) -> dict[str, Any]:
    from mobilenet_zoo import __version__

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
    from mobilenet_zoo.classification.classifier import MobileNetClassifier

    labels = info.get("labels") or getattr(model, "class_names", None)
    if not labels and isinstance(model, MobileNetClassifier) and model.num_classes == 1000:
        from mobilenet_zoo.imagenet import class_names

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
    from mobilenet_zoo.classification.classifier import MobileNetClassifier
    from mobilenet_zoo.segmentation.deeplab import DeepLabV3

    info = check_info(info)
    base = preset_info(info["preset"]) if info.get("preset") else _generic_info(model)
    base.update({k: v for k, v in info.items() if k in ("name", "description", "version", "author",
                                                          "license") and v})
    tensors = tensors_of(tflite)
    if len(tensors["inputs"]) != 1 or len(tensors["inputs"][0]["shape"]) != 4:
        raise ValueError("metadata needs one image input (batch, height, width, channels); the file "
                         f"has {[t['shape'] for t in tensors['inputs']]}. Export with metadata=False.")
    inp = tensors["inputs"][0]
    _, height, width, _ = inp["shape"]
    mean, std = _normalization(model, info)
    inputs = [image_input(height, width, mean, std, inp["dtype"])]
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
        outputs = [by_key.get(k) or feature_output(k, f"Output {k!r}.") for k in keys]
        description = "Detections: boxes, classes, scores and their number (TF OD API layout)."
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
            label = f" [{md['name']}]" if md.get("name") else ""
            lines.append(f"{kind} {t['name']}{label}: {t['dtype']}{t['shape']}{q}"
                         + (f"; {'; '.join(extra)}" if extra else ""))
    return "\n".join(lines)
