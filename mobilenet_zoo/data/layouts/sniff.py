"""Which layout a data folder is in: detected from its files, or forced with ``format=``
(``--format``). An unclear folder is an error that lists what was found and what each
allowed layout looks like."""

from __future__ import annotations

import os
from pathlib import Path

from mobilenet_zoo.data.layouts.coco import coco_files_in, find_coco_files
from mobilenet_zoo.data.layouts.masks import mask_folders
from mobilenet_zoo.data.layouts.records import (
    CLASSIFICATION_FORMATS,
    DETECTION_FORMATS,
    FORMATS,
    SEGMENTATION_FORMATS,
)
from mobilenet_zoo.data.layouts.voc import voc_folders
from mobilenet_zoo.data.layouts.yolo import find_yaml
from mobilenet_zoo.images import IMAGE_SUFFIXES

TASK_FORMATS = {"detection": DETECTION_FORMATS, "classification": CLASSIFICATION_FORMATS,
                "segmentation": SEGMENTATION_FORMATS, None: FORMATS}
LOOKS_LIKE = {
    "coco": "COCO JSON: train/annotations.json (or labels.json, _annotations.coco.json) + images, "
            "or annotations/instances_train*.json",
    "voc": "Pascal VOC: Annotations/*.xml + JPEGImages/ (+ ImageSets/Main/train.txt)",
    "yolo": "YOLO: data.yaml (path, train, val, names) + images/<split>/ + labels/<split>/*.txt",
    "folders": "class folders: <class name>/<image> (or train/<class>/ and val/<class>/)",
    "masks": "images + PNG masks: JPEGImages/ + SegmentationClass/, or images/ + masks/",
}
_NOT_CLASSES = {"images", "labels", "masks", "annotations", "jpegimages", "segmentationclass", "imagesets"}


def _class_folders(root: Path) -> bool:
    subs = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return bool(subs) and all(
        p.name.lower() not in _NOT_CLASSES
        and any(f.suffix.lower() in IMAGE_SUFFIXES for f in p.iterdir() if f.is_file()) for p in subs)


def found_formats(root: str | os.PathLike) -> list[str]:
    """Every layout whose files are at ``root``, in ``FORMATS`` order."""
    root = Path(root)
    if root.is_file():
        return ["coco"] if root.suffix == ".json" else ["yolo"] if find_yaml(root) else []
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such data folder.")
    found = {
        "coco": bool(find_coco_files(root, "train") or find_coco_files(root, "val") or coco_files_in(root)),
        "voc": voc_folders(root) is not None,
        "yolo": find_yaml(root) is not None,
        "folders": _class_folders(root) or any(
            (root / n).is_dir() and _class_folders(root / n) for n in ("train", "val")),
        "masks": bool(mask_folders(root, "train") or mask_folders(root, "val")),
    }
    return [f for f in FORMATS if found[f]]


def resolve_format(root: str | os.PathLike, format: str | None = None, task: str | None = "detection") -> str:
    """The layout of ``root`` for ``task`` ("detection", "classification", "segmentation"):
    ``format`` when given (checked against the task's layouts), else the one found."""
    if task not in TASK_FORMATS:
        raise ValueError(f"task {task!r}: expected one of {sorted(k for k in TASK_FORMATS if k)}.")
    allowed = TASK_FORMATS[task]
    if format is not None:
        if format not in allowed:
            raise ValueError(f"format {format!r} is not a {task or 'known'} layout; allowed: "
                             f"{', '.join(allowed)} (format= / --format).")
        return format
    found = [f for f in found_formats(root) if f in allowed]
    if len(found) == 1:
        return found[0]
    expected = "\n".join(f"  {f}: {LOOKS_LIKE[f]}" for f in allowed)
    if found:
        raise ValueError(f"{root} holds more than one {task or ''} layout ({', '.join(found)}); "
                         f"choose one with format= (--format {'|'.join(found)}).")
    entries = sorted(p.name + ("/" if p.is_dir() else "") for p in Path(root).iterdir())
    shown = ", ".join(entries[:20]) + (", ..." if len(entries) > 20 else "") or "nothing"
    raise ValueError(f"Cannot tell the {task or ''} layout of {root}: it holds {shown}. The layouts "
                     f"read are:\n{expected}\nArrange the files so, or force one with format= "
                     f"(--format {'|'.join(allowed)}).")
