"""TF-slim MobileNet v1: checkpoints and frozen graphs (``MobilenetV1/...`` names,
``research/slim/nets/mobilenet_v1.py``) -> Keras layer names."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from mobilenet_zoo.spec import BLOCK_SPECS
from mobilenet_zoo.tensorflow_support import import_tensorflow

SLIM_SCOPE = "MobilenetV1"
SLIM_LOGITS = "Logits/Conv2d_1c_1x1"
BN_VARS = ("gamma", "beta", "moving_mean", "moving_variance")


def read_slim_graphdef(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict]:
    """Constants of a frozen GraphDef by name, and facts read from the graph."""

    tf = import_tensorflow("the TF-slim converter")
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

    tf = import_tensorflow("the TF-slim converter")

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


