"""Pascal VOC detection layout (the VOC devkit, "VOC2012 Development Kit" s.2 and s.4).

``ROOT/Annotations/<id>.xml`` (one ``<object>`` per box: ``<name>``, ``<difficult>``,
``<bndbox>`` with ``xmin ymin xmax ymax``), ``ROOT/JPEGImages/<id>.jpg`` and the splits
``ROOT/ImageSets/Main/{train,val,test}.txt`` (one id per line). LabelImg's flat folder
(each ``.xml`` beside its image) is read too.

Coordinates: the devkit numbers pixels from 1 and a box covers the pixels ``xmin..xmax``
inclusive (``VOCevaldet.m``: ``iw = bi(3) - bi(1) + 1``), so in 0-based pixel edges (COCO's
convention) the box is ``[xmin - 1, xmax]``: py-faster-rcnn's ``pascal_voc.py`` takes
``x1 = xmin - 1, x2 = xmax - 1`` with widths ``x2 - x1 + 1``, the same box. TFDS ``voc``
and the TF OD API's ``create_pascal_tf_record.py`` divide the raw values by the size,
which shifts ``xmin`` by one pixel.

``difficult`` objects are kept, flagged ``difficult`` and marked crowd: training drops them
(``detection_pipeline(drop_crowd_in_training=True)``) and evaluation ignores detections on
them instead of counting misses (COCO's ``iscrowd`` rule; the devkit ignores difficult
objects the same way), as ``data.detection.tfds_voc`` does.

Classes: ``class_names=``, else ``ROOT/labels.txt`` (or ``classes.txt``, one name a line),
else the names found in every annotation file, sorted (for VOC's own 20 classes this is
the devkit's order).
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
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
from mobilenet_zoo.images import IMAGE_SUFFIXES

CLASS_FILES = ("labels.txt", "classes.txt")


def voc_folders(root: Path) -> tuple[Path, Path] | None:
    """(annotation folder, image folder) of a VOC layout at ``root`` (or its one sub-folder
    such as ``VOCdevkit/VOC2007``), or None."""
    candidates = [root] + sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    for folder in candidates:
        if (folder / "Annotations").is_dir():
            images = folder / "JPEGImages"
            return folder / "Annotations", images if images.is_dir() else folder / "images"
    if root.is_dir() and any(root.glob("*.xml")):
        return root, root  # LabelImg: each .xml beside its image
    return None


def _read_list(path: Path) -> list[str]:
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


def read_class_file(folder: Path) -> list[str] | None:
    """Class names from ``labels.txt`` / ``classes.txt`` in ``folder`` (one per line)."""
    for name in CLASS_FILES:
        if (folder / name).is_file():
            text = (folder / name).read_text(encoding="utf-8-sig")  # a BOM is not part of a name
            return [line.strip() for line in text.splitlines() if line.strip()]
    return None


def parse_voc(
    root: str | os.PathLike,
    split: str = "train",
    class_names: list[str] | None = None,
    val_fraction: float = VAL_FRACTION,
) -> LabelledSet:
    """The ``split`` of the Pascal VOC data at ``root``; see the module docstring."""
    root = Path(root)
    found = voc_folders(root)
    if found is None:
        raise FileNotFoundError(f"No Pascal VOC layout at {root}: expected Annotations/*.xml and "
                                "JPEGImages/ (VOC devkit), or .xml files beside their images (LabelImg).")
    annotations, image_dir = found
    base = annotations.parent if annotations != root else root
    stems = sorted(p.stem for p in annotations.glob("*.xml"))
    ids = {stem: i for i, stem in enumerate(stems)}
    sets = base / "ImageSets" / "Main"
    lists = {s: next((sets / f"{n}.txt" for n in split_names(s) if (sets / f"{n}.txt").is_file()), None)
             for s in ("train", "val", split)}
    notes: list[str] = []
    if split in ("train", "val") and lists["val"] is None:
        pool = _read_list(lists["train"]) if lists["train"] else stems
        keep, note = hashed_split(pool, split, val_fraction)
        chosen = [pool[i] for i in keep]
        notes.append(note)
    elif lists[split] is not None:
        chosen = _read_list(lists[split])
    else:
        raise FileNotFoundError(f"No {sets}/{split}.txt: the VOC layout at {root} has no split {split!r}.")
    names = class_names or read_class_file(base)
    if names is None:
        names = sorted({n for stem in stems for n in _object_names(annotations / f"{stem}.xml")})
        notes.append(f"classes: the {len(names)} object names found in {annotations.name}/, sorted "
                     f"({', '.join(names[:20])}{', ...' if len(names) > 20 else ''})")
    label_of = {n: i for i, n in enumerate(names)}
    problems: list[Problem] = []
    images = []
    for stem in chosen:
        xml_file = annotations / f"{stem}.xml"
        where = f"{annotations.name}/{stem}.xml"
        try:
            tree = ET.parse(xml_file).getroot()
        except (OSError, ET.ParseError) as err:
            problems.append(Problem(where, f"not a readable VOC annotation ({err})", "image"))
            continue
        image = LabelledImage(_image_path(image_dir, stem, tree.findtext("filename")),
                              ids.get(stem, len(ids)), [], where, key=stem)
        for k, obj in enumerate(tree.iter("object"), 1):
            box = _object_box(obj, label_of, f"{where} object {k}")
            if isinstance(box, Problem):
                problems.append(box)
            else:
                image.boxes.append(box)
        images.append(image)
    return LabelledSet("voc", root, split, list(names), list(range(1, len(names) + 1)), images,
                       notes, problems)


def _object_names(xml_file: Path) -> list[str]:
    try:
        return [(o.findtext("name") or "").strip() for o in ET.parse(xml_file).getroot().iter("object")]
    except (OSError, ET.ParseError):
        return []  # reported when the file is read for its split


def _image_path(image_dir: Path, stem: str, filename: str | None) -> Path:
    if filename and (image_dir / filename).is_file():
        return image_dir / filename
    for suffix in IMAGE_SUFFIXES + tuple(s.upper() for s in IMAGE_SUFFIXES):
        if (image_dir / f"{stem}{suffix}").is_file():
            return image_dir / f"{stem}{suffix}"
    return image_dir / (filename or f"{stem}.jpg")  # missing: checks.check_labels names it


def _object_box(obj: ET.Element, label_of: dict[str, int], where: str) -> LabelledBox | Problem:
    name = (obj.findtext("name") or "").strip()
    box = obj.find("bndbox")
    try:
        xmin, ymin, xmax, ymax = (float(box.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
    except (AttributeError, TypeError, ValueError):
        return Problem(where, "needs <bndbox> with numeric <xmin> <ymin> <xmax> <ymax>")
    difficult = (obj.findtext("difficult") or "0").strip() in ("1", "true")
    # 1-based inclusive pixels -> 0-based pixel edges (module docstring).
    return LabelledBox((xmin - 1, ymin - 1, xmax, ymax), label_of.get(name), f"name {name!r}", where,
                       is_crowd=difficult, difficult=difficult)
