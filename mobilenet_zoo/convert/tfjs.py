"""TensorFlow.js weights (``*weights_manifest.json`` + ``.bin`` shards, the tfjs
converter's format) and the face-api.js export of a TF OD API SSD."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np

from mobilenet_zoo.convert.od_api import OD_API_PREFIX
from mobilenet_zoo.spec import BN_EPSILON

_TFJS_DTYPES = {"float32": np.float32, "int32": np.int32, "float16": np.float16,
                "uint8": np.uint8, "uint16": np.uint16, "bool": np.bool_}


def read_tfjs(manifest: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads a tfjs ``*weights_manifest.json`` and its ``.bin`` shards.

    The manifest is a list of groups, each with ``paths`` (shards concatenated
    in order, relative to the manifest) and ``weights`` (``name``, ``shape``,
    ``dtype``) stored back to back. A weight with ``quantization: {dtype,
    scale, min}`` is stored as that dtype and dequantizes as ``q * scale +
    min`` (``float16`` quantization is a plain cast). Returns float32 (or the
    declared integer dtype) arrays by name.
    """
    manifest = Path(manifest)
    try:
        groups = json.loads(manifest.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{manifest} is not a readable tfjs weights manifest: {err}") from err
    if not isinstance(groups, list) or not all(isinstance(g, dict) and "paths" in g and "weights" in g
                                               for g in groups):
        raise ValueError(f"{manifest}: a tfjs manifest is a list of {{paths, weights}} groups.")
    out: dict[str, np.ndarray] = {}
    for group in groups:
        buffer = b"".join((manifest.parent / p).read_bytes() for p in group["paths"])
        offset = 0
        for w in group["weights"]:
            shape = tuple(int(d) for d in w["shape"])
            count = int(np.prod(shape)) if shape else 1
            quant = w.get("quantization")
            stored = quant["dtype"] if quant else w["dtype"]
            if stored not in _TFJS_DTYPES:
                raise ValueError(f"{manifest}: weight {w['name']!r} has unsupported dtype {stored!r}.")
            dtype = np.dtype(_TFJS_DTYPES[stored])
            size = count * dtype.itemsize
            if offset + size > len(buffer):
                raise ValueError(
                    f"{manifest}: the shards end inside weight {w['name']!r} (need {offset + size} "
                    f"bytes, have {len(buffer)}); a .bin file is missing or truncated."
                )
            values = np.frombuffer(buffer, dtype, count, offset).reshape(shape)
            offset += size
            if quant and stored != "float16":
                values = values.astype(np.float64) * quant["scale"] + quant["min"]
            out[w["name"]] = values.astype(_TFJS_DTYPES[w["dtype"]])
        if offset != len(buffer):
            raise ValueError(f"{manifest}: {len(buffer) - offset} bytes of the shards are not "
                             "described by the manifest.")
    return out


# Extra feature layers of ssd_mobilenet_v1 (ssd_mobilenet_v1_feature_extractor.py):
# pairs (1x1 to d/2, 3x3 stride 2 to d) after Conv2d_13, numbered from 2.
_TFJS_EXTRA = re.compile(r"^Prediction/Conv2d_(\d+)_pointwise/(weights|convolution_bn_offset)$")


def tfjs_od_api_ssd_to_checkpoint(tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Renames a tfjs export of a TF OD API SSD (face-api.js layout) to checkpoint names.

    ``MobilenetV1/Conv2d_0_pointwise`` is the stem conv; ``.../convolution_bn_offset``
    is a BatchNorm folded into its conv, restored as gamma 1, beta = offset,
    mean 0, variance 1 - epsilon (so BN(x) = x + offset exactly);
    ``Prediction/Conv2d_{k}_pointwise`` are the extra layers; ``Prediction/BoxPredictor_k``
    the predictors. The result goes through ``od_api_ssd_to_keras``.
    """
    out: dict[str, np.ndarray] = {}
    folded: dict[str, np.ndarray] = {}
    for name, value in tensors.items():
        m = _TFJS_EXTRA.match(name)
        if m:
            k, var = int(m.group(1)), m.group(2)
            depth = int(tensors[f"Prediction/Conv2d_{k}_pointwise/weights"].shape[-1])
            kind = "1_Conv2d_{}_1x1_{}" if k % 2 == 0 else "2_Conv2d_{}_3x3_s2_{}"
            scope = f"{OD_API_PREFIX}/Conv2d_13_pointwise_" + kind.format(2 + k // 2, depth)
        elif name.startswith("MobilenetV1/Conv2d_0_pointwise/"):
            var = name.rsplit("/", 1)[1]
            scope = f"{OD_API_PREFIX}/Conv2d_0"
        elif name.startswith("MobilenetV1/"):
            scope, var = f"FeatureExtractor/{name.rsplit('/', 1)[0]}", name.rsplit("/", 1)[1]
            if "/BatchNorm" in scope:
                out[f"FeatureExtractor/{name}"] = value
                continue
        elif name.startswith("Prediction/BoxPredictor_"):
            out[name[len("Prediction/"):]] = value
            continue
        else:
            continue  # graph constants of the tfjs export (shapes, axes, anchors)
        if var == "convolution_bn_offset":
            folded[scope] = value
        else:
            out[f"{scope}/{var}"] = value
    for scope, offset in folded.items():
        out[f"{scope}/BatchNorm/gamma"] = np.ones_like(offset)
        out[f"{scope}/BatchNorm/beta"] = offset
        out[f"{scope}/BatchNorm/moving_mean"] = np.zeros_like(offset)
        out[f"{scope}/BatchNorm/moving_variance"] = np.full_like(offset, 1.0 - BN_EPSILON)
    return out


