"""COCO JSON detection layout (https://cocodataset.org/#format-data, "Object Detection").

One JSON file per split with ``images`` (``id``, ``file_name``, ``width``, ``height``),
``annotations`` (``id``, ``image_id``, ``category_id``, ``bbox`` = [x, y, width, height]
in pixels from the top-left corner, ``iscrowd``) and ``categories`` (``id``, ``name``).
Category ids need not be contiguous (COCO's own run 1..90 with gaps): classes are the
categories sorted by id, label ``i`` = the ``i``-th of them, and ``category_ids`` keeps
the ids for COCO evaluation (the TF OD API label map convention). ``file_name`` may hold
sub-folders; an image without annotations is a background image.

Folders found (the first that exists):

- ``ROOT/<split>/{annotations.json, labels.json, _annotations.coco.json}``, images in
  ``ROOT/<split>/images/`` or beside the JSON (``recipes/ssd_coco.py --data-dir``,
  Roboflow exports with ``train/ valid/ test/``);
- ``ROOT/annotations/instances_<split>*.json`` + ``ROOT/<split>2017/`` (COCO itself);
- ``ROOT/{labels.json, annotations.json, _annotations.coco.json}`` + ``ROOT/images/``
  (MediaPipe Model Maker's ``Dataset.from_coco_folder``): one split, hashed in two.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from mobilenet_zoo.data.layouts.records import (
    VAL_FRACTION,
    LabelledBox,
    LabelledImage,
    LabelledSet,
    Problem,
    hashed_split,
    split_names,
)

JSON_NAMES = ("annotations.json", "labels.json", "_annotations.coco.json")


def _images_beside(folder: Path) -> Path:
    return folder / "images" if (folder / "images").is_dir() else folder


def coco_files_in(folder: Path) -> tuple[Path, Path] | None:
    """(annotation file, image folder) when ``folder`` holds one of ``JSON_NAMES``."""
    for name in JSON_NAMES:
        if (folder / name).is_file():
            return folder / name, _images_beside(folder)
    return None


def find_coco_files(root: Path, split: str) -> tuple[Path, Path] | None:
    """(annotation file, image folder) of ``split`` under ``root``, or None."""
    for name in split_names(split):
        if (root / name).is_dir() and (found := coco_files_in(root / name)):
            return found
        for file in sorted((root / "annotations").glob(f"instances_{name}*.json")):
            stem = file.stem.removeprefix("instances_")
            for images in (root / stem, root / "images" / stem, root / "images", root):
                if images.is_dir():
                    return file, images
    return None


def parse_coco(
    root: str | os.PathLike,
    split: str = "train",
    annotation_file: str | os.PathLike | None = None,
    image_dir: str | os.PathLike | None = None,
    val_fraction: float = VAL_FRACTION,
) -> LabelledSet:
    """The ``split`` of the COCO-format data at ``root`` (a folder, or the JSON file itself).

    ``annotation_file`` / ``image_dir`` name the files directly. With no validation split
    in the data, ``train`` and ``val`` are made by hashing ``file_name`` (``notes`` says so).
    """
    root = Path(root)
    note = None
    if annotation_file is None and root.is_file():
        annotation_file, root = root, root.parent
    if annotation_file is not None:
        annotation_file = Path(annotation_file)
        image_dir = Path(image_dir) if image_dir else _images_beside(annotation_file.parent)
        hashed = False
    else:
        hashed = split in ("train", "val") and find_coco_files(root, "val") is None
        found = (find_coco_files(root, "train") or coco_files_in(root)) if hashed else find_coco_files(root, split)
        if found is None:
            raise FileNotFoundError(
                f"No COCO annotation file for split {split!r} under {root}: looked for "
                f"{split}/{{{', '.join(JSON_NAMES)}}}, annotations/instances_{split}*.json and "
                f"{{{', '.join(JSON_NAMES)}}} at the top. Pass the file itself "
                "(annotation_file=, or the .json as the data path).")
        annotation_file, found_images = found
        image_dir = Path(image_dir) if image_dir else found_images
    labelled = read_coco_json(annotation_file, image_dir, split)
    labelled.root = root
    if hashed:
        keep, note = hashed_split([img.key for img in labelled.images], split, val_fraction)
        labelled.images = [labelled.images[i] for i in keep]
        labelled.notes.append(note)
    return labelled


def read_coco_json(annotation_file: Path, image_dir: Path, split: str = "train") -> LabelledSet:
    """Every image and annotation of one COCO JSON file, problems listed, nothing dropped
    silently. A file that is not COCO JSON at all raises ``ValueError`` at once."""
    try:
        coco = json.loads(Path(annotation_file).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{annotation_file} is not a readable COCO JSON file: {err}") from err
    missing = [k for k in ("images", "annotations", "categories") if not isinstance(coco, dict) or k not in coco]
    if missing:
        raise ValueError(f"{annotation_file} has no {missing}: a COCO detection file needs 'images', "
                         "'annotations' and 'categories' (https://cocodataset.org/#format-data).")
    name = Path(annotation_file).name
    categories = sorted({int(c["id"]): str(c["name"]) for c in coco["categories"]}.items())
    label_of = {cid: i for i, (cid, _) in enumerate(categories)}
    problems: list[Problem] = []
    images: dict[int, LabelledImage] = {}
    for img in coco["images"]:
        where = f"{name} image id {img.get('id')} ({img.get('file_name')})"
        if img.get("id") in images:
            problems.append(Problem(where, f"duplicate image id {img['id']} (first: "
                                           f"{images[img['id']].where}); the later one is left out", "image"))
            continue
        if "id" not in img or "file_name" not in img:
            problems.append(Problem(where, "an image needs 'id' and 'file_name'", "image"))
            continue
        images[img["id"]] = LabelledImage(image_dir / img["file_name"], int(img["id"]), [], where,
                                          key=str(img["file_name"]))
    for index, ann in enumerate(coco["annotations"]):
        where = f"{name} annotation id {ann.get('id', f'#{index}')}"
        image = images.get(ann.get("image_id"))
        if image is None:
            problems.append(Problem(where, f"image_id {ann.get('image_id')!r} is not in the 'images' of {name}"))
            continue
        try:
            x, y, w, h = (float(v) for v in ann["bbox"])
        except (KeyError, TypeError, ValueError):
            problems.append(Problem(where, f"'bbox' must be [x, y, width, height], got {ann.get('bbox')!r}"))
            continue
        cid = ann.get("category_id")
        image.boxes.append(LabelledBox(
            (x, y, x + w, y + h), label_of.get(cid), f"category_id {cid}", where,
            is_crowd=bool(ann.get("iscrowd", 0))))
    return LabelledSet("coco", Path(annotation_file).parent, split, [n for _, n in categories],
                       [cid for cid, _ in categories], list(images.values()), problems=problems)
