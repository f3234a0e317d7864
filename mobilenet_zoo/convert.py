"""Converters from published MobileNet v1 weights to our by-layer-name files.

Sources:

* TF Object Detection API ``ssd_mobilenet_v1`` checkpoints -> our ``SSD``;

* TF-slim checkpoints (``tf.train.load_checkpoint``) and TF-slim frozen graphs
  (``.pb`` GraphDef), with ``MobilenetV1/...`` variable names (REFERENCE.md s.2);
* keras.applications MobileNet ``.h5`` files (weights-only or whole model, as
  cached in ``~/.keras/models``) and Keras 3 ``.keras`` files.

``python -m mobilenet_zoo.convert SRC --out weights/NAME.weights.h5``

Every tensor is checked by name and shape against the Keras model of the alpha
the file holds; any mismatch or missing tensor fails naming it, and nothing is
written.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from mobilenet_zoo import weights_io
from mobilenet_zoo.backbone import BLOCK_SPECS, BN_EPSILON, MobileNetBackbone
from mobilenet_zoo.detection.ssd import SSD

SLIM_SCOPE = "MobilenetV1"
SLIM_LOGITS = "Logits/Conv2d_1c_1x1"
BN_VARS = ("gamma", "beta", "moving_mean", "moving_variance")


def read_slim_graphdef(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict]:
    """Constants of a frozen GraphDef by name, and facts read from the graph."""
    import tensorflow as tf
    from google.protobuf.message import DecodeError

    graph_def = tf.compat.v1.GraphDef()
    try:
        graph_def.ParseFromString(Path(path).read_bytes())
    except (DecodeError, RuntimeWarning) as err:
        raise ValueError(f"{path}: not a frozen TensorFlow GraphDef (.pb), or truncated: {err}") from err
    if not graph_def.node:
        raise ValueError(f"{path}: an empty or foreign .pb file (no graph nodes); expected a TF-slim "
                         "frozen graph such as mobilenet_v1_1.0_224_frozen.pb.")
    tensors, info = {}, {}
    for node in graph_def.node:
        if node.op == "Const" and node.attr["value"].tensor.tensor_shape.dim:
            tensors[node.name] = tf.make_ndarray(node.attr["value"].tensor)
        elif node.op == "Placeholder" and "shape" in node.attr:
            dims = [d.size for d in node.attr["shape"].shape.dim]
            if len(dims) == 4 and dims[1] > 0:
                info["input_size"] = dims[1]
    return tensors, info


def read_slim_checkpoint(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every variable of a TF checkpoint (prefix or directory) by name."""
    import tensorflow as tf

    try:
        reader = tf.train.load_checkpoint(os.fspath(path))
    except (tf.errors.OpError, ValueError) as err:
        raise ValueError(
            f"{path}: not a readable TF checkpoint (give the prefix, e.g. model.ckpt, its .index, or "
            f"its directory; the .index and .data files must be complete): {str(err).splitlines()[0]}"
        ) from err
    return {
        name: reader.get_tensor(name)
        for name in reader.get_variable_to_shape_map()
        if not name.endswith(("/ExponentialMovingAverage", "RMSProp", "RMSProp_1"))
    }


def slim_layer_map(prefix: str = SLIM_SCOPE) -> dict[str, tuple[str, tuple[str, ...]]]:
    """Keras layer name -> (slim scope, variable names in get_weights() order)."""
    mapping = {
        "conv1": (f"{prefix}/Conv2d_0", ("weights",)),
        "conv1_bn": (f"{prefix}/Conv2d_0/BatchNorm", BN_VARS),
    }
    for i in range(1, len(BLOCK_SPECS) + 1):
        dw, pw = f"{prefix}/Conv2d_{i}_depthwise", f"{prefix}/Conv2d_{i}_pointwise"
        mapping[f"conv_dw_{i}"] = (dw, ("depthwise_weights",))
        mapping[f"conv_dw_{i}_bn"] = (f"{dw}/BatchNorm", BN_VARS)
        mapping[f"conv_pw_{i}"] = (pw, ("weights",))
        mapping[f"conv_pw_{i}_bn"] = (f"{pw}/BatchNorm", BN_VARS)
    return mapping


def slim_to_keras(
    tensors: dict[str, np.ndarray],
    prefix: str = SLIM_SCOPE,
    keep_background: bool = False,
    include_logits: bool = True,
) -> tuple[dict[str, list[np.ndarray]], dict[str, Any]]:
    """Maps TF-slim MobileNet v1 tensors to ``{keras_layer_name: [arrays]}``.

    Args:
        tensors: variable name -> array (checkpoint or frozen-graph constants).
        prefix: the MobileNet scope (``MobilenetV1``; ``FeatureExtractor/MobilenetV1``
            in TF Object Detection API checkpoints).
        keep_background: keep the 1001st (background, index 0) logit.
        include_logits: map ``Logits/Conv2d_1c_1x1`` when present.

    Returns:
        The weights and metadata inferred from them (``alpha``, ``num_classes``).

    Raises:
        ValueError: naming the first missing tensor (and close names found).
    """
    out: dict[str, list[np.ndarray]] = {}
    for layer, (scope, names) in slim_layer_map(prefix).items():
        arrays = []
        for name in names:
            key = f"{scope}/{name}"
            if key not in tensors:
                if name == "gamma":  # slim batch_norm(scale=False) has no gamma
                    beta = tensors.get(f"{scope}/beta")
                    if beta is not None:
                        arrays.append(np.ones_like(beta))
                        continue
                near = sorted(k for k in tensors if k.startswith(scope.rsplit("/", 1)[0]))[:5]
                raise ValueError(
                    f"Tensor `{key}` (for Keras layer `{layer}`) is not in the source. "
                    f"Names found under that scope: {near or 'none'}; is `prefix`="
                    f"{prefix!r} right?"
                )
            arrays.append(np.asarray(tensors[key]))
        out[layer] = arrays
    last = out[f"conv_pw_{len(BLOCK_SPECS)}"][0]
    meta: dict[str, Any] = {"alpha": float(last.shape[-1]) / BLOCK_SPECS[-1][1]}
    depth_multiplier = out["conv_dw_1"][0].shape[-1]
    meta["depth_multiplier"] = int(depth_multiplier)
    w_key, b_key = f"{prefix}/{SLIM_LOGITS}/weights", f"{prefix}/{SLIM_LOGITS}/biases"
    if include_logits and w_key in tensors:
        kernel, bias = np.asarray(tensors[w_key]), np.asarray(tensors[b_key])
        if not keep_background:
            if kernel.shape[-1] != 1001:
                raise ValueError(
                    f"`{w_key}` has {kernel.shape[-1]} classes; dropping the background "
                    "class needs the 1001-class ImageNet head. Pass keep_background=True "
                    "(--keep-background) to keep the logits as they are."
                )
            kernel, bias = kernel[..., 1:], bias[1:]
        out["conv_preds"] = [kernel, bias]
        meta["num_classes"] = int(kernel.shape[-1])
    return out, meta


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
    model = SSD(
        MobileNetBackbone(alpha=meta["alpha"], min_depth=16,
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


# --------------------------------------------------------------------------
# TensorFlow.js weights (model-weights_manifest.json + .bin shards)
# --------------------------------------------------------------------------
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


def alpha_from_name(path: str | os.PathLike) -> tuple[float | None, int | None]:
    """``mobilenet_v1_0.25_128`` -> (0.25, 128); (None, None) when absent."""
    m = re.search(r"mobilenet_v1_(\d+(?:\.\d+)?)_(\d+)", Path(path).name)
    return (float(m.group(1)), int(m.group(2))) if m else (None, None)


def _keras3_weight_shapes(path: str) -> dict[str, tuple] | None:
    """Dataset shapes of a Keras 3 ``save_weights`` file (``layers/<auto name>/vars/<i>``),
    or None for another file."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if "layers" not in f or "layer_names" in f.attrs:
                return None
            shapes: dict[str, tuple] = {}
            f.visititems(lambda name, obj: shapes.__setitem__(name, obj.shape)
                         if isinstance(obj, h5py.Dataset) else None)
            return shapes
    except OSError:
        return None


def read_keras3_weights(path: str | os.PathLike) -> dict[str, list[np.ndarray]]:
    """A Keras 3 ``model.save_weights`` file of a ``MobileNetBackbone`` or ``MobileNetClassifier``.

    Such files name layers by creation order (``conv2d_3``), not by the MobileNet names, so
    the model is rebuilt from the shapes (alpha from conv1's 32 * alpha filters, classes
    from the logits) and loaded with Keras' own ``load_weights``, which checks every variable.
    """
    from mobilenet_zoo import MobileNetBackbone, MobileNetClassifier

    path = os.fspath(path)
    shapes = _keras3_weight_shapes(path) or {}
    stems = [s for s in shapes.values() if len(s) == 4 and s[:3] == (3, 3, 3)]
    if not stems:
        raise ValueError(f"{path}: a Keras weights file without MobileNet's 3x3 RGB stem conv; "
                         "not a MobileNetBackbone / MobileNetClassifier save_weights file.")
    alpha = stems[0][3] / 32
    logits = [s for s in shapes.values() if len(s) == 4 and s[:3] == (1, 1, int(1024 * alpha))]
    candidates = [lambda: MobileNetBackbone(alpha=alpha, input_shape=(224, 224, 3))]
    for k in {s[3] for s in logits}:
        for prep in (False, True):
            candidates.append(lambda k=k, prep=prep: MobileNetClassifier(
                MobileNetBackbone(alpha=alpha, input_shape=(224, 224, 3)), num_classes=k,
                include_preprocessing=prep))
    for build in candidates:
        model = build()
        try:
            with warnings.catch_warnings():  # Keras notes empty containers it skips; every
                warnings.filterwarnings("ignore", message="Skipping nested container")  # variable is checked
                model.load_weights(path)
        except ValueError:
            continue
        return {la.name: la.get_weights() for la in weights_io.iter_weighted_layers(model)}
    raise ValueError(f"{path}: a Keras save_weights file whose layers fit no MobileNetBackbone or "
                     f"MobileNetClassifier of alpha {alpha:g}; load it into the model that wrote it "
                     "and save that model as .keras, then convert the .keras file.")


def read_keras_file(path: str | os.PathLike) -> dict[str, list[np.ndarray]]:
    """keras.applications ``.h5`` (by layer name), a Keras 3 ``save_weights`` file of a
    MobileNet, or a Keras 3 ``.keras`` model."""
    path = os.fspath(path)
    if weights_io.is_by_name_file(path):
        return weights_io.read_by_name(path)
    if _keras3_weight_shapes(path) is not None:
        return read_keras3_weights(path)
    if path.endswith(".keras"):
        import keras

        try:
            model = keras.saving.load_model(path, compile=False)
        except Exception as err:  # zip, JSON or deserialisation errors of a broken file
            raise ValueError(f"{path}: not a readable .keras file (truncated, or saved by a class "
                             f"that is not registered): {err}") from err
        return {la.name: la.get_weights() for la in weights_io.iter_weighted_layers(model)}
    raise ValueError(
        f"{path}: not a keras.applications .h5 (layer_names layout), a Keras save_weights file "
        "nor a .keras file."
    )


def _keras_meta(weights: dict[str, list[np.ndarray]]) -> dict[str, Any]:
    if "conv_pw_13" not in weights:
        raise ValueError(
            "The Keras file has no `conv_pw_13` layer: not a keras.applications "
            f"MobileNet. Layers found: {sorted(weights)[:8]}..."
        )
    meta: dict[str, Any] = {"alpha": weights["conv_pw_13"][0].shape[-1] / BLOCK_SPECS[-1][1]}
    meta["depth_multiplier"] = int(weights["conv_dw_1"][0].shape[-1])
    if "conv_preds" in weights:
        meta["num_classes"] = int(weights["conv_preds"][0].shape[-1])
    return meta


def build_for(meta: dict[str, Any], input_size: int = 224):
    """The Keras model (classifier if there are logits) that the weights fit."""
    from mobilenet_zoo import MobileNetBackbone, MobileNetClassifier

    backbone = MobileNetBackbone(
        alpha=meta["alpha"],
        input_shape=(input_size, input_size, 3),
        depth_multiplier=meta.get("depth_multiplier", 1),
    )
    if "num_classes" in meta:
        return MobileNetClassifier(backbone, num_classes=meta["num_classes"])
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
    from mobilenet_zoo.presets import sha256_of

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mobilenet_zoo.convert",
        description="Convert TF-slim / keras.applications MobileNet v1 weights.",
    )
    parser.add_argument("src", help="checkpoint prefix or dir, frozen .pb, keras .h5 or .keras, "
                                    "or a tfjs *weights_manifest.json (TF OD API SSD)")
    parser.add_argument("--out", required=True, help="output file, e.g. weights/NAME.weights.h5")
    parser.add_argument(
        "--keep-background",
        action="store_true",
        help="keep the 1001st (background) logit of TF-slim heads instead of dropping it",
    )
    parser.add_argument("--input-size", type=int, default=None, help="training resolution")
    parser.add_argument("--prefix", default=SLIM_SCOPE, help="scope of the MobileNet variables")
    parser.add_argument(
        "--anchor-order", choices=["2017", "current"], default="2017",
        help="SSD checkpoints: box-spec order the predictor was trained with (2017 model zoo: 2017)",
    )
    args = parser.parse_args(argv)
    from mobilenet_zoo.presets import sha256_of

    try:
        meta = convert(args.src, args.out, args.keep_background, args.input_size, args.prefix,
                       anchor_order=args.anchor_order)
    except (ValueError, OSError) as err:
        parser.exit(2, f"error: {err}\n")
    print(
        f"wrote {args.out}: alpha {meta['alpha']}, input {meta['input_size']}, "
        f"classes {meta.get('num_classes', 'none (backbone only)')}, "
        f"{meta['params']:,} params, {meta['layers_loaded']} layers; "
        f"sha256 {sha256_of(args.out)}"
    )
    if meta["unused"]:
        print(f"not used: {meta['unused']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
