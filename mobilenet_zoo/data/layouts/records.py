"""What every detection layout parses to, before any check or tf.data: plain Python.

A reader (``coco``, ``voc``, ``yolo``) turns its files into a ``LabelledSet``: one
``LabelledImage`` per photo, one ``LabelledBox`` per object, each saying where it was
written (file and line, XML object, annotation id) so that ``checks.check_labels`` can
name every problem. Nothing is clipped, dropped or normalised here except what the
format itself defines (VOC's 1-based pixels, YOLO's centre boxes).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

# The layouts this package reads (``format=`` / ``--format``), by task.
DETECTION_FORMATS = ("coco", "voc", "yolo")
CLASSIFICATION_FORMATS = ("folders",)
SEGMENTATION_FORMATS = ("masks",)
FORMATS = DETECTION_FORMATS + CLASSIFICATION_FORMATS + SEGMENTATION_FORMATS

# Split names as the tools write them (Roboflow: "valid"; TFDS: "validation").
SPLIT_ALIASES = {"train": ("train",), "val": ("val", "valid", "validation"), "test": ("test",)}
VAL_FRACTION = 0.1  # held out by hashing file names when the data has no validation split


@dataclass
class LabelledBox:
    """One object as written: ``coords`` = (xmin, ymin, xmax, ymax), in pixels of the image
    (0-based pixel edges, COCO's convention) or, when ``normalised``, in fractions of it."""

    coords: tuple[float, float, float, float]
    label: int | None  # index into the set's class_names; None: unknown (``raw_label`` says what)
    raw_label: str
    where: str  # "labels/train/a.txt line 3", "Annotations/a.xml object 2", "x.json annotation id 7"
    normalised: bool = False
    is_crowd: bool = False
    difficult: bool = False


@dataclass
class LabelledImage:
    """One photo: its file, an id unique in the set, its boxes, and where it was declared."""

    path: Path
    image_id: int
    boxes: list[LabelledBox]
    where: str
    key: str = ""  # the name the hashed split and duplicate check use (relative path)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the labels. ``scope``: what ``skip_bad_labels`` drops
    ("box", "image") or "set" (reported, nothing to drop: an empty class)."""

    where: str
    message: str
    scope: str = "box"

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass
class LabelledSet:
    """A split of a detection dataset as parsed: photos, class names in the data's order,
    COCO category ids (1..N where the format has none), notes for the user, and the
    problems met while parsing (the offending items are already left out)."""

    format: str
    root: Path
    split: str
    class_names: list[str]
    category_ids: list[int]
    images: list[LabelledImage]
    notes: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def description(self) -> str:
        return f"{self.format.upper()} layout {self.root} ({self.split}, {len(self.images)} images)"


def hash_fraction(name: str) -> float:
    """A number in [0, 1) fixed by ``name`` alone (SHA-1 of its UTF-8 bytes)."""
    return int(hashlib.sha1(name.encode("utf-8")).hexdigest()[:8], 16) / 2**32


def hashed_split(keys: list[str], split: str, val_fraction: float = VAL_FRACTION) -> tuple[list[int], str]:
    """Indices of ``keys`` in ``split`` ("train" or "val") when the data has no validation
    split: a key goes to val when ``hash_fraction(key) < val_fraction``, so a photo keeps its
    side however many photos are added (at least one photo is held out when there are two or
    more). Returns the indices and a note saying what was done."""
    if split not in ("train", "val"):
        raise ValueError(f"split {split!r}: with no split files in the data only 'train' and "
                         "'val' (made by hashing file names) exist.")
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}.")
    fractions = [hash_fraction(k) for k in keys]
    val = {i for i, f in enumerate(fractions) if f < val_fraction}
    if not val and len(keys) >= 2:
        val = {min(range(len(keys)), key=fractions.__getitem__)}
    note = (f"no validation split in the data: {len(val)} of {len(keys)} images held out for "
            f"validation by hashing their file names (SHA-1 < {val_fraction:g}; deterministic)")
    chosen = [i for i in range(len(keys)) if (i in val) == (split == "val")]
    return chosen, note


def split_names(split: str) -> tuple[str, ...]:
    """The folder / file names that may hold ``split`` ("val" -> val, valid, validation)."""
    return SPLIT_ALIASES.get(split, (split,))
