"""ImageNet helpers: class names shipped in the package, decode, one-call classify."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from mobilenet_zoo import presets
from mobilenet_zoo.classification.classifier import MobileNetClassifier
from mobilenet_zoo.fold import fold_batch_norm
from mobilenet_zoo.images import load_rgb

DEFAULT_PRESET = presets.IMAGENET
_CLASSES_FILE = Path(__file__).parent / "data" / "imagenet_classes.txt"


@lru_cache(maxsize=1)
def class_info() -> tuple[tuple[str, str, str], ...]:
    """(synset, short name, all lemmas) for the 1000 classes, in model order."""
    rows = []
    for line in _CLASSES_FILE.read_text(encoding="utf8").splitlines():
        if line and not line.startswith("#"):
            synset, lemmas = line.split("\t", 1)
            rows.append((synset, lemmas.split(",")[0].strip().replace(" ", "_"), lemmas))
    return tuple(rows)


def class_names() -> list[str]:
    """Short human-readable names, index = class id (``Egyptian_cat`` = 285)."""
    return [name for _, name, _ in class_info()]


def decode_predictions(preds: Any, top: int = 5) -> list[list[tuple[str, str, float]]]:
    """Like ``keras.applications.mobilenet.decode_predictions``, with no download.

    Args:
        preds: ``(batch, 1000)`` scores (probabilities or logits).
        top: how many classes to return per image.

    Returns:
        Per image, ``[(synset, name, score), ...]`` best first.
    """
    preds = np.asarray(preds)
    if preds.ndim != 2 or preds.shape[1] != 1000:
        raise ValueError(
            f"`decode_predictions` expects a (batch, 1000) array, got shape {preds.shape}. "
            "For TF-slim 1001-class outputs drop column 0 (background) first."
        )
    if not 1 <= top <= 1000:
        raise ValueError(f"`top` must be in [1, 1000], got {top}.")
    info = class_info()
    out = []
    for row in preds:
        idx = np.argsort(row)[::-1][:top]
        out.append([(info[i][0], info[i][1], float(row[i])) for i in idx])
    return out


def load_image(path: str | os.PathLike, size: int = 224) -> np.ndarray:
    """Reads an image file as uint8 RGB (``mobilenet_zoo.images.load_rgb``: EXIF
    orientation, 16-bit and alpha handled), resized to ``size`` x ``size``."""
    from PIL import Image

    return np.asarray(Image.fromarray(load_rgb(path)).resize((size, size), Image.BILINEAR))


def _as_batch(image: Any, size: int) -> np.ndarray:
    from PIL import Image

    if isinstance(image, (str, os.PathLike)):
        return load_image(image, size)[None]
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, -1)
    if arr.ndim != 3 or arr.shape[-1] not in (3, 4):
        raise ValueError(
            f"`classify` takes a path or an HxWx3 RGB array with values in [0, 255], "
            f"got an array of shape {arr.shape}."
        )
    if arr.dtype != np.uint8:
        if arr.min() < 0 or arr.max() <= 1.0:
            raise ValueError(
                "`classify` expects raw pixels in [0, 255]; this array looks already "
                f"scaled (min {arr.min():.3g}, max {arr.max():.3g}). Pass the raw image."
            )
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    img = Image.fromarray(arr[..., :3]).resize((size, size), Image.BILINEAR)
    return np.asarray(img)[None]


@lru_cache(maxsize=2)
def _model(preset: str):
    # Served folded: same probabilities, about 1.5x faster (mobilenet_zoo.fold).
    return fold_batch_norm(MobileNetClassifier.from_preset(preset, include_preprocessing=True))


def classify(image: Any, top: int = 5, preset: str = DEFAULT_PRESET) -> list[tuple[str, str, float]]:
    """Top-``top`` ImageNet classes of one image (path or uint8 HxWx3 array).

    Example:

    ```python
    from skimage import data
    classify(data.chelsea())[0]  # ('n02124075', 'Egyptian_cat', 0.9...)
    ```
    """
    model = _model(preset)
    size = model.inputs[0].shape[1] or 224
    probs = model.predict(_as_batch(image, size), verbose=0)
    return decode_predictions(probs, top)[0]
