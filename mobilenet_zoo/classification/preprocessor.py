"""The classification data contract: image size, crop and augmentation."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import keras

from mobilenet_zoo.data.seeds import fold, with_example_seeds
from mobilenet_zoo.tensorflow_support import import_tensorflow
from mobilenet_zoo.utils import ConfigMixin

if TYPE_CHECKING:  # tf.data only where a pipeline is built
    import tensorflow as tf

# Inception / TF-slim evaluation: central crop of 87.5% of the image, then resize.
CENTRAL_FRACTION = 0.875


def preprocess(image, size: int, training: bool, seed=None, central_fraction: float = CENTRAL_FRACTION):
    """Little augmentation (paper s.4): random crop and flip; eval: central crop
    (87.5% by default, Inception / TF-slim; 1.0 keeps the whole image). A tf.data map."""
    tf = import_tensorflow("the tf.data input pipeline")
    image = tf.image.convert_image_dtype(image, tf.float32)  # [0, 1]
    if image.shape.rank == 3 and image.shape[-1] == 1:
        image = tf.image.grayscale_to_rgb(image)
    if training:
        options = dict(min_object_covered=0.25, aspect_ratio_range=(0.75, 1.33), area_range=(0.25, 1.0),
                       max_attempts=10, use_image_if_no_bounding_boxes=True)
        if seed is None or isinstance(seed, int):  # a stateful op seed, as before
            begin, crop, _ = tf.image.sample_distorted_bounding_box(
                tf.shape(image), tf.zeros((1, 0, 4)), seed=seed or 0, **options)
            image = tf.image.random_flip_left_right(tf.slice(image, begin, crop), seed=seed)
        else:  # a per-example [2] seed (data/seeds.py): the same run for the same --seed
            begin, crop, _ = tf.image.stateless_sample_distorted_bounding_box(
                tf.shape(image), tf.zeros((1, 0, 4)), seed=fold(seed, 0), **options)
            image = tf.image.stateless_random_flip_left_right(tf.slice(image, begin, crop), fold(seed, 1))
    elif central_fraction < 1.0:
        image = tf.image.central_crop(image, central_fraction)
    image = tf.image.resize(image, (size, size))
    return image * 255.0  # the model's preprocessing layer maps [0, 255] to [-1, 1]


def pipeline(ds: tf.data.Dataset, size: int, batch_size: int, training: bool, augment: bool = True,
             seed=None, central_fraction: float = CENTRAL_FRACTION) -> tf.data.Dataset:
    """(image, label) pairs -> batches; parallel decode/augment, prefetch, no Python per example."""
    tf = import_tensorflow("the tf.data input pipeline")
    if training:
        ds = ds.shuffle(4096, seed=seed, reshuffle_each_iteration=True)
        ds = with_example_seeds(ds, seed)  # same --seed, same augmentation
        ds = ds.map(lambda xy, s: (preprocess(xy[0], size, augment, s, central_fraction), xy[1]),
                    num_parallel_calls=tf.data.AUTOTUNE)
    else:
        ds = ds.map(lambda x, y: (preprocess(x, size, False, seed, central_fraction), y),
                    num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size, drop_remainder=training).prefetch(tf.data.AUTOTUNE)


@keras.saving.register_keras_serializable(package="mobilenet_zoo")
class ImageClassifierPreprocessor(ConfigMixin):
    """Image size and augmentation of a classifier (pixels stay in [0, 255]).

    Args:
        image_size: square side images are resized to (the model's input).
        augment: random crop + flip in training (paper s.4: little augmentation).
        central_fraction: central crop at evaluation (0.875: Inception / TF-slim
            evaluation; 1.0 keeps the whole image, for small centred objects as in
            Fashion-MNIST). Grayscale (H, W, 1) images are repeated to RGB.

    Example:

    ```python
    train = model.preprocessor.pipeline(tfds_split, batch_size=96, training=True)
    ```
    """

    def __init__(self, image_size: int = 224, augment: bool = True,
                 central_fraction: float = CENTRAL_FRACTION) -> None:
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 32:
            raise ValueError(f"`image_size` must be an int >= 32, got {image_size!r}.")
        if not 0.0 < float(central_fraction) <= 1.0:
            raise ValueError(f"`central_fraction` must be in (0, 1], got {central_fraction!r}.")
        self.image_size = image_size
        self.augment = augment
        self.central_fraction = float(central_fraction)

    def pipeline(self, ds: tf.data.Dataset, batch_size: int, training: bool = False,
                 seed: int | None = None) -> tf.data.Dataset:
        """``(image uint8, label)`` pairs -> batches of the model's input size."""
        return pipeline(ds, self.image_size, batch_size, training, self.augment, seed,
                        self.central_fraction)

    def get_config(self) -> dict[str, Any]:
        return {"image_size": self.image_size, "augment": self.augment,
                "central_fraction": self.central_fraction}
