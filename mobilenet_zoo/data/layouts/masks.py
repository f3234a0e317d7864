"""Segmentation layout: images + PNG masks of class indices, 255 = ignore (VOC devkit s.2.2:
``SegmentationClass`` palette PNGs, "the value 255 marks the border / difficult pixels").

Folders found (the first that exists):

- ``ROOT/JPEGImages`` + ``ROOT/SegmentationClass`` (+ ``ROOT/ImageSets/Segmentation/{split}.txt``);
- ``ROOT/images/<split>`` + ``ROOT/masks/<split>``, or ``ROOT/<split>/images`` + ``ROOT/<split>/masks``;
- ``ROOT/images`` + ``ROOT/masks`` (one split, hashed in two).

A mask is ``<image stem>.png``, one channel: a palette PNG (its indices are the classes,
not its colours) or a grayscale PNG. Classes: ``ROOT/labels.txt`` / ``classes.txt`` (one name
a line, background first); else the reader names them (VOC's 21 for ``SegmentationClass``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from mobilenet_zoo.data.constants import IGNORE_LABEL
from mobilenet_zoo.data.layouts.checks import LabelError
from mobilenet_zoo.data.layouts.records import VAL_FRACTION, Problem, hashed_split, split_names
from mobilenet_zoo.data.layouts.voc import read_class_file
from mobilenet_zoo.images import IMAGE_SUFFIXES


@dataclass
class MaskSet:
    """A segmentation split: image and mask files, class names (None: not given, the reader
    names ``num_classes`` of them), whether the layout is VOC's, notes and problems."""

    root: Path
    split: str
    images: list[Path]
    masks: list[Path]
    class_names: list[str] | None
    num_classes: int
    voc: bool
    notes: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def mask_folders(root: Path, split: str) -> tuple[Path, Path, bool] | None:
    """(image folder, mask folder, has split folders) for ``split``, or None."""
    if (root / "JPEGImages").is_dir() and (root / "SegmentationClass").is_dir():
        return root / "JPEGImages", root / "SegmentationClass", False
    for name in split_names(split):
        for images, masks in ((root / "images" / name, root / "masks" / name),
                              (root / name / "images", root / name / "masks")):
            if images.is_dir() and masks.is_dir():
                return images, masks, True
    if (root / "images").is_dir() and (root / "masks").is_dir():
        return root / "images", root / "masks", False
    return None


def parse_masks(
    root: str | os.PathLike,
    split: str = "train",
    skip_bad_labels: bool = False,
    val_fraction: float = VAL_FRACTION,
) -> MaskSet:
    """The ``split`` of the image + mask folders at ``root``, every pair checked: image and
    mask readable, same size, one channel, values < number of classes or 255."""
    root = Path(root)
    found = mask_folders(root, split) or (mask_folders(root, "train") if split == "val" else None)
    if found is None:
        raise FileNotFoundError(f"No segmentation layout for split {split!r} at {root}: expected "
                                "JPEGImages/ + SegmentationClass/, or images/ + masks/ (PNG class "
                                "indices, 255 = ignore), optionally with train/ and val/ sub-folders.")
    voc = found[1].name == "SegmentationClass"
    lists = root / "ImageSets" / "Segmentation"
    listed = {s: next((lists / f"{n}.txt" for n in split_names(s) if (lists / f"{n}.txt").is_file()), None)
              for s in ("val", split)}
    val_found = mask_folders(root, "val")
    has_val = listed["val"] is not None if voc else bool(val_found and val_found[2])
    hashed = split in ("train", "val") and not has_val
    image_dir, mask_dir, _ = mask_folders(root, "train") if hashed else found
    notes: list[str] = []
    if voc:
        stems = _voc_stems(lists, mask_dir, split, val_fraction, notes)
    else:
        # A mask without its image is listed too (as its missing image), not passed over.
        stems = sorted({p.stem for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
                       | {p.stem for p in mask_dir.iterdir() if p.suffix.lower() == ".png"})
        if hashed:
            keep, note = hashed_split(stems, split, val_fraction)
            stems = [stems[i] for i in keep]
            notes.append(note)
    names = read_class_file(root)
    problems: list[Problem] = []
    images, masks, top = [], [], 0
    photos = {p.stem: p for p in sorted(image_dir.iterdir(), reverse=True)
              if p.suffix.lower() in IMAGE_SUFFIXES}  # any case: camera files are .JPG
    for stem in stems:
        image = photos.get(stem, image_dir / f"{stem}.jpg")
        mask = mask_dir / f"{stem}.png"
        why, values = _check_pair(image, mask, names)
        if why:
            problems.append(Problem(str(mask if image.is_file() else image), why, "image"))
            continue
        images.append(image)
        masks.append(mask)
        top = max([top] + [int(v) for v in values if v != IGNORE_LABEL])
    if problems and not skip_bad_labels:
        lines = "\n".join(f"  - {p}" for p in problems[:50])
        more = f"\n  ... and {len(problems) - 50} more" if len(problems) > 50 else ""
        raise LabelError(f"{len(problems)} problem(s) in the masks of {root} ({split}); nothing was "
                         f"trained:\n{lines}{more}\nFix them, or pass skip_bad_labels=True "
                         "(--skip-bad-labels) to leave those images out.", problems)
    if problems:
        notes.append(f"skip_bad_labels: left out {len(problems)} image(s) with bad masks")
    num_classes = len(names) if names else top + 1
    return MaskSet(root, split, images, masks, names, num_classes, voc, notes, problems)


def _voc_stems(lists: Path, mask_dir: Path, split: str, val_fraction: float, notes: list[str]) -> list[str]:
    """The photos of ``split`` in a VOC ``SegmentationClass`` folder: its ``ImageSets`` list;
    with ``val.txt`` alone, training takes the masks it does not list; with no ``val.txt``, the
    training list (or every mask) is split by hashed names, so no photo is in both splits."""
    def listed(name: str) -> list[str] | None:
        path = next((lists / f"{n}.txt" for n in split_names(name) if (lists / f"{n}.txt").is_file()), None)
        return None if path is None else [ln.split()[0] for ln in path.read_text().splitlines() if ln.strip()]

    every = sorted(p.stem for p in mask_dir.iterdir() if p.suffix.lower() == ".png")
    own, val = listed(split), listed("val")
    if split not in ("train", "val"):
        return own if own is not None else every
    if val is not None:
        if split == "val" or own is not None:
            return val if split == "val" else own
        notes.append("no ImageSets/Segmentation/train.txt: training takes the masks val.txt does not list")
        return [s for s in every if s not in set(val)]
    pool = listed("train") or every
    keep, note = hashed_split(pool, split, val_fraction)
    notes.append(note)
    return [pool[i] for i in keep]


def _check_pair(image: Path, mask: Path, names: list[str] | None) -> tuple[str | None, np.ndarray]:
    """Why the pair cannot be used (None: it can), and the mask's values."""
    none = np.zeros(0, np.int64)
    if not image.is_file():
        return f"image file missing for mask {mask.name}", none
    if not mask.is_file():
        other = sorted(p.name for p in mask.parent.glob(f"{mask.stem}.*"))
        found = (f"; found {', '.join(other)}: masks are PNG (JPEG blurs class indices at edges)"
                 if other else "")
        return f"mask file missing for image {image.name} (expected {mask}){found}", none
    try:
        with Image.open(image) as img:
            size = img.size
        with Image.open(mask) as m:
            if m.mode not in ("P", "L", "I", "I;16", "1"):
                return (f"mask mode {m.mode}: expected one channel of class indices (a palette or "
                        "grayscale PNG), not colours"), none
            values = np.unique(np.asarray(m))
            if m.size != size:
                return f"mask is {m.size[0]}x{m.size[1]} but its image is {size[0]}x{size[1]}", none
    except (OSError, SyntaxError, ValueError) as err:
        return f"not readable ({err})", none
    wide = [int(v) for v in values if v > IGNORE_LABEL or v < 0]
    if wide:  # a 16-bit mask: one byte per pixel is what the pipeline reads
        return (f"mask values {wide[:5]} are outside 0..254 (classes) and {IGNORE_LABEL} (ignore)"), none
    if names:
        bad = [int(v) for v in values if v >= len(names) and v != IGNORE_LABEL]
        if bad:
            return (f"mask values {bad} are not classes 0..{len(names) - 1} nor {IGNORE_LABEL} "
                    "(ignore)"), none
    return None, values
