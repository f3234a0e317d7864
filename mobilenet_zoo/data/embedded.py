"""Small real datasets that pip packages carry, so default runs need no download.

* ``lfw_faces``: scikit-image's ``lfw_subset`` (100 faces + 100 non-faces, 25x25,
  from Labeled Faces in the Wild).
* ``digits``: scikit-learn's ``load_digits`` (1797 handwritten 8x8 digits).

Both return uint8 RGB images (N, H, W, 3), int labels, class names, and a
deterministic train/validation split.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class ImageSet:
    """Images (uint8 N x H x W x 3), integer labels and class names, split in two."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    class_names: list[str]
    name: str


def _split(x: np.ndarray, y: np.ndarray, val_fraction: float, seed: int):
    if not 0 < val_fraction < 1:
        raise ValueError(f"`val_fraction` must be in (0, 1), got {val_fraction}.")
    order = np.random.default_rng(seed).permutation(len(x))
    n_val = int(round(len(x) * val_fraction))
    val, train = order[:n_val], order[n_val:]
    return x[train], y[train], x[val], y[val]


def _to_rgb_uint8(images: np.ndarray, scale: float) -> np.ndarray:
    images = np.clip(np.asarray(images, np.float64) * scale, 0, 255).round().astype(np.uint8)
    return np.repeat(images[..., None], 3, axis=-1)


def lfw_faces(val_fraction: float = 0.3, seed: int = 0) -> ImageSet:
    """scikit-image ``lfw_subset``: face (1) vs non-face (0), 25x25 grayscale as RGB."""
    from skimage.data import lfw_subset

    images = lfw_subset()  # (200, 25, 25) floats in [0, 1]; first 100 are faces
    labels = np.array([1] * 100 + [0] * 100, dtype=np.int64)
    parts = _split(_to_rgb_uint8(images, 255.0), labels, val_fraction, seed)
    return ImageSet(*parts, class_names=["non-face", "face"], name="skimage lfw_subset")


def digits(val_fraction: float = 0.3, seed: int = 0) -> ImageSet:
    """scikit-learn ``load_digits``: 10 classes, 8x8 grayscale (0..16) as RGB."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    parts = _split(_to_rgb_uint8(bunch.images, 255.0 / 16.0), bunch.target, val_fraction, seed)
    return ImageSet(*parts, class_names=[str(d) for d in range(10)], name="sklearn digits")
