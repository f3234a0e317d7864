"""Readers for the dataset layouts users have, their label checks, and layout detection.

Detection: COCO JSON (``coco``), Pascal VOC (``voc``), YOLO (``yolo``); classification:
one sub-folder per class (``folders``); segmentation: images + PNG masks (``masks``).
``resolve_format`` finds the layout of a folder (``format=`` forces it). The parsers
(``parse_*``) and ``check_labels`` are plain Python; the ``read_*`` functions build the
tf.data sources the task pipelines take and load TensorFlow on first use (``readers``).

```python
from mobilenet_zoo.data.layouts import read_detection

train = read_detection("my_photos", split="train")  # LabelError lists every bad label
print(train.class_names, train.notes)
batches = model.preprocessor.pipeline(train, batch_size=8, training=True)
```
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mobilenet_zoo.data.layouts.checks import CheckedSet, LabelError, check_labels
from mobilenet_zoo.data.layouts.coco import parse_coco
from mobilenet_zoo.data.layouts.folders import ImageFolder, parse_folders
from mobilenet_zoo.data.layouts.masks import MaskSet, parse_masks
from mobilenet_zoo.data.layouts.records import (
    CLASSIFICATION_FORMATS,
    DETECTION_FORMATS,
    FORMATS,
    SEGMENTATION_FORMATS,
    LabelledSet,
    Problem,
    hashed_split,
)
from mobilenet_zoo.data.layouts.sniff import found_formats, resolve_format
from mobilenet_zoo.data.layouts.voc import parse_voc
from mobilenet_zoo.data.layouts.yolo import parse_yolo
from mobilenet_zoo.lazy import lazy_dir, lazy_getattr

if TYPE_CHECKING:
    from mobilenet_zoo.data.layouts.readers import (
        ClassificationSource,
        detection_source,
        read_coco,
        read_detection,
        read_folders,
        read_masks,
        read_voc,
        read_yolo,
    )

_READERS = ("ClassificationSource", "detection_source", "read_coco", "read_detection", "read_folders",
            "read_masks", "read_voc", "read_yolo")
__getattr__ = lazy_getattr(__name__, dict.fromkeys(_READERS, "mobilenet_zoo.data.layouts.readers"))

__all__ = [
    "CLASSIFICATION_FORMATS", "DETECTION_FORMATS", "FORMATS", "SEGMENTATION_FORMATS",
    "CheckedSet", "ImageFolder", "LabelError", "LabelledSet", "MaskSet", "Problem",
    "check_labels", "found_formats", "hashed_split", "parse_coco", "parse_folders", "parse_masks",
    "parse_voc", "parse_yolo", "resolve_format",
    "ClassificationSource", "detection_source", "read_coco", "read_detection", "read_folders",
    "read_masks", "read_voc", "read_yolo",
]  # fmt: skip
__dir__ = lazy_dir(globals())
