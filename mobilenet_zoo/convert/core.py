"""``convert()``: any supported source -> a by-layer-name weights file (every tensor checked)."""

from __future__ import annotations

import os
from typing import Any

from mobilenet_zoo import weights_io
from mobilenet_zoo.convert.keras_files import _keras_meta, alpha_from_name, read_keras_file
from mobilenet_zoo.convert.od_api import convert_od_api_ssd, is_od_api_ssd
from mobilenet_zoo.convert.slim import (
    SLIM_SCOPE,
    read_slim_checkpoint,
    read_slim_graphdef,
    slim_to_keras,
)
from mobilenet_zoo.convert.tfjs import read_tfjs, tfjs_od_api_ssd_to_checkpoint
from mobilenet_zoo.hub.download import sha256_of
from mobilenet_zoo.hub.tasks import get_task


def build_for(meta: dict[str, Any], input_size: int = 224):
    """The Keras model (classifier if there are logits) that the weights fit."""
    backbone = get_task("MobileNetBackbone")(
        alpha=meta["alpha"],
        input_shape=(input_size, input_size, 3),
        depth_multiplier=meta.get("depth_multiplier", 1),
    )
    if "num_classes" in meta:
        return get_task("MobileNetClassifier")(backbone, num_classes=meta["num_classes"])
    return backbone


def convert(
    src: str | os.PathLike,
    out: str | os.PathLike,
    keep_background: bool = False,
    input_size: int | None = None,
    prefix: str = SLIM_SCOPE,
    extra_metadata: dict[str, Any] | None = None,
    anchor_order: str = "2017",
) -> dict[str, Any]:
    """Converts ``src`` to a by-layer-name weights file at ``out``.

    ``src`` is a TF-slim checkpoint (prefix, ``.index`` or directory), a frozen
    ``.pb``, a keras.applications ``.h5`` or a ``.keras`` file. The weights are
    loaded into the matching Keras model (all shapes checked) before writing.
    A TF Object Detection API ``ssd_mobilenet_v1`` checkpoint becomes our ``SSD``
    (whole model when ``out`` ends in ``.keras``). Returns the metadata.
    """
    src = os.fspath(src)
    name_alpha, name_size = alpha_from_name(src)
    info: dict[str, Any] = {}
    if src.endswith(".pb"):
        tensors, info = read_slim_graphdef(src)
        weights, meta = slim_to_keras(tensors, prefix, keep_background)
        source_kind = "tf-slim frozen graph"
    elif src.endswith(".json"):
        tensors = tfjs_od_api_ssd_to_checkpoint(read_tfjs(src))
        if not is_od_api_ssd(tensors):
            raise ValueError(f"{src}: a tfjs manifest, but not of a TF OD API ssd_mobilenet_v1 "
                             "(no MobilenetV1/Conv2d_0_pointwise and BoxPredictor weights).")
        return convert_od_api_ssd(tensors, out, input_size or 300, anchor_order, src)
    elif src.endswith((".h5", ".hdf5", ".keras")):
        weights = read_keras_file(src)
        meta = _keras_meta(weights)
        source_kind = "keras"
    else:
        ckpt = src[: -len(".index")] if src.endswith(".index") else src
        tensors = read_slim_checkpoint(ckpt)
        if is_od_api_ssd(tensors):
            return convert_od_api_ssd(tensors, out, input_size or 300, anchor_order, src)
        weights, meta = slim_to_keras(tensors, prefix, keep_background)
        source_kind = "tf-slim checkpoint"
    if name_alpha is not None and abs(name_alpha - meta["alpha"]) > 1e-6:
        raise ValueError(
            f"{src}: the file name says alpha {name_alpha} but its tensors have alpha "
            f"{meta['alpha']} (conv_pw_13 has {int(meta['alpha'] * 1024)} channels)."
        )
    size = input_size or info.get("input_size") or name_size or 224
    model = build_for(meta, size)
    report = weights_io.assign_by_name(model, weights, source=src)
    meta.update(
        input_size=int(size),
        variant="separable",
        min_depth=8,
        source=os.path.basename(src),
        source_kind=source_kind,
        source_sha256=sha256_of(src) if os.path.isfile(src) else None,
        background_class_kept=bool(keep_background),
    )
    meta.update(extra_metadata or {})
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    weights_io.save_by_name(model, out, metadata=meta)
    meta["params"] = int(model.count_params())
    meta["layers_loaded"] = len(report.loaded)
    meta["unused"] = report.unused
    return meta
