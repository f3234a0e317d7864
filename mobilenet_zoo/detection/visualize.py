"""Draw detections on images and save a PNG grid."""

from __future__ import annotations

import os
from collections.abc import Sequence

import keras
import numpy as np

_COLOURS = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
            (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212)]


def draw_detections(
    images: np.ndarray,
    detections: dict,
    class_names: Sequence[str],
    bounding_box_format: str,
    path: str | os.PathLike,
    min_score: float = 0.3,
    columns: int = 4,
) -> str:
    """Saves a grid of ``images`` (pixels 0-255) with boxes above ``min_score``."""
    from PIL import Image, ImageDraw

    images = np.asarray(images)
    n, h, w = images.shape[:3]
    boxes = keras.ops.convert_to_numpy(
        keras.utils.bounding_boxes.convert_format(
            np.asarray(detections["boxes"], np.float32), source=bounding_box_format,
            target="xyxy", height=h, width=w,
        )
    )
    rows = -(-n // columns)
    grid = Image.new("RGB", (columns * w, rows * h))
    for i in range(n):
        tile = Image.fromarray(np.clip(images[i], 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(tile)
        for box, cls, score in zip(boxes[i], detections["classes"][i], detections["scores"][i]):
            if cls < 0 or score < min_score:
                continue
            colour = _COLOURS[int(cls) % len(_COLOURS)]
            draw.rectangle([float(v) for v in box], outline=colour, width=2)
            draw.text((float(box[0]) + 2, float(box[1]) + 1), f"{class_names[int(cls)]} {score:.2f}", fill=colour)
        grid.paste(tile, ((i % columns) * w, (i // columns) * h))
    os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
    grid.save(path)
    return os.fspath(path)
