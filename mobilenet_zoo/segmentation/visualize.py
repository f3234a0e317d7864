"""PNG overlays of predicted (and true) masks on images."""

from __future__ import annotations

import os

import numpy as np


def _palette(n: int) -> np.ndarray:
    rng = np.random.default_rng(7)
    colours = rng.integers(40, 255, (max(n, 1), 3))
    colours[0] = 0  # background stays the image
    return colours.astype(np.float32)


def save_overlays(images, predicted, path, truth=None, alpha: float = 0.5, columns: int = 4) -> str:
    """Saves a grid: each image with its predicted mask blended in (and truth below)."""
    from PIL import Image

    images = np.asarray(images, np.float32)
    predicted = np.asarray(predicted)
    n, h, w = predicted.shape[:3]
    n = min(n, 8)
    pal = _palette(int(predicted.max()) + 1 if predicted.size else 1)
    if truth is not None:
        pal = _palette(max(int(predicted.max()), int(np.where(truth == 255, 0, truth).max())) + 1)

    def blend(img, mask):
        colour = pal[np.clip(mask, 0, len(pal) - 1)]
        on = (mask > 0) & (mask != 255)
        out = img.copy()
        out[on] = (1 - alpha) * img[on] + alpha * colour[on]
        return out.clip(0, 255).astype(np.uint8)

    rows_per = 2 if truth is not None else 1
    grid = Image.new("RGB", (columns * w, (-(-n // columns)) * h * rows_per))
    for i in range(n):
        x0, y0 = (i % columns) * w, (i // columns) * h * rows_per
        grid.paste(Image.fromarray(blend(images[i], predicted[i])), (x0, y0))
        if truth is not None:
            grid.paste(Image.fromarray(blend(images[i], np.asarray(truth[i]))), (x0, y0 + h))
    os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
    grid.save(path)
    return os.fspath(path)
