"""Image files in one place for the CLIs: decode to uint8 RGB the way a person sees them.

- EXIF orientation applied (phone photos stand upright);
- 16-bit and 32-bit grayscale scaled to 8 bits (PIL's ``convert("RGB")``
  saturates them to white);
- palette and alpha images converted (transparent pixels on white);
- an unreadable or truncated file raises ``ImageError`` naming the file.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError


class ImageError(ValueError):
    """A file that is not a readable image (the message names it and why)."""


def load_rgb(path: str | os.PathLike) -> np.ndarray:
    """The image at ``path`` as an ``(H, W, 3)`` uint8 RGB array."""
    path = os.fspath(path)
    try:
        with Image.open(path) as img:
            img.load()  # decode now: truncated files fail here, not later
            img = ImageOps.exif_transpose(img)
            if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                arr = np.asarray(img, np.float64)
                top = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
                arr = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
                return np.stack([arr] * 3, -1)
            if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
                rgba = img.convert("RGBA")
                white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
            return np.asarray(img.convert("RGB"))
    except FileNotFoundError as err:
        raise ImageError(f"{path}: no such file") from err
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise ImageError(f"{path}: not a readable image ({err})") from err
