"""Registry of pretrained weights shipped in ``weights/`` (one place, timm-style).

Each entry of ``weights/manifest.json`` names a file and its metadata: alpha,
input size, classes, sha256, source, licence and published accuracy. Files are
checked against their sha256 before loading.
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

# Preset names, in one place (recipes, docs and tests use these constants).
IMAGENET = "mobilenet_v1_1.0_224_imagenet"
# What the recipes' ``--weights`` flag accepts besides a preset name or a file.
WEIGHTS_ALIASES: dict[str, str | None] = {"imagenet": IMAGENET, "scratch": None, "none": None}


def resolve_weights(value: str | None) -> str | None:
    """A ``--weights`` value -> a preset name, a file path or ``None`` (random init).

    ``"imagenet"`` is the shipped ImageNet preset; ``"scratch"`` / ``"none"`` mean
    random initialisation; anything else must be a preset name or an existing file.
    """
    if value is None or value in WEIGHTS_ALIASES:
        return WEIGHTS_ALIASES.get(value)
    if value in _manifest(str(weights_dir())) or os.path.isfile(value):
        return value
    raise ValueError(
        f"`weights` must be one of {sorted(WEIGHTS_ALIASES)}, a preset name "
        f"({list_presets() or 'none'}) or an existing file; got {value!r}."
    )


def weights_dir() -> Path:
    """``$MOBILENET_ZOO_WEIGHTS`` or the repository's ``weights/`` folder."""
    env = os.environ.get(ENV_WEIGHTS_DIR)
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "weights"


@cache
def _manifest(directory: str) -> dict[str, dict[str, Any]]:
    path = Path(directory) / "manifest.json"
    if not path.is_file():
        return {}
    return json.loads(path.read_text())


def list_presets() -> list[str]:
    """Names of the presets available in the weights directory."""
    return sorted(_manifest(str(weights_dir())))


def get_preset(name: str) -> dict[str, Any]:
    """Metadata of a preset; ValueError listing the presets for an unknown name."""
    presets = _manifest(str(weights_dir()))
    if name not in presets:
        raise ValueError(
            f"Unknown preset {name!r}. Available presets: {sorted(presets) or 'none'} "
            f"(from {weights_dir() / 'manifest.json'})."
        )
    return dict(presets[name], name=name)


def sha256_of(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def preset_path(name: str) -> Path:
    """Path of a preset's file after checking that it exists and its sha256."""
    meta = get_preset(name)
    path = weights_dir() / meta["file"]
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


def load_into(model: keras.Model, weights: str | os.PathLike) -> weights_io.LoadReport:
    """Loads a preset name or a weights file into a backbone or classifier.

    A backbone takes the backbone layers (the classifier head in the file is
    ignored); a classifier must have the file's number of classes.
    """
    weights = os.fspath(weights)
    if weights in _manifest(str(weights_dir())):
        meta = get_preset(weights)
        path = preset_path(weights)
    elif os.path.isfile(weights):
        path = Path(weights)
        meta = weights_io.read_metadata(path)
    else:
        raise ValueError(
            f"`weights` must be None, a preset name or an existing file; got "
            f"{weights!r}. Available presets: {list_presets() or 'none'}."
        )
    arch = _architecture_of(model)
    for key in ("alpha", "depth_multiplier", "variant"):
        if key in meta and arch[key] is not None and meta[key] != arch[key]:
            raise ValueError(
                f"Weights {weights!r} are for {key}={meta[key]!r}; the model has "
                f"{key}={arch[key]!r}. Build the model with {key}={meta[key]!r} "
                "(any input size works)."
            )
    num_classes = getattr(model, "num_classes", None)
    if num_classes is not None and "num_classes" in meta and num_classes != meta["num_classes"]:
        raise ValueError(
            f"Weights {weights!r} have a {meta['num_classes']}-class head; the "
            f"classifier has num_classes={num_classes}. For transfer learning load "
            "them into the backbone: MobileNetClassifier(MobileNetBackbone("
            f"weights={weights!r}), num_classes={num_classes})."
        )
    return weights_io.load_by_name(model, path)
