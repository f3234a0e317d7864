"""YOLO detection layout (Ultralytics, https://docs.ultralytics.com/datasets/detect/).

``data.yaml`` holds ``path`` (the dataset root), ``train`` / ``val`` / ``test`` (image
folders or ``.txt`` lists of images, relative to ``path``) and ``names`` (a list, or a dict
``{0: name, ...}``). The labels of ``.../images/<split>/a.jpg`` are in
``.../labels/<split>/a.txt`` (Ultralytics ``img2label_paths``: the last ``/images/`` of the
path becomes ``/labels/``), one ``class cx cy w h`` line per box, normalised to [0, 1]. An
image with no label file (or an empty one) is a background image. A line of ``class x1 y1
x2 y2 ...`` (a segment) gives its bounding box, as Ultralytics ``segments2boxes`` does.

PyYAML reads ``data.yaml`` where it is installed; otherwise a small reader takes the keys
above (scalars, ``[a, b]`` lists, ``- a`` items and ``0: a`` mappings).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mobilenet_zoo.data.layouts.records import (
    VAL_FRACTION,
    LabelledBox,
    LabelledImage,
    LabelledSet,
    Problem,
    hashed_split,
)
from mobilenet_zoo.images import IMAGE_SUFFIXES

try:
    import yaml
except ImportError:  # PyYAML is not a dependency of the package
    yaml = None


def _scalar(text: str) -> Any:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    try:
        return int(text)
    except ValueError:
        return text or None


def _small_yaml(text: str) -> dict[str, Any]:
    """The subset of YAML that ``data.yaml`` files use, for installs without PyYAML."""
    out: dict[str, Any] = {}
    key = None
    for raw in text.splitlines():
        line = raw.split(" #")[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if not line.strip():
            continue
        if raw[0] in " \t-" and key is not None:  # an item of the key above
            item = line.strip()
            if item.startswith("- "):
                out[key] = [*(out[key] or []), _scalar(item[2:])]
            elif ":" in item:
                k, v = item.split(":", 1)
                out[key] = {**(out[key] or {}), _scalar(k): _scalar(v)}
            continue
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if value.startswith("[") and value.endswith("]"):
            out[key] = [_scalar(v) for v in value[1:-1].split(",") if v.strip()]
        else:
            out[key] = _scalar(value)
    return out


def find_yaml(root: Path) -> Path | None:
    """``root`` itself (a .yaml file), ``root/data.yaml``, or the one ``root/*.yaml`` with names."""
    if root.is_file() and root.suffix in (".yaml", ".yml"):
        return root
    if not root.is_dir():
        return None
    for name in ("data.yaml", "data.yml", "dataset.yaml"):
        if (root / name).is_file():
            return root / name
    found = [p for p in sorted(root.glob("*.y*ml")) if "names" in p.read_text(errors="replace")]
    return found[0] if len(found) == 1 else None


def read_data_yaml(path: Path) -> dict[str, Any]:
    """``data.yaml`` as a dict, ``names`` as a list in class-id order (a dict must hold 0..N-1)."""
    text = path.read_text(encoding="utf-8")
    data = (yaml.safe_load(text) if yaml is not None else _small_yaml(text)) or {}
    names = data.get("names")
    if isinstance(names, dict):
        ids = sorted(int(k) for k in names)
        if ids != list(range(len(ids))):
            raise ValueError(f"{path}: 'names' ids must be 0..{len(ids) - 1} (class ids of the label "
                             f"lines), got {ids}.")
        names = [str(names[k] if k in names else names[str(k)]) for k in ids]
    if not isinstance(names, list) or not names:
        raise ValueError(f"{path} has no 'names': give the class names as a list or as "
                         "{0: name, ...} (https://docs.ultralytics.com/datasets/detect/).")
    if data.get("nc") is not None and int(data["nc"]) != len(names):
        raise ValueError(f"{path}: nc is {data['nc']} but 'names' lists {len(names)} classes.")
    return {**data, "names": [str(n) for n in names]}


def _resolve(yaml_file: Path, data: dict[str, Any], entry: str) -> Path:
    """Where ``entry`` (a train/val value) is: under ``path`` (absolute, or relative to the
    yaml's folder or to the working directory), or beside the yaml (Roboflow's ``../train``)."""
    base = Path(str(data.get("path") or "."))
    bases = [base] if base.is_absolute() else [yaml_file.parent / base, Path.cwd() / base]
    for candidate in [b / entry for b in bases] + [yaml_file.parent / entry.lstrip("./")]:
        if candidate.exists():
            return candidate
    return bases[0] / entry  # missing: the caller says so


def _images_of(yaml_file: Path, data: dict[str, Any], key: str) -> list[Path]:
    entries = data[key] if isinstance(data[key], list) else [data[key]]
    files: list[Path] = []
    for entry in entries:
        where = _resolve(yaml_file, data, str(entry))
        if where.is_dir():
            files += sorted(p for p in where.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        elif where.is_file():  # a list of image paths; "./x" is relative to the list's folder
            files += [where.parent / line.strip()[2:] if line.strip().startswith("./") else Path(line.strip())
                      for line in where.read_text().splitlines() if line.strip()]
        else:
            raise FileNotFoundError(f"{yaml_file}: {key}: {entry} is neither a folder nor a list "
                                    f"of images (looked at {where}).")
    return files


def label_path(image: Path) -> Path:
    """Ultralytics ``img2label_paths``: the last ``/images/`` becomes ``/labels/``, suffix .txt."""
    sa, sb = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    return Path(sb.join(str(image).rsplit(sa, 1))).with_suffix(".txt")


def parse_yolo(root: str | os.PathLike, split: str = "train", val_fraction: float = VAL_FRACTION) -> LabelledSet:
    """The ``split`` of the YOLO data at ``root`` (its folder or its data.yaml)."""
    root = Path(root)
    yaml_file = find_yaml(root)
    if yaml_file is None:
        raise FileNotFoundError(f"No data.yaml at {root}: a YOLO dataset needs one with path, train, "
                                "val and names (https://docs.ultralytics.com/datasets/detect/).")
    data = read_data_yaml(yaml_file)
    names = data["names"]
    notes: list[str] = []
    if split in ("train", "val") and data.get("train") and not data.get("val"):
        pool = _images_of(yaml_file, data, "train")
        keep, note = hashed_split([p.name for p in pool], split, val_fraction)
        files = [pool[i] for i in keep]
        notes.append(note)
    elif data.get(split):
        files = _images_of(yaml_file, data, split)
    else:
        raise ValueError(f"{yaml_file} has no {split!r} entry (it has {sorted(data)}).")
    problems: list[Problem] = []
    images: list[LabelledImage] = []
    seen: dict[Path, str] = {}
    for image_id, path in enumerate(files):
        labels = label_path(path)
        where = _short(labels, yaml_file.parent)
        if labels in seen:
            problems.append(Problem(f"{path}", f"duplicate image id: {seen[labels]} has the same "
                                               f"label file {where}; this one is left out", "image"))
            continue
        seen[labels] = str(path)
        image = LabelledImage(path, image_id, [], where, key=path.name)
        if labels.is_file():
            for n, line in enumerate(labels.read_text(errors="replace").splitlines(), 1):
                if line.strip():
                    box = _line_box(line, len(names), f"{where} line {n}")
                    (problems if isinstance(box, Problem) else image.boxes).append(box)
        images.append(image)
    return LabelledSet("yolo", root, split, names, list(range(1, len(names) + 1)), images, notes, problems)


def _short(path: Path, base: Path) -> str:
    try:
        return str(path.relative_to(base))
    except ValueError:
        return str(path)


def _line_box(line: str, num_classes: int, where: str) -> LabelledBox | Problem:
    tokens = line.split()
    try:
        values = [float(t) for t in tokens[1:]]
    except ValueError:
        return Problem(where, f"expected 'class cx cy w h' (numbers), got {line.strip()!r}")
    if len(values) == 4:
        cx, cy, w, h = values
        coords = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
    elif len(values) >= 6 and len(values) % 2 == 0:  # a segment: x1 y1 x2 y2 ...
        xs, ys = values[0::2], values[1::2]
        coords = (min(xs), min(ys), max(xs), max(ys))
    else:
        return Problem(where, f"expected 'class cx cy w h' (5 values), got {len(tokens)}: {line.strip()!r}")
    label = int(tokens[0]) if tokens[0].isdigit() and int(tokens[0]) < num_classes else None
    return LabelledBox(coords, label, f"class id {tokens[0]}", where, normalised=True)
