"""``register_preset``: a user's weights file as a preset, registered only when it loads
(``mobilenet_zoo.presets`` exports it, loaded on first use)."""

from __future__ import annotations

import contextlib
import difflib
import inspect
import json
import os
import re
import shutil
import tempfile
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import keras
import numpy as np

from mobilenet_zoo import weights_io
from mobilenet_zoo.hub import catalog
from mobilenet_zoo.hub.download import download as fetch_url
from mobilenet_zoo.hub.download import sha256_of
from mobilenet_zoo.hub.presets import (
    METADATA_KEYS,
    WEIGHTS_ALIASES,
)
from mobilenet_zoo.hub.registry import (
    cache_dir,
    downloads_dir,
    locked_cache,
    read_manifest,
    shipped_names,
    write_entry,
)
from mobilenet_zoo.hub.tasks import get_task, task_names
from mobilenet_zoo.presets.loading import (
    _staged,
    build_from_metadata,
)

# Known metadata keys (weights/manifest.json, the catalog, the installer): a key one typo away
# from one of these (``num_clases``) is refused rather than silently ignored.
KNOWN_METADATA_KEYS = (
    "task", "task_config", "alpha", "input_size", "num_classes", "class_names", "labels",
    "depth_multiplier", "min_depth", "variant", "output_stride", "resize_mode", "source", "source_url",
    "source_sha256", "sources", "license", "published_metric", "published_top1",
    "published_top5", "paper_top1", "metric_note", "preprocessing",
)
# Written by register_preset itself: a value given in ``metadata`` is dropped.
_RESERVED_KEYS = ("file", "sha256", "directory", "location", "name")
# Keys a ``.keras`` file answers itself (the others of METADATA_KEYS come from the user).
_ARCHITECTURE_KEYS = ("task", "alpha", "input_size", "num_classes", "depth_multiplier",
                      "min_depth", "variant", "output_stride")
_METADATA_HELP = (
    "`metadata` must be a dict of weights/manifest.json keys: `alpha` and `input_size` are "
    "required (a .keras file gives them itself); `task` (e.g. 'MobileNetClassifier', 'SSD'; "
    "none: a backbone-only preset), `num_classes`, `task_config` (the task's constructor "
    "arguments), `class_names`, `depth_multiplier`, `min_depth`, `variant`, `license`, "
    "`source`... are optional")


def register_preset(name: str, source: str | os.PathLike, metadata: dict[str, Any] | None = None,
                    sha256: str | None = None, overwrite: bool = False) -> Path:
    """Records a weights file (or an http(s) URL of one) as preset ``name`` in the user cache.

    Args:
        name: the preset name (a word without slashes; not a shipped or published preset).
        source: a file or an http(s) URL of one, in any of the formats users have:

            - a by-layer-name HDF5 file (keras.applications' layout, ours:
              ``mobilenet_zoo.weights_io.save_by_name``), stored as it is;
            - a Keras 3 ``.weights.h5`` of the whole model (``model.save_weights()``):
              loaded into the model ``metadata`` describes, stored by layer name;
            - a ``.keras`` file (``model.save()``): the model says its task,
              ``num_classes``, ``alpha``, input size and task arguments; ``metadata``
              may add the rest (licence, source) and must not contradict it.

            A URL needs ``sha256`` and is downloaded, resumable, into the cache
            (``$MOBILENET_ZOO_MIRROR`` applies).
        metadata: ``weights/manifest.json`` keys: ``alpha`` and ``input_size`` (read from
            a ``.keras`` file), and for a whole task model ``task`` with ``num_classes``
            or ``task_config``. Optional for a ``.keras`` file.
        sha256: the file's expected sha256, 64 hexadecimal digits (required for a URL).
        overwrite: replace a preset already registered under ``name``; without it a
            second registration of a name is refused.

    Nothing is written until the preset loads: the file is converted (if needed),
    then built and loaded by the same ``from_preset`` users call
    (``MobileNetBackbone.from_preset`` for a backbone-only preset), and every
    weight must come out equal to the file's. The cache manifest is updated under
    a lock, merged with what other processes registered, and written atomically.

    Returns:
        The path of the stored weights file in the cache.

    Example:

    ```python
    model.save("dogs.keras")                     # or model.save_weights("dogs.weights.h5")
    presets.register_preset("my_dogs", "dogs.keras", {"license": "mine"})
    MobileNetClassifier.from_preset("my_dogs")   # the same predictions as `model`
    ```
    """
    if not isinstance(name, str):
        raise TypeError(f"`name` must be a str (a word of letters, digits, '.', '_' or '-'); got "
                        f"{type(name).__name__} {name!r}.")
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"`source` must be a file path (str or os.PathLike) or an http(s) URL; "
                        f"got {type(source).__name__} {source!r}.")
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise TypeError(f"{_METADATA_HELP}; got {type(metadata).__name__} {metadata!r}.")
    if sha256 is not None and not isinstance(sha256, str):
        raise TypeError(f"`sha256` must be a str of 64 hexadecimal digits (or None); got "
                        f"{type(sha256).__name__} {sha256!r}.")
    if not isinstance(overwrite, bool):
        raise TypeError(f"`overwrite` must be True or False; got {type(overwrite).__name__} "
                        f"{overwrite!r}.")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise ValueError(f"Preset name must be a word of letters, digits, '.', '_' or '-' "
                         f"(not starting with '.' or '-'), got {name!r}.")
    if name in shipped_names():
        raise ValueError(f"{name!r} is a shipped preset; choose another name.")
    if name in catalog.remote_presets() or name in WEIGHTS_ALIASES:
        raise ValueError(f"{name!r} is the name of a published preset or of a `weights` alias; "
                         "choose another name.")
    if sha256 is not None:
        sha256 = sha256.strip().lower()
        if not re.fullmatch(r"[0-9a-f]{64}", sha256):
            raise ValueError(f"`sha256` must be 64 hexadecimal digits, got {sha256!r}.")
    _check_metadata_keys(metadata)
    if not overwrite:
        _refuse_existing(name)
    source = os.fspath(source)
    if source.startswith(("http://", "https://")):
        if not sha256:
            raise ValueError("A URL source needs `sha256` (the expected hash of the file), so the "
                             "download can be verified.")
        downloaded = fetch_url(source, downloads_dir() / f"{name}.weights.h5", sha256,
                               f"Or download it yourself and register the file: "
                               f"register_preset({name!r}, 'FILE', metadata).")
        try:
            return _register_file(name, downloaded, metadata, overwrite, label=source)
        finally:
            downloaded.unlink(missing_ok=True)  # the cache keeps its own copy
    elif not os.path.isfile(source):
        raise ValueError(f"`source` must be an existing weights file or an http(s) URL; got {source!r}.")
    elif sha256 and sha256_of(source) != sha256:
        raise ValueError(f"{source} has sha256 {sha256_of(source)}, not the given {sha256}.")
    return _register_file(name, source, metadata, overwrite, label=source)


def _check_metadata_keys(metadata: dict[str, Any]) -> None:
    """Key names and the types of the keys that build the model."""
    for key in metadata:
        if not isinstance(key, str):
            raise TypeError(f"{_METADATA_HELP}; its keys are str, got {key!r}.")
        if key not in KNOWN_METADATA_KEYS and key not in _RESERVED_KEYS:
            close = difflib.get_close_matches(key, KNOWN_METADATA_KEYS, n=1, cutoff=0.8)
            if close:
                raise ValueError(f"`metadata` key {key!r} is not a preset key; did you mean "
                                 f"{close[0]!r}? Known keys: {list(KNOWN_METADATA_KEYS)}.")
    numbers = {"alpha": (int, float), "input_size": int, "num_classes": int,
               "depth_multiplier": int, "min_depth": int, "task": str, "variant": str,
               "task_config": dict}
    for key, kinds in numbers.items():
        value = metadata.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, kinds)):
            kind = {"alpha": "a number", "task": "a str (a task name)", "variant": "a str",
                    "task_config": "a dict of the task's constructor arguments"}.get(key, "an int")
            raise TypeError(f"`metadata[{key!r}]` must be {kind}; got {type(value).__name__} "
                            f"{value!r}.")


def _refuse_existing(name: str) -> None:
    """ValueError when the user cache already holds ``name`` (a broken manifest says so)."""
    entry = read_manifest(cache_dir()).get(name)
    if entry is None:
        return
    task = entry.get("task") if isinstance(entry, dict) else None
    file = entry.get("file") if isinstance(entry, dict) else None
    raise ValueError(
        f"Preset {name!r} is already registered ({'task ' + task if task else 'a backbone-only preset'}"
        f", file {cache_dir() / str(file)}); pass overwrite=True to replace it, or choose another "
        "name.")


def _weights_format(path: Path) -> str:
    """``"keras"`` (a .keras archive), ``"by_name"`` (keras.applications layout) or
    ``"keras_weights"`` (Keras 3 ``save_weights``), read from the content, not the name."""
    if zipfile.is_zipfile(path):
        return "keras"
    if h5py.is_hdf5(path):
        with h5py.File(path, "r") as f:
            if "layer_names" in f.attrs or ("model_weights" in f
                                            and "layer_names" in f["model_weights"].attrs):
                return "by_name"
            if "layers" in f or "vars" in f:
                return "keras_weights"
    raise ValueError(
        f"{path} is not a weights file mobilenet_zoo reads: give a by-layer-name .h5 "
        "(keras.applications layout, mobilenet_zoo.weights_io.save_by_name), a Keras "
        ".weights.h5 from model.save_weights(), or a .keras file from model.save().")


@contextlib.contextmanager
def _quiet_keras_loading() -> Iterator[None]:
    # Keras 3.15 warns "Skipping nested container '_operations_by_depth/...'" once per layer
    # while loading a functional model's own file (the containers hold no variables); the
    # weights are checked against the file afterwards, so the noise is dropped here.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Skipping nested container")
        yield


def _load_keras_file(path: Path, label: str) -> keras.Model:
    """The model of a ``.keras`` archive, its classes registered by name first."""
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (KeyError, ValueError, OSError) as err:
        raise ValueError(f"{label} is a zip archive but not a Keras .keras file (no readable "
                         f"config.json: {err}).") from err
    registered = str(config.get("registered_name") or config.get("class_name") or "")
    class_name = registered.split(">")[-1]
    if class_name in task_names():
        get_task(class_name)  # imports its module: the class and its pieces deserialise
    with tempfile.TemporaryDirectory(prefix="mobilenet_zoo-register-") as tmp:
        copy = Path(tmp) / "model.keras"  # Keras reads a .keras only under that suffix
        shutil.copyfile(path, copy)
        try:
            with _quiet_keras_loading():
                return keras.saving.load_model(copy, compile=False)
        except Exception as err:
            raise ValueError(f"Keras cannot load {label} ({class_name or 'unknown class'}): "
                             f"{_short(err)}") from err


def _short(err: BaseException, limit: int = 400) -> str:
    text = " ".join(str(err).split())
    return text if len(text) <= limit else text[:limit] + "..."


def _metadata_of_model(model: keras.Model, metadata: dict[str, Any], label: str) -> dict[str, Any]:
    """``metadata`` completed from a loaded model; a value that contradicts it is refused."""
    MobileNetBackbone = get_task("MobileNetBackbone")
    kind = type(model).__name__
    if isinstance(model, MobileNetBackbone):
        task, backbone = None, model
    elif kind in task_names() and get_task(kind) is type(model) and isinstance(
            getattr(model, "backbone", None), MobileNetBackbone):
        task, backbone = kind, model.backbone
    else:
        raise ValueError(
            f"{label} holds a {kind}, not a mobilenet_zoo task model or backbone "
            f"({', '.join(task_names())}); register its weights with its task's metadata, or "
            "register the task class with @mobilenet_zoo.hub.tasks.register_task().")
    height, width = tuple(backbone.inputs[0].shape[1:3])
    derived: dict[str, Any] = {
        "task": task,
        "alpha": backbone.alpha,
        "input_size": height if height == width and height is not None else None,
        "depth_multiplier": backbone.depth_multiplier,
        "min_depth": backbone.min_depth,
        "variant": backbone.variant,
        # atrous: a DeepLabV3's stride (8, 16) rebuilds with it, not with the default 32
        "output_stride": backbone.output_stride,
    }
    if task is not None:
        config = {k: v for k, v in model.get_config().items()
                  if k not in ("name", "trainable", "backbone", "preprocessor", "weights")}
        try:
            config = json.loads(json.dumps(config))
        except (TypeError, ValueError) as err:
            raise ValueError(f"{label}: the task's configuration is not JSON ({err}); register "
                             "its weights with explicit metadata instead.") from err
        derived["num_classes"] = config.get("num_classes")
        derived["task_config"] = config
    if derived["input_size"] is None:
        derived.pop("input_size")  # a dynamic or non-square input: the user's input_size
    if task is None and metadata.get("task") == "MobileNetBackbone":
        derived["task"] = "MobileNetBackbone"  # the same thing: a backbone-only preset
    contradictions = [
        f"{key}={metadata[key]!r} (the file: {value!r})" for key, value in derived.items()
        if key in metadata and key != "task_config" and metadata[key] != value]
    for key, value in (metadata.get("task_config") or {}).items():
        if key in derived.get("task_config", {}) and derived["task_config"][key] != value:
            contradictions.append(f"task_config[{key!r}]={value!r} (the file: "
                                  f"{derived['task_config'][key]!r})")
    if contradictions:
        raise ValueError(f"`metadata` contradicts the model in {label}: "
                         f"{'; '.join(contradictions)}. Leave those keys out: a .keras file "
                         "says them itself.")
    merged = {**metadata, **{k: v for k, v in derived.items() if k != "task" or v is not None}}
    if derived.get("task_config"):
        merged["task_config"] = {**derived["task_config"], **(metadata.get("task_config") or {})}
    return merged


def _architecture_filled(entry: dict[str, Any], model: keras.Model) -> dict[str, Any]:
    """The keys a converted model answers and the user left out (num_classes, min_depth...)."""
    backbone = getattr(model, "backbone", model)
    filled = dict(entry)
    for key in ("depth_multiplier", "min_depth", "variant"):
        if getattr(backbone, key, None) is not None:
            filled.setdefault(key, getattr(backbone, key))
    if entry.get("task") and getattr(model, "num_classes", None) is not None:
        filled.setdefault("num_classes", model.num_classes)
    return filled


def _completed(entry: dict[str, Any]) -> dict[str, Any]:
    """The task keys ``from_preset`` needs to rebuild the model the file was saved from."""
    entry = dict(entry)
    task = entry.get("task")
    if not task:
        return entry
    config = dict(entry.get("task_config") or {})
    if "num_classes" not in entry and "num_classes" in config:
        entry["num_classes"] = config["num_classes"]  # head_matches reads the top level
    if task in task_names() and task != "MobileNetBackbone" and "image_size" not in config:
        if "image_size" in inspect.signature(get_task(task).__init__).parameters:
            # A detector trained at input_size: its anchors follow the image size.
            config["image_size"] = [entry["input_size"]] * 2
            entry["task_config"] = config
    return entry


def _load_as_from_preset(name: str, entry: dict[str, Any], path: Path) -> keras.Model:
    """What ``from_preset(name)`` returns once ``entry`` and ``path`` are registered: the
    task's ``from_preset``, or ``MobileNetBackbone.from_preset`` for a backbone-only preset."""
    cls = get_task(entry["task"]) if entry.get("task") else get_task("MobileNetBackbone")
    with _staged(name, entry, path):
        return cls.from_preset(name)


def _check_loads_exactly(model: keras.Model, stored: dict[str, list[np.ndarray]], label: str,
                         reference: keras.Model | None = None) -> None:
    """Every weight ``from_preset`` set equals the file's; with a reference model (the
    model a .keras file holds), the outputs on one image are the same too."""
    differ = []
    for layer in weights_io.iter_weighted_layers(model):
        arrays = stored.get(layer.name)
        values = [keras.ops.convert_to_numpy(w) for w in layer.weights]
        if arrays is None or len(arrays) != len(values) or not all(
                np.shape(a) == np.shape(v) and np.array_equal(a, v) for a, v in zip(arrays, values)):
            differ.append(layer.name)
    if differ:
        raise ValueError(
            f"The metadata cannot be honoured by {label}: from_preset would leave layers "
            f"{differ[:8]}{'...' if len(differ) > 8 else ''} ({len(differ)} in all) different from "
            "the file. Check alpha, depth_multiplier, min_depth, variant, num_classes and "
            "task_config against the model that saved it.")
    if reference is None:
        return
    shape = [d if d is not None else 64 for d in reference.inputs[0].shape[1:]]
    images = np.random.default_rng(0).uniform(0, 255, (1, *shape)).astype("float32")
    ours = keras.tree.flatten(model(images, training=False))
    theirs = keras.tree.flatten(reference(images, training=False))
    anchors = [np.asarray(getattr(m, "anchors", np.zeros(0))) for m in (model, reference)]
    same = len(ours) == len(theirs) and all(
        np.shape(a) == np.shape(b) and np.allclose(keras.ops.convert_to_numpy(a),
                                                   keras.ops.convert_to_numpy(b), atol=1e-5)
        for a, b in zip(ours, theirs)) and np.array_equal(*anchors)
    if not same:
        raise ValueError(
            f"{label}: the preset built by from_preset does not give the saved model's outputs "
            "(a task argument the metadata cannot carry?); nothing was registered.")


def _register_file(name: str, source: str | os.PathLike, metadata: dict[str, Any],
                   overwrite: bool = False, label: str | None = None) -> Path:
    label = label or os.fspath(source)
    fmt = _weights_format(Path(source))
    entry = {k: v for k, v in metadata.items() if k not in _RESERVED_KEYS}
    reference = model = None
    if fmt == "keras":
        reference = model = _load_keras_file(Path(source), label)
        entry = _metadata_of_model(model, entry, label)
    missing = [k for k in METADATA_KEYS if k not in entry]
    if missing:
        raise ValueError(f"`metadata` needs {missing} to build the architecture "
                         f"({_METADATA_HELP}).")
    entry = _completed(entry)
    with tempfile.TemporaryDirectory(prefix="mobilenet_zoo-register-") as tmp:
        staged = Path(tmp) / f"{name}.weights.h5"
        try:
            if fmt == "keras_weights":
                model = build_from_metadata(entry)
                keras_file = Path(tmp) / "model.weights.h5"  # Keras wants the suffix
                shutil.copyfile(source, keras_file)
                with _quiet_keras_loading():
                    model.load_weights(keras_file)
                entry = _architecture_filled(entry, model)
        except Exception as err:
            raise ValueError(
                f"The metadata cannot be honoured by {label}: it is a Keras .weights.h5 "
                "(model.save_weights()), which loads only into the very architecture that "
                f"saved it, and the model {_describe(entry)} is not that one: {_short(err)} "
                "Give the task, num_classes, alpha, input_size and task_config of the saved "
                "model, or save it with model.save('model.keras') and register that file.") from err
        if model is None:
            shutil.copyfile(source, staged)  # a by-name file is stored as it is
        else:
            weights_io.save_by_name(model, staged, metadata={
                k: entry[k] for k in (*_ARCHITECTURE_KEYS, "task_config") if k in entry})
        digest = sha256_of(staged)
        try:
            loaded = _load_as_from_preset(name, dict(entry, file=staged.name, sha256=digest), staged)
        except (ValueError, TypeError) as err:
            raise ValueError(f"The metadata cannot be honoured by {label}: {err}") from err
        _check_loads_exactly(loaded, weights_io.read_by_name(staged), label, reference)
        with locked_cache() as directory:
            if not overwrite:
                _refuse_existing(name)  # registered by another process meanwhile
            target = directory / f"{name}.weights.h5"
            weights_io.atomic_write(target, lambda out: shutil.copyfile(staged, out))
            write_entry(name, dict(entry, file=target.name, sha256=digest))
    return target


def _describe(entry: dict[str, Any]) -> str:
    keys = ("task", "num_classes", "alpha", "input_size", "task_config")
    return "(" + ", ".join(f"{k}={entry[k]!r}" for k in keys if k in entry) + ")"
