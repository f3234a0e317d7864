"""Labels checked before anything trains: every problem, with its file and line or object.

``check_labels`` looks at every photo and box of a parsed ``LabelledSet``:

- boxes outside the image (beyond ``tolerance`` pixels; within it they are clipped),
  zero-area, inverted or non-finite boxes;
- unknown class names or ids;
- missing or unreadable images (decoded in full with ``decode_images=True``: truncated
  files fail here, not deep inside tf.data);
- duplicate image ids;
- empty classes (a class with no box in the split; ``require_every_class=False`` for a
  small validation split, where this is a note).

By default it raises one ``LabelError`` listing them all (the first ``max_listed``, with the
count) so that nothing trains on bad labels; ``skip_bad_labels=True`` drops the bad boxes
and images and says how many in ``notes``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from mobilenet_zoo.data.layouts.records import LabelledBox, LabelledImage, LabelledSet, Problem

MAX_LISTED = 50


class LabelError(ValueError):
    """Labels with problems; ``problems`` holds all of them (``str(p)``: where and what)."""

    def __init__(self, message: str, problems: list[Problem]):
        super().__init__(message)
        self.problems = problems


@dataclass
class CheckedImage:
    """A photo that passed: its size read from the file, boxes normalised (ymin, xmin, ymax,
    xmax) float32 and clipped to the image, 0-based classes, crowd and difficult flags."""

    path: Path
    image_id: int
    size: tuple[int, int]  # (height, width)
    boxes: np.ndarray
    classes: np.ndarray
    is_crowd: np.ndarray
    difficult: np.ndarray


@dataclass
class CheckedSet:
    """A split ready for tf.data, what was dropped or clipped, and notes for the user."""

    format: str
    root: Path
    split: str
    class_names: list[str]
    category_ids: list[int]
    images: list[CheckedImage]
    notes: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=dict)

    @property
    def description(self) -> str:
        return f"{self.format.upper()} layout {self.root} ({self.split}, {len(self.images)} images)"


def _image_size(path: Path, decode: bool) -> tuple[int, int] | str:
    """(height, width) of the image file, or why it cannot be read."""
    if not path.is_file():
        return "image file missing"
    try:
        with Image.open(path) as img:
            width, height = img.size
            if decode:
                img.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        return f"not a readable image ({err})"
    return height, width


def _box_problem(box: LabelledBox, size: tuple[int, int], tolerance: float, names: list[str]) -> str | None:
    h, w = size
    if box.label is None:
        listed = ", ".join(f"{i} {n!r}" for i, n in enumerate(names[:10])) + (", ..." if len(names) > 10 else "")
        return f"unknown class ({box.raw_label}); the {len(names)} classes are {listed}"
    x0, y0, x1, y1 = box.coords
    unit = "normalised" if box.normalised else "pixels"
    shown = f"x {x0:g}..{x1:g}, y {y0:g}..{y1:g} ({unit})"
    if not all(math.isfinite(v) for v in box.coords):
        return f"non-finite box {shown}"
    if x1 < x0 or y1 < y0:
        return f"inverted box {shown}: xmax < xmin or ymax < ymin"
    if x1 == x0 or y1 == y0:
        return f"zero-area box {shown}"
    sx, sy = (w, h) if box.normalised else (1, 1)
    tx, ty = tolerance / sx, tolerance / sy
    if x0 < -tx or y0 < -ty or x1 > w / sx + tx or y1 > h / sy + ty:
        return f"box {shown} is outside the image ({w}x{h} pixels, tolerance {tolerance:g} px)"
    return None


def check_labels(
    labelled: LabelledSet,
    skip_bad_labels: bool = False,
    tolerance: float = 1.0,
    decode_images: bool = True,
    require_every_class: bool = True,
    max_listed: int = MAX_LISTED,
) -> CheckedSet:
    """``labelled`` checked (module docstring): a ``CheckedSet``, or ``LabelError``.

    Args:
        skip_bad_labels: drop bad boxes and images instead of raising (``--skip-bad-labels``).
        tolerance: pixels a box may stick out of the image before it is an error.
        decode_images: decode every image in full (else read the headers only).
        require_every_class: a class with no box is an error (else a note).
    """
    problems = list(labelled.problems)
    names = labelled.class_names
    images: list[CheckedImage] = []
    seen_ids: dict[int, LabelledImage] = {}
    dropped_boxes = sum(p.scope == "box" for p in problems)
    clipped = 0
    for image in labelled.images:
        if image.image_id in seen_ids:
            problems.append(Problem(image.where, f"duplicate image id {image.image_id} (first: "
                                                 f"{seen_ids[image.image_id].where})", "image"))
            continue
        seen_ids[image.image_id] = image
        size = _image_size(image.path, decode_images)
        if isinstance(size, str):
            problems.append(Problem(str(image.path), f"{size} (declared in {image.where})", "image"))
            continue
        h, w = size
        rows = []
        for box in image.boxes:
            why = _box_problem(box, size, tolerance, names)
            if why:
                problems.append(Problem(box.where, why))
                dropped_boxes += 1
                continue
            x0, y0, x1, y1 = box.coords
            if not box.normalised:
                x0, x1, y0, y1 = x0 / w, x1 / w, y0 / h, y1 / h
            yxyx = np.clip([y0, x0, y1, x1], 0.0, 1.0)
            clipped += bool(np.any(yxyx != [y0, x0, y1, x1]))
            rows.append((yxyx, box.label, box.is_crowd or box.difficult, box.difficult))
        images.append(CheckedImage(
            image.path, image.image_id, size,
            np.array([r[0] for r in rows], np.float32).reshape(-1, 4),
            np.array([r[1] for r in rows], np.int32), np.array([r[2] for r in rows], np.int32),
            np.array([r[3] for r in rows], np.int32)))
    counts = np.bincount(np.concatenate([i.classes for i in images] + [np.zeros(0, np.int32)]),
                         minlength=len(names))
    empty = [Problem(f"class {i} {names[i]!r}", f"has no box in the {labelled.split} split", "set")
             for i in np.flatnonzero(counts == 0)]
    dropped_images = sum(p.scope == "image" for p in problems)
    notes = list(labelled.notes)
    if require_every_class:
        problems += empty
    else:
        notes += [str(p) for p in empty]
    if problems and not skip_bad_labels:
        raise LabelError(_message(labelled, problems, max_listed), problems)
    if problems:
        notes.append(f"skip_bad_labels: dropped {dropped_boxes} box(es) and {dropped_images} image(s) "
                     f"with problems ({len(problems)} listed in .problems)")
    return CheckedSet(labelled.format, labelled.root, labelled.split, list(names),
                      list(labelled.category_ids), images, notes, problems,
                      {"boxes_dropped": dropped_boxes, "images_dropped": dropped_images,
                       "boxes_clipped": clipped})


def _message(labelled: LabelledSet, problems: list[Problem], max_listed: int) -> str:
    lines = [f"{len(problems)} label problem(s) in the {labelled.description}; nothing was trained:"]
    lines += [f"  - {p}" for p in problems[:max_listed]]
    if len(problems) > max_listed:
        lines.append(f"  ... and {len(problems) - max_listed} more")
    lines.append("Fix them, or pass skip_bad_labels=True (--skip-bad-labels) to drop the bad boxes "
                 "and images and train on the rest.")
    return "\n".join(lines)
