"""The layouts as the tf.data sources the task pipelines take (a TensorFlow module).

- ``read_detection`` (and ``read_coco`` / ``read_voc`` / ``read_yolo``): a checked
  ``DetectionSource`` for ``detection_pipeline`` / ``model.preprocessor.pipeline``;
- ``read_folders``: a ``ClassificationSource`` of ``(image uint8, label)`` pairs for the
  classifier preprocessor's ``pipeline``;
- ``read_masks``: a ``SegmentationSource`` for ``segmentation_pipeline``.

Each source carries ``notes`` (a hashed validation split, how classes were named, what
``skip_bad_labels`` dropped), also logged at INFO on ``mobilenet_zoo.data.layouts``.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np

from mobilenet_zoo.data.detection import DetectionSource
from mobilenet_zoo.data.layouts.checks import CheckedSet, check_labels
from mobilenet_zoo.data.layouts.coco import parse_coco
from mobilenet_zoo.data.layouts.folders import parse_folders
from mobilenet_zoo.data.layouts.masks import parse_masks
from mobilenet_zoo.data.layouts.records import VAL_FRACTION
from mobilenet_zoo.data.layouts.sniff import resolve_format
from mobilenet_zoo.data.layouts.voc import parse_voc
from mobilenet_zoo.data.layouts.yolo import parse_yolo
from mobilenet_zoo.data.segmentation import VOC_CLASSES, SegmentationSource
from mobilenet_zoo.tensorflow_support import import_tensorflow

tf = import_tensorflow("dataset layouts (tf.data)")
log = logging.getLogger("mobilenet_zoo.data.layouts")
PARSERS = {"coco": parse_coco, "voc": parse_voc, "yolo": parse_yolo}


def _tell(notes: list[str], description: str) -> None:
    for note in notes:
        log.info("%s: %s", description, note)


def read_detection(
    root: str | os.PathLike,
    format: str | None = None,
    split: str = "train",
    skip_bad_labels: bool = False,
    require_every_class: bool | None = None,
    decode_images: bool = True,
    val_fraction: float = VAL_FRACTION,
    **parse_kwargs: Any,
) -> DetectionSource:
    """The ``split`` of the detection data at ``root`` (COCO JSON, Pascal VOC or YOLO,
    detected, or forced with ``format``), labels checked (``checks.check_labels``: raises
    ``LabelError`` listing every problem unless ``skip_bad_labels``).

    ``require_every_class`` (default: for ``train`` only): a class with no box is an error.
    ``parse_kwargs`` go to the layout's parser (``annotation_file=`` / ``image_dir=`` for
    COCO, ``class_names=`` for VOC). The source's ``class_names`` are in the data's order;
    ``notes``, ``stats`` and ``problems`` say what was made, clipped or dropped.
    """
    fmt = resolve_format(root, format, "detection")
    labelled = PARSERS[fmt](root, split, val_fraction=val_fraction, **parse_kwargs)
    checked = check_labels(labelled, skip_bad_labels, decode_images=decode_images,
                           require_every_class=split == "train" if require_every_class is None
                           else require_every_class)
    return detection_source(checked)


def read_coco(root: str | os.PathLike, split: str = "train", **kwargs: Any) -> DetectionSource:
    """``read_detection`` of a COCO JSON layout (``layouts.coco``)."""
    return read_detection(root, "coco", split, **kwargs)


def read_voc(root: str | os.PathLike, split: str = "train", **kwargs: Any) -> DetectionSource:
    """``read_detection`` of a Pascal VOC layout (``layouts.voc``)."""
    return read_detection(root, "voc", split, **kwargs)


def read_yolo(root: str | os.PathLike, split: str = "train", **kwargs: Any) -> DetectionSource:
    """``read_detection`` of a YOLO layout (``layouts.yolo``)."""
    return read_detection(root, "yolo", split, **kwargs)


def _decode(path):
    return tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)


def detection_source(checked: CheckedSet) -> DetectionSource:
    """A checked split as a ``DetectionSource``: example dicts with ``image`` (uint8), ``boxes``
    (normalised yxyx), ``classes`` (0-based), ``is_crowd`` (crowd or VOC difficult),
    ``difficult``, ``image_id`` and ``original_size``, in the data's image order."""
    images = checked.images
    if not images:
        raise ValueError(f"The {checked.description} has no image to read.")
    n = max([len(i.classes) for i in images] + [1])

    def padded(attr: str, dtype, fill, shape=()):
        out = np.full((len(images), n, *shape), fill, dtype)
        for row, image in enumerate(images):
            values = getattr(image, attr)
            out[row, : len(values)] = values
        return out

    table = {
        "path": [str(i.path) for i in images],
        "boxes": padded("boxes", np.float32, -1.0, (4,)),
        "classes": padded("classes", np.int32, -1),
        "is_crowd": padded("is_crowd", np.int32, 0),
        "difficult": padded("difficult", np.int32, 0),
        "image_id": np.array([i.image_id for i in images], np.int64),
    }

    def load(row):
        image = _decode(row["path"])
        keep = row["classes"] >= 0
        out = {k: tf.boolean_mask(row[k], keep) for k in ("boxes", "classes", "is_crowd", "difficult")}
        return {"image": image, **out, "image_id": row["image_id"], "original_size": tf.shape(image)[:2]}

    ds = tf.data.Dataset.from_tensor_slices(table).map(load, num_parallel_calls=tf.data.AUTOTUNE)
    source = DetectionSource(ds, checked.class_names, checked.category_ids, checked.description,
                             num_examples=len(images))
    source.notes, source.stats, source.problems = checked.notes, checked.stats, checked.problems
    source.format, source.split, source.checked = checked.format, checked.split, checked
    _tell(checked.notes, checked.description)
    return source


class ClassificationSource:
    """``(image uint8 HxWx3, label int32)`` pairs of a class-folder split, and its class names."""

    def __init__(self, dataset, class_names, description, num_examples, notes):
        self.dataset = dataset
        self.class_names = list(class_names)
        self.description = description
        self.num_examples = num_examples
        self.notes = notes


def read_folders(root: str | os.PathLike, split: str = "train", skip_bad_labels: bool = False,
                 **kwargs: Any) -> ClassificationSource:
    """The ``split`` of a class-folder layout (``layouts.folders``), checked."""
    resolve_format(root, "folders", "classification")
    data = parse_folders(root, split, skip_bad_labels=skip_bad_labels, **kwargs)
    ds = tf.data.Dataset.from_tensor_slices(([str(p) for p in data.paths], np.array(data.labels, np.int32)))
    ds = ds.map(lambda p, y: (_decode(p), y), num_parallel_calls=tf.data.AUTOTUNE)
    _tell(data.notes, data.description)
    return ClassificationSource(ds, data.class_names, data.description, len(data.paths), data.notes)


def _palette_indices(path):
    from PIL import Image  # TF decodes palette PNGs to RGB, not to class indices

    return np.asarray(Image.open(path.decode()), np.uint8)[..., None]


def read_masks(root: str | os.PathLike, split: str = "train", skip_bad_labels: bool = False,
               **kwargs: Any) -> SegmentationSource:
    """The ``split`` of an images + PNG masks layout (``layouts.masks``), checked; 255 stays
    the ignore label. ``source.num_classes`` counts the classes, background included."""
    resolve_format(root, "masks", "segmentation")
    data = parse_masks(root, split, skip_bad_labels=skip_bad_labels, **kwargs)
    names = data.class_names
    if names is None:
        voc = data.voc and data.num_classes <= len(VOC_CLASSES)
        names = VOC_CLASSES if voc else ["background"] + [f"class_{i}" for i in range(1, data.num_classes)]
        data.notes.append(f"classes: no labels.txt, named {', '.join(names[:5])}{', ...' if len(names) > 5 else ''}")

    def load(image_path, mask_path):
        mask = tf.numpy_function(_palette_indices, [mask_path], tf.uint8)
        mask.set_shape((None, None, 1))
        return {"image": _decode(image_path), "mask": mask}

    ds = tf.data.Dataset.from_tensor_slices((tf.constant([str(p) for p in data.images], tf.string),
                                             tf.constant([str(p) for p in data.masks], tf.string)))
    source = SegmentationSource(ds.map(load, num_parallel_calls=tf.data.AUTOTUNE), names,
                                f"image + mask folders {data.root} ({split}, {len(data.images)} images)")
    source.notes, source.num_classes, source.num_examples = data.notes, len(names), len(data.images)
    _tell(data.notes, source.description)
    return source
