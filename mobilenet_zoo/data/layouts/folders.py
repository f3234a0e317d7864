"""Classification layout: one sub-folder per class (Keras ``image_dataset_from_directory``,
torchvision ``ImageFolder``): ``ROOT/<class>/<image>``, or split folders
``ROOT/{train,val}/<class>/<image>``. Classes are the sub-folder names in alphanumeric order,
as both of them sort; files that are not images (by suffix) are ignored. With no validation
folder, ``train`` and ``val`` are made by hashing ``<class>/<file name>``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from mobilenet_zoo.data.layouts.checks import LabelError
from mobilenet_zoo.data.layouts.records import VAL_FRACTION, Problem, hashed_split, split_names
from mobilenet_zoo.images import IMAGE_SUFFIXES


@dataclass
class ImageFolder:
    """A classification split: image files, 0-based labels, class names, notes for the user."""

    root: Path
    split: str
    paths: list[Path]
    labels: list[int]
    class_names: list[str]
    notes: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def description(self) -> str:
        return f"class folders {self.root} ({self.split}, {len(self.paths)} images)"


def _class_folders(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")),
                  key=lambda p: p.name)


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def split_folder(root: Path, split: str) -> Path | None:
    """``ROOT/<split>`` (or its alias) when it holds class folders."""
    for name in split_names(split):
        if (root / name).is_dir() and _class_folders(root / name):
            return root / name
    return None


def parse_folders(
    root: str | os.PathLike,
    split: str = "train",
    skip_bad_labels: bool = False,
    decode_images: bool = True,
    val_fraction: float = VAL_FRACTION,
    require_every_class: bool | None = None,
) -> ImageFolder:
    """The ``split`` of the class folders at ``root``, checked: missing or unreadable images,
    classes without images (``require_every_class``, default: in ``train`` only; else a note)
    and (in a split folder) classes unknown to ``train`` raise one ``LabelError`` listing
    them, unless ``skip_bad_labels``."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder of class sub-folders.")
    train_folder = split_folder(root, "train")
    classes_from = train_folder or root
    names = [p.name for p in _class_folders(classes_from)]
    if not names:
        raise FileNotFoundError(f"{root} has no class sub-folders: put each class's images in "
                                "ROOT/<class name>/ (or ROOT/train/<class>/ and ROOT/val/<class>/).")
    notes: list[str] = []
    problems: list[Problem] = []
    hashed = train_folder is None or (split in ("train", "val") and split_folder(root, "val") is None)
    folder = classes_from if hashed else split_folder(root, split)
    if folder is None or (hashed and split not in ("train", "val")):
        raise FileNotFoundError(f"{root} has no {split!r} folder of classes.")
    paths, labels = [], []
    for class_dir in _class_folders(folder):
        if class_dir.name not in names:
            problems.append(Problem(str(class_dir), f"class {class_dir.name!r} is not among the "
                                                    f"classes of {classes_from} ({', '.join(names)})", "image"))
            continue
        for path in _images(class_dir):
            paths.append(path)
            labels.append(names.index(class_dir.name))
    if hashed:
        keys = [f"{names[label]}/{p.name}" for p, label in zip(paths, labels)]
        keep, note = hashed_split(keys, split, val_fraction)
        paths, labels = [paths[i] for i in keep], [labels[i] for i in keep]
        notes.append(note)
    good = [_readable(p, decode_images) for p in paths]
    problems += [Problem(str(p), why, "image") for p, why in zip(paths, good) if why]
    paths = [p for p, why in zip(paths, good) if not why]
    labels = [label for label, why in zip(labels, good) if not why]
    empty = [Problem(f"class {i} {n!r}", f"has no image in the {split} split", "set")
             for i, n in enumerate(names) if i not in set(labels)]
    if split == "train" if require_every_class is None else require_every_class:
        problems += empty
    else:
        notes += [str(p) for p in empty]
    data = ImageFolder(root, split, paths, labels, names, notes, problems)
    if problems and not skip_bad_labels:
        listed = "\n".join(f"  - {p}" for p in problems[:50])
        more = f"\n  ... and {len(problems) - 50} more" if len(problems) > 50 else ""
        raise LabelError(f"{len(problems)} problem(s) in the {data.description}; nothing was trained:\n"
                         f"{listed}{more}\nFix them, or pass skip_bad_labels=True (--skip-bad-labels).",
                         problems)
    if problems:
        notes.append(f"skip_bad_labels: left out {sum(p.scope == 'image' for p in problems)} image(s)")
    return data


def _readable(path: Path, decode: bool) -> str | None:
    try:
        with Image.open(path) as img:
            if decode:
                img.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        return f"not a readable image ({err})"
    return None
