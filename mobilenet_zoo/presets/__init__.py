"""Registry of pretrained weights (one place, timm-style).

Each entry of a ``manifest.json`` names a weights file and its metadata: task,
alpha, input size, classes, sha256, source, licence and published metric.
Files are checked against their sha256 before loading. Presets come from

1. the weights shipped inside the package (the repository's ``weights/``
   folder, installed as ``mobilenet_zoo/weights`` by the wheel), or
   ``$MOBILENET_ZOO_WEIGHTS`` instead when set;
2. a user cache (``$MOBILENET_ZOO_CACHE``, default ``~/.cache/mobilenet_zoo/presets``)
   where ``register_preset`` puts weights converted later.

``python -m mobilenet_zoo.presets`` prints the table.
"""

from __future__ import annotations

import hashlib
import json
import os
from functools import cache
from pathlib import Path
from typing import Any

import keras

from mobilenet_zoo import weights_io

ENV_WEIGHTS_DIR = "MOBILENET_ZOO_WEIGHTS"
ENV_CACHE_DIR = "MOBILENET_ZOO_CACHE"

# Preset names, in one place (recipes, docs and tests use these constants).
IMAGENET = "mobilenet_v1_1.0_224_imagenet"
FACE_SSD = "ssd_mobilenet_v1_face_512"
# What the recipes' ``--weights`` flag accepts besides a preset name or a file.
WEIGHTS_ALIASES: dict[str, str | None] = {"imagenet": IMAGENET, "scratch": None, "none": None}


def resolve_weights(value: str | None) -> str | None:
    """A ``--weights`` value -> a preset name, a file path or ``None`` (random init).

    ``"imagenet"`` is the shipped ImageNet preset; ``"scratch"`` / ``"none"`` mean
    random initialisation; anything else must be a preset name or an existing file.
    """
    if value is None or value in WEIGHTS_ALIASES:
        return WEIGHTS_ALIASES.get(value)
    if value in _registry() or os.path.isfile(value):
        return value
    raise ValueError(
        f"`weights` must be one of {sorted(WEIGHTS_ALIASES)}, a preset name "
        f"({list_presets() or 'none'}) or an existing file; got {value!r}."
    )


def weights_dir() -> Path:
    """``$MOBILENET_ZOO_WEIGHTS``, else the weights inside the installed package
    (``mobilenet_zoo/weights``), else the repository's ``weights/`` (a clone)."""
    env = os.environ.get(ENV_WEIGHTS_DIR)
    if env:
        return Path(env)
    package = Path(__file__).resolve().parent.parent  # mobilenet_zoo/
    packaged = package / "weights"
    if (packaged / "manifest.json").is_file():
        return packaged
    return package.parent / "weights"


def cache_dir() -> Path:
    """Where ``register_preset`` keeps presets converted by the user."""
    env = os.environ.get(ENV_CACHE_DIR)
    return Path(env) if env else Path.home() / ".cache" / "mobilenet_zoo" / "presets"


@cache
def _manifest(directory: str) -> dict[str, dict[str, Any]]:
    path = Path(directory) / "manifest.json"
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); restore or delete it.") from err


def _registry() -> dict[str, dict[str, Any]]:
    """Every preset with the folder holding its file (shipped ones win over the cache)."""
    merged = {}
    for directory in (cache_dir(), weights_dir()):
        for name, meta in _manifest(str(directory)).items():
            merged[name] = dict(meta, directory=str(directory))
    return merged


def list_presets() -> list[str]:
    """Names of the available presets (shipped and user-registered)."""
    return sorted(_registry())


def get_preset(name: str) -> dict[str, Any]:
    """Metadata of a preset; ValueError listing the presets for an unknown name."""
    presets = _registry()
    if name not in presets:
        raise ValueError(
            f"Unknown preset {name!r}. Available presets: {sorted(presets) or 'none'} "
            f"(from {weights_dir() / 'manifest.json'} and {cache_dir() / 'manifest.json'})."
        )
    return dict(presets[name], name=name)


def register_preset(name: str, weights_file: str | os.PathLike, metadata: dict[str, Any]) -> Path:
    """Copies ``weights_file`` into the user cache and records it as preset ``name``.

    ``metadata`` needs ``alpha`` and ``input_size`` (and ``task`` / ``task_config``
    / ``num_classes`` for a whole task model); the sha256 is computed here. Both
    the file and the manifest are written atomically.
    """
    import shutil

    if not name or any(c in name for c in "/\\ "):
        raise ValueError(f"Preset name must be a non-empty word without slashes, got {name!r}.")
    if name in _manifest(str(weights_dir())):
        raise ValueError(f"{name!r} is a shipped preset; choose another name.")
    missing = [k for k in ("alpha", "input_size") if k not in metadata]
    if missing:
        raise ValueError(f"`metadata` needs {missing} to build the architecture.")
    directory = cache_dir()
    target = directory / f"{name}.weights.h5"
    weights_io.atomic_write(target, lambda tmp: shutil.copyfile(weights_file, tmp))
    manifest = dict(_manifest(str(directory)))
    manifest[name] = dict(metadata, file=target.name, sha256=sha256_of(target))
    payload = json.dumps(manifest, indent=2, sort_keys=True)
    weights_io.atomic_write(directory / "manifest.json",
                            lambda tmp: Path(tmp).write_text(payload))
    _manifest.cache_clear()
    return target


def sha256_of(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def preset_path(name: str) -> Path:
    """Path of a preset's file after checking that it exists and its sha256."""
    meta = get_preset(name)
    path = Path(meta["directory"]) / meta["file"]
    if not path.is_file():
        raise ValueError(f"Preset {name!r}: weights file {path} is missing.")
    found = sha256_of(path)
    if found != meta["sha256"]:
        raise ValueError(
            f"Preset {name!r}: sha256 of {path} is {found}, the manifest expects "
            f"{meta['sha256']}. The file is corrupt or was replaced; restore it "
            "(git checkout weights/) or convert it again."
        )
    return path


def _architecture_of(model: keras.Model) -> dict[str, Any]:
    backbone = getattr(model, "backbone", model)
    return {
        "alpha": getattr(backbone, "alpha", None),
        "depth_multiplier": getattr(backbone, "depth_multiplier", 1),
        "variant": getattr(backbone, "variant", "separable"),
    }


def head_matches(model: keras.Model, meta: dict[str, Any]) -> bool:
    """True when ``model``'s head has the preset's number of classes."""
    return getattr(model, "num_classes", None) == meta.get("num_classes")


def _resolve(weights: str | os.PathLike) -> tuple[Path, dict[str, Any]]:
    weights = os.fspath(weights)
    if weights in _registry():
        meta = get_preset(weights)
        path = preset_path(weights)
    elif os.path.isfile(weights):
        path = Path(weights)
        if not weights_io.is_by_name_file(path):
            return path, {}  # a Keras save_weights file (or garbage): load_into says which
        meta = weights_io.read_metadata(path)
        for name, entry in _registry().items():  # a copy of a preset's file: check it too
            if entry["file"] == path.name and sha256_of(path) != entry["sha256"]:
                raise ValueError(
                    f"{path} has the file name of preset {name!r} but not its sha256 "
                    f"({entry['sha256'][:12]}...): the file is corrupt or another model."
                )
    else:
        raise ValueError(
            f"`weights` must be None, a preset name or an existing file; got "
            f"{weights!r}. Available presets: {list_presets() or 'none'}."
        )
    return path, meta


def load_into(model: keras.Model, weights: str | os.PathLike,
              skip_mismatched_head: bool = False) -> weights_io.LoadReport:
    """Loads a preset name or a weights file into a backbone or task model.

    A backbone takes the backbone layers (a head in the file is ignored); a
    task model must have the file's number of classes, unless
    ``skip_mismatched_head``: then every layer whose shapes match loads and
    the others (the class head) keep their initialisation (fine-tuning from a
    detection preset). The report lists what was skipped in ``missing``.
    """
    path, meta = _resolve(weights)
    if not weights_io.is_by_name_file(path):
        try:  # Keras' own model.save_weights() format holds the same layers
            model.load_weights(path)
        except Exception as err:
            raise ValueError(
                f"{path} is neither a by-layer-name HDF5 file (keras.applications layout, our "
                f"converters) nor a Keras .weights.h5 of this architecture: {err}"
            ) from err
        return weights_io.LoadReport(loaded=[la.name for la in weights_io.iter_weighted_layers(model)])
    arch = _architecture_of(model)
    for key in ("alpha", "depth_multiplier", "variant"):
        if key in meta and arch[key] is not None and meta[key] != arch[key]:
            raise ValueError(
                f"Weights {weights!r} are for {key}={meta[key]!r}; the model has "
                f"{key}={arch[key]!r}. Build the model with {key}={meta[key]!r} "
                "(any input size works)."
            )
    num_classes = getattr(model, "num_classes", None)
    if skip_mismatched_head:
        return weights_io.assign_matching(model, weights_io.read_by_name(path), source=str(weights))
    if num_classes is not None and "num_classes" in meta and num_classes != meta["num_classes"]:
        raise ValueError(
            f"Weights {weights!r} have a {meta['num_classes']}-class head; the "
            f"classifier has num_classes={num_classes}. For transfer learning load "
            "them into the backbone: MobileNetClassifier(MobileNetBackbone("
            f"weights={weights!r}), num_classes={num_classes})."
        )
    return weights_io.load_by_name(model, path)


def describe() -> list[dict[str, Any]]:
    """One row per preset: task, input size, classes, source, licence, metric."""
    rows = []
    for name in list_presets():
        meta = get_preset(name)
        rows.append({
            "name": name,
            "task": meta.get("task", "backbone"),
            "input_size": meta.get("input_size"),
            "classes": meta.get("num_classes"),
            "class_names": meta.get("class_names"),
            "source": meta.get("source", ""),
            "license": meta.get("license", ""),
            "metric": meta.get("published_metric") or (
                f"top-1 {meta['published_top1']}%" if "published_top1" in meta else ""),
            "location": "cache" if Path(meta["directory"]) == cache_dir() else "package",
        })
    return rows


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m mobilenet_zoo.presets",
                                     description="List the pretrained presets.")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    rows = describe()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        print(f"{r['name']}\n  task: {r['task']}, input {r['input_size']}x{r['input_size']}, "
              f"classes: {r['classes']}{' ' + str(r['class_names']) if r['class_names'] else ''}"
              f"\n  metric: {r['metric'] or 'none published'}\n  licence: {r['license']}"
              f"\n  source: {r['source']}\n  ({r['location']})")
    return 0

