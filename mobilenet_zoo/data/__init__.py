"""Data: embedded real datasets (no download), TFDS helpers, class names."""

from mobilenet_zoo.data.embedded import digits, lfw_faces
from mobilenet_zoo.data.tfds_utils import require_tfds_data

__all__ = ["digits", "lfw_faces", "require_tfds_data"]
