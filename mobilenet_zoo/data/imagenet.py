"""The 1000 ImageNet classes of the published MobileNet v1 classifiers (keras.applications
order; TF-slim's 1001-class heads add a background class 0), with no download."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

_CLASSES_FILE = Path(__file__).parent / "imagenet_classes.txt"


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
