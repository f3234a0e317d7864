"""TF Object Detection API ``ssd_mobilenet_v1`` checkpoints -> our ``SSD``
(``object_detection/models/ssd_mobilenet_v1_feature_extractor.py`` scopes)."""

from __future__ import annotations

import os
import re
from typing import Any

import numpy as np

from mobilenet_zoo import weights_io
from mobilenet_zoo.convert.slim import BN_VARS, slim_to_keras
from mobilenet_zoo.hub.tasks import get_task

OD_API_PREFIX = "FeatureExtractor/MobilenetV1"
_OD_EXTRA = re.compile(
    rf"^{OD_API_PREFIX}/(Conv2d_13_pointwise_[12]_Conv2d_\d+_(?:1x1|3x3_s2)_\d+)/weights$"
)
_OD_PREDICTOR = re.compile(r"^BoxPredictor_(\d+)/(BoxEncodingPredictor|ClassPredictor)/weights$")


def is_od_api_ssd(tensors: dict[str, np.ndarray]) -> bool:
    """True for a TF Object Detection API ``ssd_mobilenet_v1`` checkpoint."""
    return f"{OD_API_PREFIX}/Conv2d_0/weights" in tensors and any(
        _OD_PREDICTOR.match(k) for k in tensors
    )


def od_api_ssd_to_keras(
    tensors: dict[str, np.ndarray],
) -> tuple[dict[str, list[np.ndarray]], dict[str, Any]]:
    """Maps a TF OD API ``ssd_mobilenet_v1`` checkpoint to our ``SSD`` layer names.

    Backbone ``FeatureExtractor/MobilenetV1/Conv2d_*`` -> ``conv1``, ``conv_dw_i``...;
    extra layers keep their names (``Conv2d_13_pointwise_1_Conv2d_2_1x1_256`` and its
    ``_bn``); ``BoxPredictor_k/{BoxEncodingPredictor,ClassPredictor}`` ->
    ``BoxPredictor_k_{...}``. Returns the weights and metadata (alpha,
    num_classes without background).
    """
    weights, meta = slim_to_keras(tensors, OD_API_PREFIX, include_logits=False)
    for key in sorted(tensors):
        m = _OD_EXTRA.match(key)
        if m:
            scope = f"{OD_API_PREFIX}/{m.group(1)}"
            weights[m.group(1)] = [np.asarray(tensors[key])]
            bn = []
            for var in BN_VARS:
                name = f"{scope}/BatchNorm/{var}"
                if name not in tensors and var == "gamma":
                    bn.append(np.ones_like(tensors[f"{scope}/BatchNorm/beta"]))
                    continue
                if name not in tensors:
                    raise ValueError(f"Tensor `{name}` (for `{m.group(1)}_bn`) is not in the checkpoint.")
                bn.append(np.asarray(tensors[name]))
            weights[f"{m.group(1)}_bn"] = bn
        m = _OD_PREDICTOR.match(key)
        if m:
            scope = key[: -len("/weights")]
            weights[f"BoxPredictor_{m.group(1)}_{m.group(2)}"] = [
                np.asarray(tensors[key]), np.asarray(tensors[f"{scope}/biases"])
            ]
    box0 = weights["BoxPredictor_0_BoxEncodingPredictor"][0].shape[-1] // 4
    cls0 = weights["BoxPredictor_0_ClassPredictor"][0].shape[-1]
    meta["num_classes"] = cls0 // box0 - 1
    meta["num_feature_maps"] = len([k for k in weights if k.endswith("BoxEncodingPredictor")])
    return weights, meta


def convert_od_api_ssd(
    tensors: dict[str, np.ndarray],
    out: str | os.PathLike,
    image_size: int = 300,
    anchor_order: str = "2017",
    source: str = "",
) -> dict[str, Any]:
    """Builds our ``SSD`` from a TF OD API checkpoint and saves it.

    ``out`` ending in ``.keras`` gets the whole model (``keras.saving.load_model``);
    otherwise a by-layer-name weights file. Anchors use ``anchor_order`` ("2017"
    for the 2017 model zoo and models trained from it: the box predictor's
    channels follow that order).
    """
    weights, meta = od_api_ssd_to_keras(tensors)
    model = get_task("SSD")(
        get_task("MobileNetBackbone")(alpha=meta["alpha"], min_depth=16,
                          depth_multiplier=meta["depth_multiplier"]),
        num_classes=meta["num_classes"],
        image_size=image_size,
        anchor_generator={"order": anchor_order},
    )
    report = weights_io.assign_by_name(model, weights, source=source or "checkpoint")
    meta.update(input_size=image_size, anchor_order=anchor_order, source=os.path.basename(source),
                source_kind="tf od api ssd_mobilenet_v1 checkpoint")
    out = os.fspath(out)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    if out.endswith(".keras"):
        weights_io.atomic_write(out, model.save)
    else:
        weights_io.save_by_name(model, out, metadata=meta)
    meta["params"] = int(model.count_params())
    meta["layers_loaded"] = len(report.loaded)
    meta["unused"] = report.unused
    return meta


