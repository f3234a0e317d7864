"""Segmentation data: TFDS oxford_iiit_pet, PASCAL VOC 2012 folders, embedded masks.

Every source yields ``{"image": uint8 HxWx3, "mask": uint8 HxWx1}``;
``segmentation_pipeline`` checks and augments them consistently (flip, random
scale, crop; masks resized by nearest neighbour, padding with the ignore label).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mobilenet_zoo.data import digits_on_photos
from mobilenet_zoo.data.constants import IGNORE_LABEL
from mobilenet_zoo.data.seeds import fold, with_example_seeds
from mobilenet_zoo.data.tfds_utils import load_split
from mobilenet_zoo.tensorflow_support import import_tensorflow

tf = import_tensorflow("segmentation data (tf.data)")

PET_CLASSES = ["background", "pet"]
VOC_CLASSES = [
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
]  # fmt: skip
DIGIT_CLASSES = ["background"] + [str(d) for d in range(10)]



class SegmentationSource:
    def __init__(self, dataset, class_names, description):
        self.dataset = dataset
        self.class_names = list(class_names)
        self.description = description


def oxford_pets(split: str = "train", data_dir: str | None = None, check: bool = True) -> SegmentationSource:
    """TFDS ``oxford_iiit_pet`` trimaps: 1 pet -> 1, 2 background -> 0, 3 border -> ignore."""
    ds = load_split("oxford_iiit_pet", split, data_dir, check=check)

    def convert(ex):
        trimap = tf.cast(ex["segmentation_mask"], tf.int32)
        mask = tf.gather(tf.constant([IGNORE_LABEL, 1, 0, IGNORE_LABEL]), tf.clip_by_value(trimap, 0, 3))
        return {"image": ex["image"], "mask": tf.cast(mask, tf.uint8)}

    return SegmentationSource(ds.map(convert, num_parallel_calls=tf.data.AUTOTUNE), PET_CLASSES,
                              f"TFDS oxford_iiit_pet {split}")


def voc2012(root: str, split: str = "train") -> SegmentationSource:
    """PASCAL VOC 2012 in its own layout: ``root/JPEGImages``, ``root/SegmentationClass``
    (palette PNGs, 255 = border) and ``root/ImageSets/Segmentation/{split}.txt``."""
    root_path = Path(root)
    ids_file = root_path / "ImageSets" / "Segmentation" / f"{split}.txt"
    if not ids_file.is_file():
        raise FileNotFoundError(
            f"{ids_file} not found: --voc-root must be the VOC2012 folder holding JPEGImages/, "
            "SegmentationClass/ and ImageSets/Segmentation/."
        )
    ids = ids_file.read_text().split()
    images = [str(root_path / "JPEGImages" / f"{i}.jpg") for i in ids]
    masks = [str(root_path / "SegmentationClass" / f"{i}.png") for i in ids]

    def palette_indices(path):
        from PIL import Image  # TF decodes palette PNGs to RGB, not to class indices

        return np.asarray(Image.open(path.decode()), np.uint8)[..., None]

    def load(image_path, mask_path):
        mask = tf.numpy_function(palette_indices, [mask_path], tf.uint8)
        mask.set_shape((None, None, 1))
        image = tf.io.decode_jpeg(tf.io.read_file(image_path), channels=3)
        return {"image": image, "mask": mask}

    ds = tf.data.Dataset.from_tensor_slices((images, masks)).map(load, num_parallel_calls=tf.data.AUTOTUNE)
    return SegmentationSource(ds, VOC_CLASSES, f"PASCAL VOC 2012 {split} ({root})")


def embedded_digits(
    split: str = "train", num_train: int = 600, num_val: int = 100, binary: bool = True
) -> SegmentationSource:
    """Masks of the embedded digits-on-photos set (no download).

    ``binary`` (default): background vs digit, 2 classes; otherwise 11 classes
    (background + the ten digits), a harder, imbalanced task.
    """

    root = digits_on_photos.build(num_train=num_train, num_val=num_val) / split
    files = sorted(p.stem for p in (root / "images").glob("*.jpg"))
    images = [str(root / "images" / f"{f}.jpg") for f in files]
    masks = [str(root / "masks" / f"{f}.png") for f in files]

    def load(image_path, mask_path):
        mask = tf.io.decode_png(tf.io.read_file(mask_path), channels=1)
        if binary:
            mask = tf.cast(mask > 0, tf.uint8)
        return {"image": tf.io.decode_jpeg(tf.io.read_file(image_path), channels=3), "mask": mask}

    ds = tf.data.Dataset.from_tensor_slices((images, masks)).map(load, num_parallel_calls=tf.data.AUTOTUNE)
    names = ["background", "digit"] if binary else DIGIT_CLASSES
    kind = "background/digit" if binary else "11-class digit"
    return SegmentationSource(ds, names, f"embedded {kind} masks {split} ({root})")


def check_example(image, mask, num_classes: int, ignore_label: int = IGNORE_LABEL):
    """Graph-mode checks: same spatial size, labels in [0, num_classes) or ignore."""
    tf.debugging.assert_equal(
        tf.shape(image)[:2], tf.shape(mask)[:2],
        message="mask and image sizes differ; masks must have the image's height and width",
    )
    labels = tf.cast(mask, tf.int32)
    ok = tf.reduce_all((labels < num_classes) | (labels == ignore_label))
    tf.debugging.assert_equal(
        ok, True,
        message=f"mask labels must be in [0, {num_classes}) or {ignore_label} (ignore label)",
    )
    return image, mask


def segmentation_pipeline(
    source: SegmentationSource | tf.data.Dataset,
    num_classes: int,
    image_size: int = 256,
    batch_size: int = 8,
    training: bool = False,
    ignore_label: int = IGNORE_LABEL,
    scale_range: tuple[float, float] = (0.5, 2.0),
    seed: int | None = None,
) -> tf.data.Dataset:
    """Batches of ``(images float32 [0, 255], masks int32 HxW)`` of ``image_size``.

    Training: random flip, random scale in ``scale_range`` (DeepLab: 0.5-2.0),
    pad with the ignore label and random crop; evaluation: resize (masks by
    nearest neighbour).
    """
    ds = source.dataset if isinstance(source, SegmentationSource) else source
    size = image_size
    if training:
        ds = ds.shuffle(500, seed=seed, reshuffle_each_iteration=True)
        ds = with_example_seeds(ds, seed)  # same --seed, same augmentation (data/seeds.py)
    else:
        ds = ds.map(lambda ex: (ex, tf.zeros([2], tf.int64)))

    def prepare(ex, example_seed):
        image, mask = check_example(ex["image"], ex["mask"], num_classes, ignore_label)
        image = tf.cast(image, tf.float32)
        mask = tf.cast(mask, tf.int32)
        if training:
            flip = tf.random.stateless_uniform([], fold(example_seed, 0)) < 0.5
            image = tf.cond(flip, lambda: tf.image.flip_left_right(image), lambda: image)
            mask = tf.cond(flip, lambda: tf.image.flip_left_right(mask), lambda: mask)
            scale = tf.random.stateless_uniform([], fold(example_seed, 1), *scale_range)
            hw = tf.cast(tf.cast(tf.shape(image)[:2], tf.float32) * scale * size / tf.cast(
                tf.reduce_max(tf.shape(image)[:2]), tf.float32), tf.int32)
            hw = tf.maximum(hw, 1)
            image = tf.image.resize(image, hw)
            mask = tf.image.resize(mask, hw, method="nearest")
            th = tf.maximum(hw[0], size)
            tw = tf.maximum(hw[1], size)
            image = tf.image.pad_to_bounding_box(image, 0, 0, th, tw)
            mask = tf.image.pad_to_bounding_box(mask - ignore_label, 0, 0, th, tw) + ignore_label
            both = tf.concat([image, tf.cast(mask, tf.float32)], -1)
            both = tf.image.stateless_random_crop(both, (size, size, 4), fold(example_seed, 2))
            image, mask = both[..., :3], tf.cast(both[..., 3:], tf.int32)
        else:
            image = tf.image.resize(image, (size, size))
            mask = tf.image.resize(mask, (size, size), method="nearest")
        return tf.ensure_shape(image, (size, size, 3)), tf.ensure_shape(mask[..., 0], (size, size))

    ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size, drop_remainder=training).prefetch(tf.data.AUTOTUNE)
