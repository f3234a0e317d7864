"""Image files in one place for the CLIs: decode to uint8 RGB the way a person sees them.

- EXIF orientation applied (phone photos stand upright);
- 16-bit and 32-bit grayscale scaled to 8 bits (PIL's ``convert("RGB")``
  saturates them to white);
- palette and alpha images converted (transparent pixels on white);
- an unreadable or truncated file raises ``ImageError`` naming the file;
- an image over the pixel limit raises ``ImageTooLarge`` (an ``ImageError``) naming
  the limit, before its pixels are decoded.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# The image files the CLIs and the folder readers take (PIL opens each of them).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")

class ImageError(ValueError):
    """A file that is not a readable image (the message names it and why)."""


class ImageTooLarge(ImageError):
    """An image with more pixels than the limit (PIL's decompression-bomb guard)."""


def load_rgb(path: str | os.PathLike, max_pixels: int | None = None) -> np.ndarray:
    """The image at ``path`` as an ``(H, W, 3)`` uint8 RGB array.

    Args:
        max_pixels: refuse (``ImageTooLarge``) an image of more pixels, read from its
            header before decoding; 0 = no limit. ``None`` keeps PIL's own guard:
            ``Image.MAX_IMAGE_PIXELS`` (PIL docs, ``Image.open``: a
            ``DecompressionBombWarning`` above it, a ``DecompressionBombError``
            above twice it).
    """
    path = os.fspath(path)
    try:
        with warnings.catch_warnings():
            if max_pixels is not None:  # our check below replaces PIL's
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = _open(path, max_pixels)
        with img:
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
    except Image.DecompressionBombError as err:  # PIL's own guard (max_pixels None)
        raise ImageTooLarge(f"{path}: over PIL's decompression-bomb limit, twice "
                            f"Image.MAX_IMAGE_PIXELS = {Image.MAX_IMAGE_PIXELS:,} ({err})") from err
    except FileNotFoundError as err:
        raise ImageError(f"{path}: no such file") from err
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise ImageError(f"{path}: not a readable image ({err})") from err


def _open(path: str, max_pixels: int | None) -> Image.Image:
    """``Image.open`` (header only) with ``max_pixels`` checked on the header's size."""
    if max_pixels is None:
        return Image.open(path)
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # PIL's check off: ours, exact, follows
    try:
        img = Image.open(path)
    finally:
        Image.MAX_IMAGE_PIXELS = saved
    width, height = img.size
    if max_pixels and width * height > max_pixels:
        img.close()
        raise ImageTooLarge(f"{path}: {width}x{height} = {width * height:,} pixels, over the limit "
                            f"of {max_pixels:,} (PIL's decompression-bomb guard, "
                            "Image.MAX_IMAGE_PIXELS)")
    return img
