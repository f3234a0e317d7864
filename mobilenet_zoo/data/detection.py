"""Detection input pipelines: TFDS coco/2017 and voc/2007, COCO-format folders.

Every source yields the same example dict: ``image`` (uint8 HxWx3), ``boxes``
(normalised yxyx), ``classes`` (0-based int32), ``is_crowd``, ``image_id`` and
``original_size``. ``detection_pipeline`` turns it into batches of
``(images, {"boxes", "classes", ...})`` for ``SSD.fit``: TF OD API augmentation
(random horizontal flip, SSD random crop), resize, boxes padded with -1. All of
it runs in tf.data graph ops: no per-example Python.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import keras
import numpy as np

from mobilenet_zoo.data.coco import COCO_CATEGORY_IDS, COCO_CLASS_NAMES  # noqa: F401
from mobilenet_zoo.data.constants import MAX_BOXES
from mobilenet_zoo.data.seeds import fold, with_example_seeds
from mobilenet_zoo.data.tfds_utils import load_split
from mobilenet_zoo.tensorflow_support import import_tensorflow

tf = import_tensorflow("detection data (tf.data)")

VOC_CLASS_NAMES = [
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
]  # fmt: skip



class DetectionSource:
    """A dataset of example dicts plus what evaluation needs to know about it."""

    def __init__(self, dataset, class_names, category_ids, description, num_examples=None):
        self.dataset = dataset
        self.class_names = list(class_names)
        self.category_ids = list(category_ids)
        self.description = description
        self.num_examples = num_examples


# ----------------------------------------------------------------- sources
def _from_tfds(example, labels_key="label"):
    image = example["image"]
    objects = example["objects"]
    size = tf.shape(image)[:2]
    boxes = tf.reshape(tf.cast(objects["bbox"], tf.float32), (-1, 4))
    labels = tf.cast(objects[labels_key], tf.int32)
    crowd = tf.cast(objects.get("is_crowd", tf.zeros_like(labels)), tf.int32)
    # Real TFDS records agree; tfds.testing.mock_data's random fields may not.
    n = tf.reduce_min([tf.shape(boxes)[0], tf.shape(labels)[0], tf.shape(crowd)[0]])
    return {
        "image": image,
        "boxes": boxes[:n],
        "classes": labels[:n],
        "is_crowd": crowd[:n],
        "image_id": tf.cast(example.get("image/id", tf.constant(-1, tf.int64)), tf.int64),
        "original_size": tf.cast(size, tf.int32),
    }


def tfds_coco(split: str = "train", data_dir: str | None = None, check: bool = True) -> DetectionSource:
    """TFDS ``coco/2017`` (labels 0..79; evaluation maps them back to COCO ids)."""
    ds = load_split("coco/2017", split, data_dir, check=check, shuffle_files=split == "train")
    return DetectionSource(
        ds.map(_from_tfds, num_parallel_calls=tf.data.AUTOTUNE),
        COCO_CLASS_NAMES, COCO_CATEGORY_IDS, f"TFDS coco/2017 {split}",
    )


def tfds_voc(split: str = "train", data_dir: str | None = None, check: bool = True) -> DetectionSource:
    """TFDS ``voc/2007`` (20 classes; ``is_difficult`` objects marked crowd for eval)."""
    ds = load_split("voc/2007", split, data_dir, check=check, shuffle_files=split == "train")

    def convert(example):
        out = _from_tfds(example)
        difficult = example["objects"].get("is_difficult")
        if difficult is not None:
            n = tf.minimum(tf.shape(out["classes"])[0], tf.shape(difficult)[0])
            out = {**out, "boxes": out["boxes"][:n], "classes": out["classes"][:n],
                   "is_crowd": tf.cast(difficult[:n], tf.int32)}
        return out

    return DetectionSource(
        ds.map(convert, num_parallel_calls=tf.data.AUTOTUNE),
        VOC_CLASS_NAMES, list(range(1, 21)), f"TFDS voc/2007 {split}",
    )


def coco_json(annotation_file: str | os.PathLike, image_dir: str | os.PathLike | None = None) -> DetectionSource:
    """A COCO-format folder (``annotations.json`` + images) as a detection source.

    Boxes are clipped to the image, degenerate or non-finite ones dropped; the
    image sizes are read from the image files (a wrong ``width`` / ``height`` in
    the JSON is corrected and counted); the counts are in ``source.stats``.
    Malformed files, unknown ids and missing images fail here with a message
    naming them, before any training starts.
    """
    from PIL import Image

    annotation_file = Path(annotation_file)
    image_dir = Path(image_dir) if image_dir else annotation_file.parent / "images"
    try:
        coco = json.loads(annotation_file.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{annotation_file} is not a readable COCO JSON file: {err}") from err
    missing_keys = [k for k in ("images", "annotations", "categories") if k not in coco]
    if missing_keys:
        raise ValueError(f"{annotation_file} has no {missing_keys}: a COCO detection file needs "
                         "'images', 'annotations' and 'categories'.")
    categories = sorted(c["id"] for c in coco["categories"])
    names = {c["id"]: c["name"] for c in coco["categories"]}
    label_of = {cid: i for i, cid in enumerate(categories)}
    per_image = {img["id"]: [] for img in coco["images"]}
    clipped = dropped = corrected = 0
    sizes = {}
    missing = []
    for img in coco["images"]:
        path = image_dir / img["file_name"]
        try:
            with Image.open(path) as opened:  # reads the header only
                w, h = opened.size
        except FileNotFoundError:
            missing.append(str(path))
            continue
        except OSError as err:
            raise ValueError(f"{path} (image {img['id']} of {annotation_file}) is not a readable "
                             f"image: {err}") from err
        if (img.get("height"), img.get("width")) != (h, w):
            corrected += 1
        sizes[img["id"]] = (h, w)
    if missing:
        raise ValueError(f"{len(missing)} image file(s) of {annotation_file} are missing, e.g. "
                         f"{missing[:3]}; image_dir is {image_dir}.")
    for ann in coco["annotations"]:
        if ann["category_id"] not in label_of:
            raise ValueError(
                f"Annotation {ann.get('id')} has category_id {ann['category_id']}, not among "
                f"the categories {categories} of {annotation_file}."
            )
        if ann.get("image_id") not in sizes:
            raise ValueError(f"Annotation {ann.get('id')} refers to image_id {ann.get('image_id')!r}, "
                             f"which is not in the 'images' of {annotation_file}.")
        h, w = sizes[ann["image_id"]]
        x, y, bw, bh = (float(v) for v in ann["bbox"])
        if not all(np.isfinite([x, y, bw, bh])):
            dropped += 1
            continue
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + bw, w), min(y + bh, h)
        if (x0, y0, x1, y1) != (x, y, x + bw, y + bh):
            clipped += 1
        if x1 - x0 <= 0 or y1 - y0 <= 0:
            dropped += 1
            continue
        per_image[ann["image_id"]].append(
            ([y0 / h, x0 / w, y1 / h, x1 / w], label_of[ann["category_id"]], ann.get("iscrowd", 0))
        )
    images = coco["images"]
    n = max([len(v) for v in per_image.values()] + [1])
    boxes = np.full((len(images), n, 4), -1, np.float32)
    classes = np.full((len(images), n), -1, np.int32)
    crowd = np.zeros((len(images), n), np.int32)
    for i, img in enumerate(images):
        for j, (b, c, iscrowd) in enumerate(per_image[img["id"]]):
            boxes[i, j], classes[i, j], crowd[i, j] = b, c, iscrowd
    table = {
        "path": [str(image_dir / img["file_name"]) for img in images],
        "boxes": boxes, "classes": classes, "is_crowd": crowd,
        "image_id": np.array([img["id"] for img in images], np.int64),
    }

    def load(row):
        image = tf.io.decode_image(tf.io.read_file(row["path"]), channels=3, expand_animations=False)
        keep = row["classes"] >= 0
        return {
            "image": image,
            "boxes": tf.boolean_mask(row["boxes"], keep),
            "classes": tf.boolean_mask(row["classes"], keep),
            "is_crowd": tf.boolean_mask(row["is_crowd"], keep),
            "image_id": row["image_id"],
            "original_size": tf.shape(image)[:2],
        }

    ds = tf.data.Dataset.from_tensor_slices(table).map(load, num_parallel_calls=tf.data.AUTOTUNE)
    source = DetectionSource(
        ds, [names[c] for c in categories], categories, f"COCO-format {annotation_file}",
        num_examples=len(images),
    )
    source.stats = {"boxes_clipped": clipped, "boxes_dropped": dropped,
                    "image_sizes_corrected": corrected}
    return source


# ----------------------------------------------------------------- augmentation
def _uniform(shape, seed, minval=0, maxval=None, dtype=None):
    """``tf.random.uniform`` for an int op seed or ``None`` (stateful, as before), the
    stateless op for a per-example ``[2]`` seed tensor (``data.seeds``: reproducible)."""
    dtype = dtype or tf.float32
    if seed is None or isinstance(seed, int):
        return tf.random.uniform(shape, minval, maxval, dtype, seed=seed)
    return tf.random.stateless_uniform(shape, seed, minval, maxval, dtype)


def random_horizontal_flip(image, boxes, seed=None):
    """Flips image and normalised yxyx boxes together with probability 1/2.

    ``seed``: an int (stateful op seed) or a per-example ``[2]`` stateless seed."""
    flip = _uniform([], seed) < 0.5
    image = tf.cond(flip, lambda: tf.image.flip_left_right(image), lambda: image)
    flipped = tf.stack([boxes[:, 0], 1 - boxes[:, 3], boxes[:, 2], 1 - boxes[:, 1]], axis=1)
    return image, tf.where(flip, flipped, boxes)


# TF OD API ssd_random_crop: min_object_covered (and overlap threshold) per
# operation, aspect ratio [0.5, 2], area [0.1, 1], and one "keep the image" option.
SSD_CROP_MIN_COVERED = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0)


def ssd_random_crop(image, boxes, classes, is_crowd, seed=None):
    """SSD random crop: a patch covering at least one of the listed fractions of a
    box, boxes kept when their centre falls inside (SSD paper s.2.2), then clipped.

    ``seed``: an int (stateful op seed) or a per-example ``[2]`` stateless seed."""
    stateless = not (seed is None or isinstance(seed, int))
    choice = _uniform([], fold(seed, 1) if stateless else seed, 0, len(SSD_CROP_MIN_COVERED) + 1, tf.int32)

    def crop():
        min_covered = tf.gather(tf.constant(SSD_CROP_MIN_COVERED), tf.minimum(choice, 6))
        options = dict(min_object_covered=min_covered, aspect_ratio_range=(0.5, 2.0),
                       area_range=(0.1, 1.0), max_attempts=100, use_image_if_no_bounding_boxes=True)
        bounding_boxes = tf.clip_by_value(boxes, 0, 1)[None]
        if stateless:
            begin, size, window = tf.image.stateless_sample_distorted_bounding_box(
                tf.shape(image), bounding_boxes, seed=fold(seed, 2), **options)
        else:
            begin, size, window = tf.image.sample_distorted_bounding_box(
                tf.shape(image), bounding_boxes=bounding_boxes, seed=seed, **options)
        win = window[0, 0]
        cropped = tf.slice(image, begin, size)
        cy = (boxes[:, 0] + boxes[:, 2]) / 2
        cx = (boxes[:, 1] + boxes[:, 3]) / 2
        keep = (cy > win[0]) & (cy < win[2]) & (cx > win[1]) & (cx < win[3])
        scale = tf.stack([win[2] - win[0], win[3] - win[1]] * 2)
        offset = tf.stack([win[0], win[1]] * 2)
        new = tf.clip_by_value((boxes - offset) / scale, 0.0, 1.0)
        return (cropped, tf.boolean_mask(new, keep), tf.boolean_mask(classes, keep),
                tf.boolean_mask(is_crowd, keep))

    def keep():
        return image, boxes, classes, is_crowd

    return tf.cond(choice < len(SSD_CROP_MIN_COVERED), crop, keep)


def _resize(image, boxes, size: tuple[int, int], mode: str):
    """``image`` to ``size``, normalised yxyx ``boxes`` with it: TF 1.x ``resize_images``
    (bilinear, no half-pixel centres: ``detection.preprocessor.resize_bilinear``, the
    TF OD API's ``fixed_shape_resizer``); ``"pad"`` keeps the aspect ratio and pads the
    bottom and right with zeros (face-api.js ``padToSquare``)."""
    h, w = size
    resize = tf.compat.v1.image.resize  # align_corners=False, half_pixel_centers=False
    if mode == "stretch":
        return resize(image, (h, w), method=tf.image.ResizeMethod.BILINEAR), boxes
    # As DetectionPreprocessor.resize: pad to the input's aspect ratio, then resize the frame.
    shape = tf.shape(image)[:2]
    hf, wf = tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)
    scale = tf.maximum(hf / h, wf / w)
    frame_h = tf.maximum(shape[0], tf.cast(tf.round(scale * h), tf.int32))
    frame_w = tf.maximum(shape[1], tf.cast(tf.round(scale * w), tf.int32))
    image = tf.image.pad_to_bounding_box(image, 0, 0, frame_h, frame_w)
    image = resize(image, (h, w), method=tf.image.ResizeMethod.BILINEAR)
    fy = hf / tf.cast(frame_h, tf.float32)
    fx = wf / tf.cast(frame_w, tf.float32)
    return image, boxes * tf.stack([fy, fx, fy, fx])


def sanitize_boxes(boxes, classes, is_crowd, min_size=1e-3):
    """Clips normalised boxes to [0, 1] and drops degenerate ones (never NaN)."""
    boxes = tf.clip_by_value(tf.where(tf.math.is_finite(boxes), boxes, 0.0), 0.0, 1.0)
    ok = ((boxes[:, 2] - boxes[:, 0]) > min_size) & ((boxes[:, 3] - boxes[:, 1]) > min_size)
    return tf.boolean_mask(boxes, ok), tf.boolean_mask(classes, ok), tf.boolean_mask(is_crowd, ok)


def _pad(x, n, value):
    x = x[:n]
    pad = [[0, n - tf.shape(x)[0]]] + [[0, 0]] * (len(x.shape) - 1)
    return tf.pad(x, pad, constant_values=value)


def detection_pipeline(
    source: DetectionSource | tf.data.Dataset,
    image_size: int | tuple[int, int] = 300,
    batch_size: int = 24,
    training: bool = False,
    bounding_box_format: str = "rel_yxyx",
    augment: bool = True,
    max_boxes: int = MAX_BOXES,
    shuffle_buffer: int = 1000,
    drop_crowd_in_training: bool = True,
    seed: int | None = None,
    cache: bool = False,
    resize_mode: str = "stretch",
) -> tf.data.Dataset:
    """Batches of ``(images float32 [0, 255], y)`` for ``SSD.fit`` / ``evaluate_coco``.

    Prefer ``model.preprocessor.pipeline(source, ...)``, which passes the
    model's own image size and box format. ``y`` has ``boxes (B, max_boxes, 4)`` in ``bounding_box_format`` (pixels of the
    resized image for absolute formats) and ``classes (B, max_boxes)``, padded
    with -1, plus ``is_crowd``, ``image_id`` and ``original_size`` for evaluation.
    Training adds random horizontal flip and SSD random crop (TF OD API
    ``ssd_mobilenet_v1_coco`` data_augmentation_options) and drops crowd boxes.
    Images are resized as the model's preprocessor resizes at ``predict`` (``resize``):
    ``"stretch"`` to ``image_size`` or ``"pad"`` (aspect kept, padded bottom-right),
    both with TF 1.x bilinear (no half-pixel centres), the TF OD API's resize.
    """
    if resize_mode not in ("stretch", "pad"):
        raise ValueError(f"`resize_mode` must be 'stretch' or 'pad', got {resize_mode!r}.")
    ds = source.dataset if isinstance(source, DetectionSource) else source
    h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
    if cache:
        ds = ds.cache()
    if training:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
        ds = with_example_seeds(ds, seed)  # same --seed, same augmentation (data/seeds.py)
    else:
        ds = ds.map(lambda ex: (ex, tf.zeros([2], tf.int64)))

    def prepare(ex, example_seed):
        image, boxes, classes, crowd = ex["image"], ex["boxes"], ex["classes"], ex["is_crowd"]
        boxes, classes, crowd = sanitize_boxes(boxes, classes, crowd)
        if training and drop_crowd_in_training:
            keep = crowd == 0
            boxes, classes, crowd = (tf.boolean_mask(t, keep) for t in (boxes, classes, crowd))
        if training and augment:
            image, boxes = random_horizontal_flip(image, boxes, fold(example_seed, 0))
            image, boxes, classes, crowd = ssd_random_crop(image, boxes, classes, crowd, example_seed)
            boxes, classes, crowd = sanitize_boxes(boxes, classes, crowd)
        image, boxes = _resize(tf.cast(image, tf.float32), boxes, (h, w), resize_mode)
        image = tf.ensure_shape(image, (h, w, 3))
        out_boxes = keras.utils.bounding_boxes.convert_format(
            boxes, source="rel_yxyx", target=bounding_box_format, height=h, width=w
        )
        y = {
            "boxes": tf.ensure_shape(_pad(out_boxes, max_boxes, -1.0), (max_boxes, 4)),
            "classes": tf.ensure_shape(_pad(classes, max_boxes, -1), (max_boxes,)),
            "is_crowd": tf.ensure_shape(_pad(crowd, max_boxes, 0), (max_boxes,)),
            "image_id": ex["image_id"],
            "original_size": ex["original_size"],
        }
        return image, y

    ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size, drop_remainder=training).prefetch(tf.data.AUTOTUNE)
