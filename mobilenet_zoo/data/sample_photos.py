"""A small labelled folder to try ``python -m mobilenet_zoo.finetune`` on, in the layouts
labelling tools write: YOLO, Pascal VOC or COCO JSON, class folders for a classifier, or
images + PNG masks for a segmenter.

The photos are the embedded digits-on-photos set's (``digits_on_photos``: scikit-learn's
handwritten digits pasted onto scikit-image and scikit-learn photos), restricted to a few
digits, named as words ("zero", "one", ...), so it is a new task for any preset:

    python -m mobilenet_zoo.data.sample_photos sample/ --layout yolo
    python -m mobilenet_zoo.finetune detector sample/ --out runs/sample
    python -m mobilenet_zoo.data.sample_photos digits/ --layout folders
    python -m mobilenet_zoo.finetune classifier digits/ --out runs/digits
    python -m mobilenet_zoo.data.sample_photos masks/ --layout masks
    python -m mobilenet_zoo.finetune segmenter masks/ --out runs/masks
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mobilenet_zoo.data import digits_on_photos

# folders: each digit cropped, for a classifier; masks: each digit's pixels, for a segmenter
LAYOUTS = ("yolo", "voc", "coco", "folders", "masks")
WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def write(out: str | os.PathLike, layout: str = "yolo", digits: Sequence[int] = (0, 1, 2),
          num_train: int = 240, num_val: int = 60, image_size: int = 320, seed: int = 0) -> Path:
    """Writes the folder (which must not exist yet, or be empty); returns its path.

    Train and val photos share no digit scan; classes are ``WORDS[d]`` in ``digits`` order
    (a segmenter's: ``background`` first, then those).
    """
    if layout not in LAYOUTS:
        raise ValueError(f"`layout` must be one of {LAYOUTS}; got {layout!r}.")
    digits = [int(d) for d in digits]
    if not digits or len(set(digits)) != len(digits) or not all(0 <= d <= 9 for d in digits):
        raise ValueError(f"`digits` must be distinct digits 0-9; got {digits!r}.")
    if num_train < 1 or num_val < 1 or image_size < 64:
        raise ValueError("`num_train` and `num_val` must be at least 1 and `image_size` at least 64.")
    root = Path(out)
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f"{root} is not empty: give a new folder for the sample photos.")
    from PIL import Image
    from sklearn.datasets import load_digits

    scans = load_digits()
    chosen = np.isin(scans.target, digits)
    images, labels = scans.images[chosen], np.array([digits.index(t) for t in scans.target[chosen]])
    order = np.random.default_rng(seed).permutation(len(images))
    pools = {"val": order[: len(order) // 5], "train": order[len(order) // 5:]}
    backgrounds = digits_on_photos._backgrounds()
    names = [WORDS[d] for d in digits]
    splits = {}
    for split, count, split_seed in (("train", num_train, seed), ("val", num_val, seed + 1)):
        rng, pool = np.random.default_rng(split_seed), pools[split]
        rows = []
        for i in range(count):
            pixels, objects, mask = digits_on_photos._render(rng, backgrounds, images[pool], labels[pool],
                                                             image_size, 3)
            boxes = [(*o["bbox"], o["category_id"] - 1) for o in objects]  # x, y, w, h, class
            rows.append((f"{split}_{i:04d}", Image.fromarray(pixels), boxes, mask))
        splits[split] = rows
    root.mkdir(parents=True, exist_ok=True)
    writers = {"yolo": _yolo, "voc": _voc, "coco": _coco, "folders": _folders, "masks": _masks}
    writers[layout](root, splits, names, image_size)
    return root


def _yolo(root: Path, splits: dict, names: list[str], size: int) -> None:
    for split, rows in splits.items():
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for stem, image, boxes, _ in rows:
            image.save(root / "images" / split / f"{stem}.jpg", quality=92)
            lines = [f"{c} {(x + w / 2) / size:.6f} {(y + h / 2) / size:.6f} {w / size:.6f} {h / size:.6f}"
                     for x, y, w, h, c in boxes]
            (root / "labels" / split / f"{stem}.txt").write_text("\n".join(lines) + "\n")
    # `path: .`: relative to data.yaml's folder, so the folder can be moved.
    (root / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/val\n"
                                    f"names: [{', '.join(names)}]\n")


def _voc(root: Path, splits: dict, names: list[str], size: int) -> None:
    for folder in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / folder).mkdir(parents=True)
    for split, rows in splits.items():
        for stem, image, boxes, _ in rows:
            image.save(root / "JPEGImages" / f"{stem}.jpg", quality=92)
            objects = "".join(  # 1-based pixel coordinates, as the VOC devkit
                f"<object><name>{names[c]}</name><difficult>0</difficult><bndbox><xmin>{round(x) + 1}"
                f"</xmin><ymin>{round(y) + 1}</ymin><xmax>{round(x + w)}</xmax><ymax>{round(y + h)}"
                f"</ymax></bndbox></object>" for x, y, w, h, c in boxes)
            (root / "Annotations" / f"{stem}.xml").write_text(
                f"<annotation><filename>{stem}.jpg</filename><size><width>{size}</width><height>"
                f"{size}</height><depth>3</depth></size>{objects}</annotation>")
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(r[0] for r in rows) + "\n")


def _folders(root: Path, splits: dict, names: list[str], size: int) -> None:
    """Each digit cut out with a quarter of its size around it: ``<split>/<class>/<photo>_<k>.jpg``."""
    for split, rows in splits.items():
        for name in names:
            (root / split / name).mkdir(parents=True)
        for stem, image, boxes, _ in rows:
            for k, (x, y, w, h, c) in enumerate(boxes):
                m = max(w, h) / 4
                crop = image.crop((max(0, round(x - m)), max(0, round(y - m)),
                                   min(size, round(x + w + m)), min(size, round(y + h + m))))
                crop.save(root / split / names[c] / f"{stem}_{k}.jpg", quality=92)


def _masks(root: Path, splits: dict, names: list[str], size: int) -> None:
    """``images/<split>/<photo>.jpg`` and ``masks/<split>/<photo>.png`` (one channel: 0
    background, k + 1 the k-th class's pixels), ``labels.txt`` naming them."""
    from PIL import Image

    for split, rows in splits.items():
        (root / "images" / split).mkdir(parents=True)
        (root / "masks" / split).mkdir(parents=True)
        for stem, image, _, mask in rows:
            image.save(root / "images" / split / f"{stem}.jpg", quality=92)
            Image.fromarray(mask.astype(np.uint8)).save(root / "masks" / split / f"{stem}.png")
    (root / "labels.txt").write_text("\n".join(["background", *names]) + "\n")


def _coco(root: Path, splits: dict, names: list[str], size: int) -> None:
    for split, rows in splits.items():
        (root / split / "images").mkdir(parents=True)
        images, annotations = [], []
        for i, (stem, image, boxes, _) in enumerate(rows):
            image.save(root / split / "images" / f"{stem}.jpg", quality=92)
            images.append({"id": i + 1, "file_name": f"{stem}.jpg", "width": size, "height": size})
            annotations += [{"id": len(annotations) + 1, "image_id": i + 1, "category_id": c + 1,
                             "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0}
                            for x, y, w, h, c in boxes]
        (root / split / "annotations.json").write_text(json.dumps(
            {"images": images, "annotations": annotations,
             "categories": [{"id": k + 1, "name": n} for k, n in enumerate(names)]}))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", help="a new folder")
    p.add_argument("--layout", choices=LAYOUTS, default="yolo")
    p.add_argument("--digits", type=int, nargs="+", default=[0, 1, 2], help="the classes (default: 0 1 2)")
    p.add_argument("--num-train", type=int, default=240)
    p.add_argument("--num-val", type=int, default=60)
    p.add_argument("--image-size", type=int, default=320)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    try:
        root = write(args.out, args.layout, args.digits, args.num_train, args.num_val, args.image_size,
                     args.seed)
    except (ValueError, FileExistsError) as err:
        p.error(str(err))
    print(f"wrote {root} ({args.layout}: {args.num_train} train, {args.num_val} val photos, classes "
          f"{', '.join(WORDS[d] for d in args.digits)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
