"""Weights by layer name, in the HDF5 layout of keras.applications.

The files keras.applications downloads (``mobilenet_1_0_224_tf.h5``) store one
group per layer name, with ``layer_names`` / ``weight_names`` attributes. We write
that same layout, so one reader loads our shipped weights, keras.applications
files (weights-only or whole-model ``.h5``) and converted checkpoints, into any
model whose layers carry the same names, at any input size.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import h5py
import keras
import numpy as np

from mobilenet_zoo.files import atomic_write  # noqa: F401  (re-exported)

METADATA_ATTR = "mobilenet_zoo_metadata"


def iter_weighted_layers(model: keras.layers.Layer) -> Iterator[keras.layers.Layer]:
    """Yields the layers that own weights, descending into nested models."""
    for layer in getattr(model, "layers", []):
        if getattr(layer, "layers", None):
            yield from iter_weighted_layers(layer)
        elif layer.weights:
            yield layer


def _decode(values: Any) -> list[str]:
    return [v.decode("utf8") if isinstance(v, bytes) else str(v) for v in values]


def _weights_root(f: h5py.File) -> h5py.Group | None:
    if "layer_names" in f.attrs:
        return f
    if "model_weights" in f and "layer_names" in f["model_weights"].attrs:
        return f["model_weights"]  # a whole model saved with model.save("x.h5")
    return None


def is_by_name_file(path: str | os.PathLike) -> bool:
    """True for an HDF5 file in the by-layer-name layout (ours or Keras 2's)."""
    path = os.fspath(path)
    if not path.endswith((".h5", ".hdf5")) or not os.path.isfile(path):
        return False
    try:
        with h5py.File(path, "r") as f:
            return _weights_root(f) is not None
    except OSError:
        return False


def read_by_name(path: str | os.PathLike) -> dict[str, list[np.ndarray]]:
    """Reads ``{layer_name: [arrays in get_weights() order]}`` from a file."""
    try:
        return _read_by_name(path)
    except OSError as err:  # truncated / not HDF5: say which file and why
        raise ValueError(f"{path} is not a readable HDF5 weights file ({err}).") from err


def _read_by_name(path: str | os.PathLike) -> dict[str, list[np.ndarray]]:
    with h5py.File(os.fspath(path), "r") as f:
        root = _weights_root(f)
        if root is None:
            raise ValueError(
                f"{path} is not a by-layer-name weights file (no `layer_names` "
                "attribute). Expected a keras.applications .h5 or a file written "
                "by mobilenet_zoo.weights_io.save_by_name."
            )
        out = {}
        for name in _decode(root.attrs["layer_names"]):
            group = root[name]
            out[name] = [np.asarray(group[w]) for w in _decode(group.attrs["weight_names"])]
        return out


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    with h5py.File(os.fspath(path), "r") as f:
        raw = f.attrs.get(METADATA_ATTR)
        return json.loads(raw) if raw is not None else {}


def save_by_name(
    model_or_weights: keras.Model | dict[str, list[np.ndarray]],
    path: str | os.PathLike,
    metadata: dict[str, Any] | None = None,
) -> None:
    """Writes weights by layer name (keras.applications layout) plus metadata."""
    if isinstance(model_or_weights, dict):
        items = list(model_or_weights.items())
        var_names = {name: [f"{name}/w{i}" for i in range(len(ws))] for name, ws in items}
    else:
        layers = list(iter_weighted_layers(model_or_weights))
        items = [(layer.name, layer.get_weights()) for layer in layers]
        var_names = {
            layer.name: [f"{layer.name}/{w.name}" for w in layer.weights] for layer in layers
        }
    atomic_write(path, lambda tmp: _write_by_name(tmp, items, var_names, metadata))


def _write_by_name(path, items, var_names, metadata) -> None:
    with h5py.File(os.fspath(path), "w") as f:
        f.attrs["layer_names"] = [n.encode("utf8") for n, _ in items]
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = keras.__version__.encode("utf8")
        if metadata:
            f.attrs[METADATA_ATTR] = json.dumps(metadata, sort_keys=True)
        for name, arrays in items:
            group = f.create_group(name)
            names = var_names[name]
            group.attrs["weight_names"] = [n.encode("utf8") for n in names]
            for wname, value in zip(names, arrays):
                group.create_dataset(wname, data=np.asarray(value))


class NonFiniteWeightsError(ValueError):
    """Weights or BatchNorm statistics with NaN or inf values: such a model
    predicts NaN (or, folded, finite garbage), so it is refused by name."""


def non_finite_report(layer_name: str, var_names: list[str], arrays) -> str | None:
    """``None`` when every array is finite, else a line naming the layer, each
    non-finite tensor and how many of its values are NaN / inf."""
    bad = []
    for name, value in zip(var_names, arrays):
        value = np.asarray(value)
        if not np.issubdtype(value.dtype, np.floating):
            continue
        n_nan, n_inf = int(np.isnan(value).sum()), int(np.isinf(value).sum())
        if n_nan or n_inf:
            bad.append(f"{name} ({n_nan} NaN, {n_inf} inf of {value.size} values)")
    return f"layer `{layer_name}`: {', '.join(bad)}" if bad else None


def check_finite(model: keras.layers.Layer, source: str = "the model", what: str = "") -> None:
    """Raises ``NonFiniteWeightsError`` naming every layer of ``model`` whose weights
    (kernels, biases, BatchNorm gamma/beta/moving statistics) hold NaN or inf.

    ``source`` names where the weights came from (a file, a preset) and ``what``
    says what was (not) done, for the message."""
    problems = [
        line for layer in iter_weighted_layers(model)
        if (line := non_finite_report(layer.name, [w.name for w in layer.weights],
                                      [keras.ops.convert_to_numpy(w) for w in layer.weights]))
    ]
    if problems:
        raise NonFiniteWeightsError(
            f"{source} has non-finite weights (NaN or inf): {'; '.join(problems)}. Such a model "
            f"predicts NaN.{' ' + what if what else ''} Use an earlier checkpoint or retrain "
            "(lower the learning rate; check the data for NaN)."
        )


@dataclass
class LoadReport:
    """What ``load_by_name`` did: layers loaded, left as they were, and unused."""

    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)


def assign_by_name(
    model: keras.Model,
    weights: dict[str, list[np.ndarray]],
    allow_missing: bool | list[str] = False,
    source: str = "weights",
) -> LoadReport:
    """Sets each layer of ``model`` from ``weights[layer.name]``.

    Every shape is checked before anything is assigned, so a failure leaves the
    model untouched. Args:
        allow_missing: ``False`` (every weighted layer must be in ``weights``),
            ``True``, or a list of layer names allowed to keep their values.
    Raises:
        ValueError: naming the layer, the tensor and both shapes on a mismatch, or
            the layers absent from ``weights``.
        NonFiniteWeightsError: (a ValueError) naming the layer and tensor whose
            values are NaN or inf; nothing is assigned.
    """
    report = LoadReport()
    plan = []
    for layer in iter_weighted_layers(model):
        if layer.name not in weights:
            report.missing.append(layer.name)
            continue
        found = weights[layer.name]
        expected = layer.weights
        if len(found) != len(expected):
            raise ValueError(
                f"Layer `{layer.name}`: {source} has {len(found)} tensors, the model "
                f"expects {len(expected)} ({[w.name for w in expected]})."
            )
        for var, value in zip(expected, found):
            if tuple(var.shape) != tuple(np.shape(value)):
                raise ValueError(
                    f"Shape mismatch for `{layer.name}/{var.name}`: the model expects "
                    f"{tuple(var.shape)}, {source} has {tuple(np.shape(value))}. "
                    "Weights only load into a model of the same alpha, "
                    "depth_multiplier and variant (any input size works)."
                )
        problem = non_finite_report(layer.name, [w.name for w in expected], found)
        if problem:
            raise NonFiniteWeightsError(
                f"{source} has non-finite weights (NaN or inf) for {problem}; such a model "
                "predicts NaN, so nothing was loaded. Use an earlier checkpoint or retrain."
            )
        plan.append((layer, found))
    allowed = allow_missing if isinstance(allow_missing, (list, tuple, set)) else []
    not_allowed = [n for n in report.missing if n not in allowed]
    if not_allowed and allow_missing is not True:
        raise ValueError(
            f"{source} has no weights for layers {not_allowed} of `{model.name}`; "
            "nothing was loaded. Check that the file matches the architecture."
        )
    if not plan:
        raise ValueError(f"{source} shares no layer name with `{model.name}`.")
    for layer, found in plan:
        layer.set_weights(found)
        report.loaded.append(layer.name)
    model_names = {layer.name for layer in iter_weighted_layers(model)}
    # Weightless layers (ReLU, Dropout, Reshape: empty lists in a keras.applications .h5)
    # hold nothing to use, so they are not "unused".
    report.unused = [n for n in weights if n not in model_names and len(weights[n])]
    return report


def assign_matching(
    model: keras.Model, weights: dict[str, list[np.ndarray]], source: str = "weights"
) -> LoadReport:
    """Sets every layer whose name and shapes match; the others keep their values
    (listed in ``report.missing``). For initialising a new head from a model
    trained on other classes. NaN / inf values raise ``NonFiniteWeightsError``
    before anything is set."""
    report = LoadReport()
    plan = []
    for layer in iter_weighted_layers(model):
        found = weights.get(layer.name)
        if found is None or len(found) != len(layer.weights) or any(
            tuple(v.shape) != tuple(np.shape(a)) for v, a in zip(layer.weights, found)
        ):
            report.missing.append(layer.name)
            continue
        problem = non_finite_report(layer.name, [w.name for w in layer.weights], found)
        if problem:
            raise NonFiniteWeightsError(
                f"{source} has non-finite weights (NaN or inf) for {problem}; such a model "
                "predicts NaN, so nothing was loaded. Use an earlier checkpoint or retrain."
            )
        plan.append((layer, found))
    for layer, found in plan:
        layer.set_weights(found)
        report.loaded.append(layer.name)
    if not report.loaded:
        raise ValueError(f"{source} shares no layer of matching shape with `{model.name}`.")
    names = {layer.name for layer in iter_weighted_layers(model)}
    report.unused = [n for n in weights if n not in names and len(weights[n])]  # weighted only
    return report


def load_by_name(
    model: keras.Model,
    path: str | os.PathLike,
    allow_missing: bool | list[str] = False,
) -> LoadReport:
    """Loads a by-layer-name HDF5 file into ``model`` (see ``assign_by_name``)."""
    return assign_by_name(model, read_by_name(path), allow_missing, source=os.fspath(path))


class ByNameWeightsMixin:
    """``load_weights`` that also takes by-layer-name files (converted checkpoints,
    keras.applications .h5); other files go to ``keras.Model.load_weights``. Either
    way, weights with NaN or inf values raise ``NonFiniteWeightsError``."""

    def load_weights(self, filepath, *args, **kwargs):
        if is_by_name_file(filepath):
            load_by_name(self, filepath)
        else:
            super().load_weights(filepath, *args, **kwargs)
            check_finite(self, os.fspath(filepath),
                         "They were loaded into the model: do not use it.")
