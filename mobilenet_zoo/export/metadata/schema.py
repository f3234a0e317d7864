"""The TFLite metadata flatbuffer (``metadata_schema.fbs``): tables written with the
``flatbuffers`` package, read back, and packed into a model file with its
associated label files (as TFLite's ``MetadataPopulator`` does). See the package
docstring for the format and the sources."""

from __future__ import annotations

import io
import zipfile
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


