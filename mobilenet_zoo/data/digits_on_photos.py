"""An embedded detection set built from real data that pip packages carry.

scikit-learn's handwritten digits (1797 scans, 8x8), scaled to 24-96 px and
pasted in random colours onto random crops of real photos from scikit-image and
scikit-learn. Ten classes ("0".."9"), 1-4 objects per image, written once in
COCO format with per-pixel masks (JPEG images + ``annotations.json``) with a train and a val split
that share no digit scan. Deterministic for a given seed; cached on disk.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from mobilenet_zoo.weights_io import atomic_write

VERSION = 2  # 2: per-pixel masks (masks/*.png) for segmentation
CLASS_NAMES = [str(d) for d in range(10)]
_RGB_PHOTOS = (
    "astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry",
    "hubble_deep_field", "retina", "colorwheel",
)  # fmt: skip
_GRAY_PHOTOS = ("camera", "moon", "page", "text", "brick", "grass", "gravel")


def cache_dir() -> Path:
    return Path(os.environ.get("MOBILENET_ZOO_CACHE", Path.home() / ".cache" / "mobilenet_zoo"))


def _backgrounds() -> list[np.ndarray]:
    from skimage import data as skdata
    from sklearn.datasets import load_sample_images

    photos = [getattr(skdata, n)()[..., :3] for n in _RGB_PHOTOS]
    photos += [np.repeat(getattr(skdata, n)()[..., None], 3, -1) for n in _GRAY_PHOTOS]
    photos += list(load_sample_images().images)
    return [np.ascontiguousarray(p, dtype=np.uint8) for p in photos]


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _render(rng, backgrounds, digit_images, digit_labels, size, max_objects):
    from PIL import Image

    bg = backgrounds[rng.integers(len(backgrounds))]
    side = int(rng.integers(min(bg.shape[:2]) // 3, min(bg.shape[:2]) + 1))
    y0 = int(rng.integers(0, bg.shape[0] - side + 1))
    x0 = int(rng.integers(0, bg.shape[1] - side + 1))
    canvas = np.asarray(
        Image.fromarray(bg[y0 : y0 + side, x0 : x0 + side]).resize((size, size), Image.BILINEAR),
        dtype=np.float32,
    ).copy()
    labels = np.zeros((size, size), np.uint8)  # 0 background, d + 1 for digit d
    annotations = []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        for _attempt in range(20):
            k = int(rng.integers(len(digit_images)))
            scale = int(rng.integers(size * 8 // 100, size * 32 // 100 + 1))  # 24-96 px at 300
            aspect = rng.uniform(0.75, 1.33)
            h, w = scale, max(8, int(scale / aspect))
            y, x = int(rng.integers(0, size - h + 1)), int(rng.integers(0, size - w + 1))
            box = (x, y, x + w, y + h)
            if all(_iou(box, a["_xyxy"]) < 0.2 for a in annotations):
                break
        else:
            continue
        glyph = Image.fromarray((digit_images[k] * (255.0 / 16.0)).astype(np.uint8))
        mask = np.asarray(glyph.resize((w, h), Image.BILINEAR), np.float32) / 255.0
        ys, xs = np.nonzero(mask > 0.25)
        if len(ys) == 0:
            continue
        colour = rng.uniform(0, 255, 3)
        # Contrast: push the colour away from the local background mean.
        local = canvas[y : y + h, x : x + w].mean((0, 1))
        colour = np.where(np.abs(colour - local) < 80, 255 - local, colour)
        region = canvas[y : y + h, x : x + w]
        canvas[y : y + h, x : x + w] = region * (1 - mask[..., None]) + colour * mask[..., None]
        labels[y : y + h, x : x + w][mask > 0.25] = int(digit_labels[k]) + 1
        bx0, by0 = x + xs.min(), y + ys.min()
        bx1, by1 = x + xs.max() + 1, y + ys.max() + 1
        annotations.append(
            {
                "bbox": [float(bx0), float(by0), float(bx1 - bx0), float(by1 - by0)],
                "category_id": int(digit_labels[k]) + 1,
                "_xyxy": box,
            }
        )
    return canvas.clip(0, 255).astype(np.uint8), annotations, labels


def build(
    root: str | os.PathLike | None = None,
    num_train: int = 600,
    num_val: int = 100,
    image_size: int = 300,
    max_objects: int = 4,
    seed: int = 0,
) -> Path:
    """Writes (or reuses) the set; returns its directory with ``train/`` and ``val/``.

    Each split holds ``images/*.jpg``, ``annotations.json`` (COCO format,
    category ids 1..10 for digits 0..9) and ``masks/*.png`` (per pixel: 0
    background, d + 1 for digit d; for segmentation).
    """
    from PIL import Image
    from sklearn.datasets import load_digits

    name = f"digits_det_v{VERSION}_{num_train}_{num_val}_{image_size}_{max_objects}_{seed}"
    out = Path(root) if root is not None else cache_dir() / name
    if (out / "val" / "annotations.json").is_file() and (out / "train" / "annotations.json").is_file():
        return out
    digits = load_digits()
    order = np.random.default_rng(seed).permutation(len(digits.images))
    n_val_digits = len(order) // 5
    pools = {"val": order[:n_val_digits], "train": order[n_val_digits:]}
    backgrounds = _backgrounds()
    for split, count, split_seed in (("train", num_train, seed), ("val", num_val, seed + 1)):
        rng = np.random.default_rng(split_seed)
        idx = pools[split]
        (out / split / "images").mkdir(parents=True, exist_ok=True)
        (out / split / "masks").mkdir(parents=True, exist_ok=True)
        images, annotations = [], []
        for i in range(count):
            pixels, objs, labels = _render(
                rng, backgrounds, digits.images[idx], digits.target[idx], image_size, max_objects
            )
            file_name = f"{i:05d}.jpg"
            Image.fromarray(pixels).save(out / split / "images" / file_name, quality=92)
            Image.fromarray(labels).save(out / split / "masks" / f"{i:05d}.png")
            images.append(
                {"id": i + 1, "file_name": file_name, "height": image_size, "width": image_size}
            )
            for obj in objs:
                x, y, w, h = obj["bbox"]
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "image_id": i + 1,
                        "category_id": obj["category_id"],
                        "bbox": [x, y, w, h],
                        "area": w * h,
                        "iscrowd": 0,
                    }
                )
        coco = {
            "info": {"description": "mobilenet_zoo embedded digits-on-photos detection set",
                     "version": VERSION},
            "images": images,
            "annotations": annotations,
            "categories": [{"id": d + 1, "name": str(d)} for d in range(10)],
        }
        # Written last and atomically: its presence marks a complete split for reuse.
        text = json.dumps(coco)
        atomic_write(out / split / "annotations.json", lambda tmp: Path(tmp).write_text(text))
    return out
