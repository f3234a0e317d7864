"""ImageNet helpers: class names shipped in the package, decode, one-call classify."""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

import numpy as np

from mobilenet_zoo import presets
from mobilenet_zoo.classification.classifier import MobileNetClassifier
from mobilenet_zoo.data.imagenet import class_info, class_names, decode_predictions  # noqa: F401
from mobilenet_zoo.fold import fold_batch_norm
from mobilenet_zoo.images import load_rgb

DEFAULT_PRESET = presets.IMAGENET
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
