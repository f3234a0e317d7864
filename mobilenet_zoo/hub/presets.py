"""Presets as data: their names, metadata, listing and the ``weights`` values
the models and the recipes accept. Imports no model, Keras or TensorFlow, so a
listing answers at once; loading a preset into a model is ``mobilenet_zoo.presets``.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

from mobilenet_zoo.hub import catalog
from mobilenet_zoo.hub.registry import all_presets, cache_dir, weights_dir

# Preset names, in one place (recipes, docs and tests use these constants).
IMAGENET = "mobilenet_v1_1.0_224_imagenet"
FACE_SSD = "ssd_mobilenet_v1_face_512"
COCO_SSD = "ssd_mobilenet_v1_coco"
# What the ``weights`` arguments and the recipes' ``--weights`` flag accept besides a
# preset name or a file: "imagenet" follows the model's alpha and input size.
WEIGHTS_ALIASES: dict[str, str | None] = {"imagenet": "imagenet", "scratch": None, "none": None}
METADATA_KEYS = ("alpha", "input_size")
# What each built-in task head is, for the messages of ``check_preset_fits``.
TASK_KINDS: dict[str, str] = {
    "MobileNetClassifier": "a classifier",
    "SSD": "a detector",
    "FasterRCNN": "a detector",
    "DeepLabV3": "a segmenter",
}
# Presets of these tasks (and backbone-only presets) initialise the backbone of any task:
# an ImageNet classifier's feature extractor is what the TF OD API and DeepLab start from.
BACKBONE_SOURCE_TASKS = (None, "MobileNetBackbone", "MobileNetClassifier")


def resolve_weights(value: str | None) -> str | None:
    """A ``--weights`` value -> ``"imagenet"``, a preset name, a file path or ``None``.

    ``"imagenet"`` is the published ImageNet preset of the model's alpha and size
    (``imagenet_preset``); ``"scratch"`` / ``"none"`` mean random initialisation;
    anything else must be a preset name or an existing file.
    """
    if value is None or value in WEIGHTS_ALIASES:
        return WEIGHTS_ALIASES.get(value)
    if value in all_presets() or os.path.isfile(value):
        return value
    raise ValueError(
        f"`weights` must be one of {sorted(WEIGHTS_ALIASES)}, a preset name "
        f"({list_presets() or 'none'}) or an existing file; got {value!r}."
    )


def imagenet_preset(alpha: float, size: int | None = None, warn: bool = True) -> str:
    """The ImageNet preset of ``alpha`` at ``size``, as keras.applications picks it.

    A size that was never published (or ``None``: any size) takes the 224 weights,
    with a warning naming the size used unless ``warn=False`` (detectors and
    segmenters start from the 224 weights, as the TF OD API does). An alpha that
    was never published is a ValueError listing the published ones.
    """
    if float(alpha) not in catalog.ALPHAS:
        raise ValueError(
            f"No ImageNet weights are published for alpha={alpha}; the published alphas are "
            f"{list(catalog.ALPHAS)} (TF-slim, keras.applications). Use weights=None to train "
            "from scratch, or one of those alphas.")
    if size not in catalog.SIZES:
        if warn:
            what = f"input size {size}" if size else "a dynamic or non-square input"
            warnings.warn(
                f"No ImageNet weights are published for {what}; loading the "
                f"{catalog.imagenet_name(alpha, 224)} weights (size 224). Published sizes: "
                f"{list(catalog.SIZES)}.", UserWarning, stacklevel=3)
        size = 224
    return catalog.imagenet_name(float(alpha), int(size))


def backbone_weights(weights: str | None, alpha: float) -> str | None:
    """A task builder's ``weights``: ``"imagenet"`` becomes the 224 ImageNet preset of
    ``alpha`` (detectors and segmenters start from the 224 classifier, as the TF OD
    API's configs do, whatever their own input size); anything else is unchanged."""
    return imagenet_preset(alpha, 224) if weights == "imagenet" else weights


def list_presets() -> list[str]:
    """Names of every preset: shipped, cached and remote (downloaded on first use)."""
    return sorted(all_presets())


def get_preset(name: str) -> dict[str, Any]:
    """Metadata of a preset; ValueError listing the presets for an unknown name."""
    presets = all_presets()
    if name not in presets:
        raise ValueError(
            f"Unknown preset {name!r}. Available presets: {sorted(presets) or 'none'} "
            f"(from {weights_dir() / 'manifest.json'}, {cache_dir() / 'manifest.json'} and the "
            "published family)."
        )
    return dict(presets[name], name=name)


def describe() -> list[dict[str, Any]]:
    """One row per preset: where it is, its source URL and hash, size, licence, metric."""
    rows = []
    for name in list_presets():
        meta = get_preset(name)
        source = (meta.get("sources") or [{}])[0]
        path = Path(meta["directory"]) / meta["file"] if "directory" in meta else None
        rows.append({
            "name": name,
            "task": meta.get("task", "backbone"),
            "location": meta["location"],
            "alpha": meta.get("alpha"),
            "input_size": meta.get("input_size"),
            "classes": meta.get("num_classes"),
            "class_names": meta.get("class_names") if meta.get("labels") != "coco" else "COCO",
            "url": meta.get("source_url") or source.get("url"),
            "sha256": meta.get("sha256") if path else source.get("sha256"),
            "size_bytes": path.stat().st_size if path and path.is_file() else None,
            "source": meta.get("source", ""),
            "license": meta.get("license", ""),
            "metric": meta.get("published_metric") or (
                f"top-1 {meta['published_top1']}% / top-5 {meta['published_top5']}% (TF-slim)"
                if "published_top1" in meta else ""),
        })
    return rows




def article(word: str) -> str:
    """``"an"`` before a vowel sound (``an SSD``), else ``"a"``."""
    vowel = word[:1].lower() in "aeiou" or (word[:2].isupper() and word[:1] in "FHLMNRSX")
    return "an" if vowel else "a"


def check_preset_fits(meta: dict[str, Any], task: str | type, whole: bool = False) -> str:
    """How a preset goes into a model of ``task``: ``"whole"`` or ``"backbone"``, else ValueError.

    The rule every entry point shares (``Task.from_preset``, the CLIs), as data: it imports
    no Keras, so a command can check its flags before building anything.

    - A preset of the task itself loads whole (another ``num_classes``: every layer but
      the class head).
    - A classifier preset (the ``mobilenet_v1_*_imagenet`` family, any preset whose task
      is ``MobileNetClassifier``) or a backbone-only preset initialises the backbone of
      any task (transfer learning, as the TF OD API starts from the ImageNet checkpoint).
    - A preset of another task head (an SSD preset for a classifier) is refused: its head
      cannot serve this task, and a silently random head gives confident nonsense.
    - ``MobileNetBackbone`` takes the backbone of any preset.

    Args:
        meta: the preset's metadata (``get_preset(name)``: ``name`` and ``task``).
        task: the model class or its registered name (``"SSD"``). A class whose base
            class is the preset's task (a subclass of ``SSD``) takes its backbone.
        whole: the caller needs the preset's own head (``classify``, ``detect``,
            ``export`` of a preset): only ``"whole"`` is accepted.
    """
    if not isinstance(meta, dict):
        raise TypeError(f"`meta` must be a preset's metadata dict (get_preset(name)); got {meta!r}.")
    if isinstance(task, type):
        target, lineage = task.__name__, {c.__name__ for c in task.__mro__}
    elif isinstance(task, str) and task:
        target, lineage = task, {task}
    else:
        raise TypeError(f"`task` must be a model class or its name (e.g. 'SSD'); got {task!r}.")
    name = meta.get("name", "this preset")
    theirs = meta.get("task") or None
    if theirs == "MobileNetBackbone":
        theirs = None
    if target == "MobileNetBackbone":
        return "backbone"
    if theirs == target or (theirs is not None and theirs in lineage):
        return "whole"  # its own task, or a subclass of it (an SSD subclass and an SSD preset)
    if theirs is None:
        what = f"{name} is a backbone-only preset (features, no task head)"
    else:
        kind = TASK_KINDS.get(theirs, f"{article(theirs)} {theirs} model")
        what = f"{name} is {article(theirs)} {theirs} preset ({kind})"
    if whole:
        own = sorted(n for n, m in all_presets().items() if m.get("task") == target)
        raise ValueError(
            f"{what}; {target} needs a preset of its own task with its trained head "
            f"({', '.join(own) or f'none is installed; register one with task {target!r}'}). "
            f"To train a new head on its features: {target}.from_preset({name!r}, num_classes=N), "
            "then fit.")
    if theirs in BACKBONE_SOURCE_TASKS or theirs in lineage:
        return "backbone"
    raise ValueError(
        f"{what}; {target} cannot use its head. Use {theirs}.from_preset({name!r}), or "
        f"MobileNetBackbone.from_preset({name!r}) to reuse its backbone.")
