"""The detection data contract: image size, box format, augmentation, padding.

A detector owns one ``DetectionPreprocessor``; training data, evaluation,
``predict`` and export all go through it, so the image size and the box
format cannot disagree between them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
from PIL import Image

from mobilenet_zoo.data.constants import MAX_BOXES
from mobilenet_zoo.tensorflow_support import import_tensorflow
from mobilenet_zoo.utils import ConfigMixin, assert_in_graph

# Keras / keras-cv box format names; "rel_" formats are normalised to [0, 1].
BOX_FORMATS = (
    "xyxy", "yxyx", "xywh", "center_xywh", "center_yxhw",
    "rel_xyxy", "rel_yxyx", "rel_xywh", "rel_center_xywh",
)  # fmt: skip
# The detectors' internal format (TF OD API box lists: normalised ymin, xmin, ymax, xmax).
MODEL_BOX_FORMAT = "rel_yxyx"
# How an image of another size becomes the model input, as the model was trained:
# "stretch": the whole image resized to the input, aspect ratio not kept (TF OD API
#   `image_resizer { fixed_shape_resizer }`, the COCO SSDs' pipeline.config);
# "pad": padded with black at the bottom and right to the input's aspect ratio, then
#   resized (face-api.js `NetInput.toBatchTensor(512, false)` / `padToSquare(x, false)`,
#   the face SSD): the image keeps its top-left corner and its aspect ratio.
RESIZE_MODES = ("stretch", "pad")


def as_image_size(image_size: int | Sequence[int]) -> tuple[int, int]:
    """``300`` or ``(h, w)`` -> ``(h, w)``; ValueError below 32 pixels."""
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if len(size) != 2 or any(isinstance(s, bool) or not isinstance(s, int) for s in size) or min(size) < 32:
        raise ValueError(f"`image_size` must be an int or (height, width) >= 32, got {image_size!r}.")
    return size


def keep_aspect_ratio_size(height: int, width: int, min_dimension: int = 600,
                           max_dimension: int = 1024) -> tuple[int, int]:
    """TF OD API ``keep_aspect_ratio_resizer``: the (h, w) that makes the shorter
    side ``min_dimension`` unless the longer one would pass ``max_dimension``."""
    if min(height, width) < 1 or min_dimension < 1 or max_dimension < min_dimension:
        raise ValueError(f"Need positive sizes and max_dimension >= min_dimension; got ({height}, {width}), "
                         f"{min_dimension}, {max_dimension}.")
    scale = min_dimension / min(height, width)
    if round(max(height, width) * scale) > max_dimension:
        scale = max_dimension / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def resize_bilinear(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``(B, H, W, C)`` -> ``(B, h, w, C)`` float32, bilinear, without antialiasing and
    without half-pixel centres: TF 1.x ``tf.image.resize_images`` (``align_corners=False``),
    the resize of the TF OD API's ``fixed_shape_resizer`` that trained the COCO SSDs.
    MediaPipe Tasks' image-to-tensor step gives the same tensor (measured: the same
    detections as a ``.tflite`` fed this resize); NumPy, so the same on every backend."""
    x = np.asarray(images, np.float32)
    for axis, out in ((1, size[0]), (2, size[1])):
        n = x.shape[axis]
        if n == out:
            continue
        src = np.arange(out, dtype=np.float64) * (n / out)
        lo = np.floor(src).astype(np.int64)
        hi = np.minimum(lo + 1, n - 1)
        shape = [1, 1, 1, 1]
        shape[axis] = out
        w = (src - lo).astype(np.float32).reshape(shape)
        x = np.take(x, lo, axis=axis) * (1 - w) + np.take(x, hi, axis=axis) * w
    return x


@keras.saving.register_keras_serializable(package="mobilenet_zoo")
class DetectionPreprocessor(ConfigMixin):
    """Image size, box format and training augmentation of a detector.

    Args:
        image_size: the model's input side or ``(height, width)``; images of
            another size are resized to it as ``resize_mode`` says.
        bounding_box_format: format of the boxes given to ``fit`` and returned
            by ``predict`` (absolute formats are pixels of the resized image).
        max_boxes: ground-truth boxes per image after padding with -1.
        augment: random horizontal flip and SSD random crop in training
            (``ssd_mobilenet_v1_coco.config`` data_augmentation_options).
        resize_mode: how ``predict``, the detect CLI and ``resize`` fit an image of
            another size to ``image_size``, as the weights were trained:
            ``"stretch"`` (default; TF OD API ``fixed_shape_resizer``: the whole
            image, aspect ratio not kept) or ``"pad"`` (black padding at the bottom
            and right to the input's aspect ratio, then resized: face-api.js
            ``padToSquare``). Boxes map back to each image's own pixels either way.
            The tf.data ``pipeline`` (training, evaluation) resizes the same way.

    Example:

    ```python
    train_ds = model.preprocessor.pipeline(source, batch_size=24, training=True)
    ```
    """

    def __init__(
        self,
        image_size: int | Sequence[int] = 300,
        bounding_box_format: str = MODEL_BOX_FORMAT,
        max_boxes: int = MAX_BOXES,
        augment: bool = True,
        resize_mode: str = "stretch",
    ) -> None:
        if resize_mode not in RESIZE_MODES:
            raise ValueError(f"`resize_mode` must be one of {RESIZE_MODES} (how the model was trained: "
                             f"'stretch' = TF OD API fixed_shape_resizer, 'pad' = pad to the input's "
                             f"aspect ratio), got {resize_mode!r}.")
        if bounding_box_format not in BOX_FORMATS:
            raise ValueError(
                f"`bounding_box_format` must be one of {BOX_FORMATS}, got {bounding_box_format!r}."
            )
        if isinstance(max_boxes, bool) or not isinstance(max_boxes, int) or max_boxes < 1:
            raise ValueError(f"`max_boxes` must be an int >= 1, got {max_boxes!r}.")
        self.image_size = as_image_size(image_size)
        self.bounding_box_format = bounding_box_format
        self.max_boxes = max_boxes
        self.augment = augment
        self.resize_mode = resize_mode

    def _convert(self, boxes, source: str, target: str):
        h, w = self.image_size
        return keras.utils.bounding_boxes.convert_format(boxes, source=source, target=target,
                                                         height=h, width=w)

    def to_model_boxes(self, boxes):
        """User boxes (``bounding_box_format``) -> the model's normalised yxyx."""
        return self._convert(boxes, self.bounding_box_format, MODEL_BOX_FORMAT)

    def from_model_boxes(self, boxes):
        """The model's normalised yxyx -> ``bounding_box_format``."""
        return self._convert(boxes, MODEL_BOX_FORMAT, self.bounding_box_format)

    # ------------------------------------------------- images of any size (resize_mode)
    def frame_of(self, height: int, width: int) -> tuple[int, int]:
        """The ``(height, width)`` region that ``resize`` maps onto the model input for an
        image of this size: the image itself (``"stretch"``), or the image padded at the
        bottom and right to the input's aspect ratio (``"pad"``)."""
        if self.resize_mode == "stretch":
            return int(height), int(width)
        target_h, target_w = self.image_size
        scale = max(height / target_h, width / target_w)
        return max(int(height), round(scale * target_h)), max(int(width), round(scale * target_w))

    def resize_images(self, images: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
        """A batch ``(B, H, W, C)`` of one size -> ``(B, h, w, C)`` float32 model inputs
        (pixels as given) and the frame (``frame_of``) that became the input, resized
        with ``resize_bilinear`` (the TF OD API's resize, which MediaPipe reproduces)."""
        images = np.asarray(images)
        if images.ndim != 4:
            raise ValueError(f"resize_images takes a (batch, height, width, channels) array, got shape "
                             f"{images.shape}; give one image as image[None].")
        height, width = images.shape[1:3]
        frame = self.frame_of(height, width)
        x = images.astype(np.float32, copy=False)
        if frame != (height, width):  # "pad": black at the bottom and right (face-api.js)
            x = np.pad(x, ((0, 0), (0, frame[0] - height), (0, frame[1] - width), (0, 0)))
        if frame != self.image_size:
            x = resize_bilinear(x, self.image_size)
        return x, frame

    def resize(self, image: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
        """One ``(H, W, C)`` image -> the ``(h, w, C)`` float32 model input and its frame
        (``resize_images`` for one image); map boxes back with ``boxes_to_image``."""
        image = np.asarray(image)
        if image.ndim != 3:
            raise ValueError(f"resize takes one (height, width, channels) image, got shape {image.shape}.")
        x, frame = self.resize_images(image[None])
        return x[0], frame

    def boxes_to_image(self, boxes: Any, image_size: tuple[int, int], frame: tuple[int, int] | None = None,
                       target_format: str | None = None) -> np.ndarray:
        """Boxes in ``bounding_box_format`` on the model input -> boxes of the original
        image of ``image_size`` ``(height, width)`` that ``resize`` turned into that input
        (its ``frame``; default ``frame_of(*image_size)``), clipped to the image.

        ``target_format`` (default ``bounding_box_format``): absolute formats are pixels
        of the original image, ``rel_`` formats fractions of its own height and width.
        """
        height, width = (int(v) for v in image_size)
        frame_h, frame_w = frame or self.frame_of(height, width)
        h, w = self.image_size
        rel = keras.ops.convert_to_numpy(keras.utils.bounding_boxes.convert_format(
            np.asarray(boxes, np.float32), source=self.bounding_box_format, target=MODEL_BOX_FORMAT,
            height=h, width=w))
        rel = np.clip(rel * np.array([frame_h / height, frame_w / width] * 2, np.float32), 0.0, 1.0)
        return keras.ops.convert_to_numpy(keras.utils.bounding_boxes.convert_format(
            rel, source=MODEL_BOX_FORMAT, target=target_format or self.bounding_box_format,
            height=height, width=width)).astype(np.float32)

    def letterbox(self, image: np.ndarray) -> tuple[np.ndarray, float, tuple[int, int]]:
        """Fits an ``(h, w, 3)`` uint8 image into ``image_size`` keeping its aspect ratio,
        centred. Kept for earlier callers: the detectors and the detect CLI use
        ``resize`` (the model's own ``resize_mode``).

        Returns the float32 canvas (pixels 0-255, the rest black), the scale and
        the (top, left) offset, for ``boxes_to_original``.
        """
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[-1] != 3:
            raise ValueError(f"letterbox takes an (H, W, 3) RGB image, got shape {image.shape}.")
        h, w = image.shape[:2]
        target_h, target_w = self.image_size
        scale = min(target_h / h, target_w / w)
        new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
        resized = np.asarray(Image.fromarray(image.astype(np.uint8)).resize((new_w, new_h),
                                                                            Image.BILINEAR))
        top, left = (target_h - new_h) // 2, (target_w - new_w) // 2
        canvas = np.zeros((target_h, target_w, 3), np.float32)
        canvas[top:top + new_h, left:left + new_w] = resized
        return canvas, scale, (top, left)

    def boxes_to_original(self, boxes, scale: float, offset: tuple[int, int],
                          original_size: tuple[int, int]) -> np.ndarray:
        """Boxes in ``bounding_box_format`` on a letterboxed input -> ``xyxy``
        pixels of the original ``(height, width)`` image, clipped to it."""
        h, w = self.image_size
        xyxy = keras.ops.convert_to_numpy(keras.utils.bounding_boxes.convert_format(
            np.asarray(boxes, np.float32), source=self.bounding_box_format, target="xyxy",
            height=h, width=w))
        top, left = offset
        out = (xyxy - np.array([left, top, left, top], np.float32)) / scale
        oh, ow = original_size
        return np.clip(out, 0, [ow, oh, ow, oh])

    def pipeline(self, source: Any, batch_size: int, training: bool = False, seed: int | None = None,
                 **kwargs: Any):
        """Batches of ``(images, {"boxes", "classes", ...})`` in this contract.

        ``source``: a ``DetectionSource`` or a dataset of example dicts (see
        ``mobilenet_zoo.data.detection``); ``kwargs`` go to ``detection_pipeline``.
        """
        import_tensorflow("the tf.data input pipeline")  # one clear error without it
        from mobilenet_zoo.data import detection as ddata  # a TensorFlow module: lazily

        return ddata.detection_pipeline(
            source, self.image_size, batch_size, training=training, augment=self.augment,
            bounding_box_format=self.bounding_box_format, max_boxes=self.max_boxes, seed=seed,
            **{"resize_mode": self.resize_mode, **kwargs},
        )

    def get_config(self) -> dict[str, Any]:
        return {
            "image_size": list(self.image_size),
            "bounding_box_format": self.bounding_box_format,
            "max_boxes": self.max_boxes,
            "augment": self.augment,
            "resize_mode": self.resize_mode,
        }


def ground_truth_to_model(y: dict, preprocessor: DetectionPreprocessor, num_classes: int,
                          invalid_boxes: str = "drop"):
    """A detector's training targets ``{"boxes", "classes"}`` -> the model's normalised
    yxyx boxes and int32 labels, checked (shared by every detector's ``fit``).

    Labels must be in [-1, num_classes) (-1 = padding); boxes that cannot be trained on
    (non-finite, empty or wholly outside the image) become padding with
    ``invalid_boxes="drop"`` or stop ``fit`` with ``"raise"``. Returns
    ``(boxes, classes, number of dropped boxes)``.
    """
    ops = keras.ops
    boxes = ops.cast(y["boxes"], "float32")
    classes = ops.cast(y["classes"], "int32")
    if len(boxes.shape) != 3 or boxes.shape[-1] != 4:
        raise ValueError(f"y['boxes'] must be (batch, max_boxes, 4), got {tuple(boxes.shape)}.")
    if len(classes.shape) != 2 or (
        boxes.shape[1] is not None and classes.shape[1] is not None
        and boxes.shape[1] != classes.shape[1]
    ):
        raise ValueError(
            f"y['classes'] must be (batch, max_boxes) with one label per box; got boxes "
            f"{tuple(boxes.shape)} and classes {tuple(classes.shape)}. Pad both with -1."
        )
    boxes = preprocessor.to_model_boxes(boxes)
    assert_in_graph(ops.all(classes < num_classes),
                    f"y['classes'] has a label >= num_classes ({num_classes}); "
                    "labels are 0-based, -1 for padding.")
    assert_in_graph(ops.all(classes >= -1),
                    "y['classes'] has a label below -1; labels are 0-based, -1 for padding.")
    # Boxes that cannot be trained on: non-finite, empty (max <= min) or wholly
    # outside the image. Dropped (counted in the `invalid_boxes` metric) or raised.
    finite = ops.all(ops.isfinite(boxes), axis=-1)
    safe = ops.where(finite[..., None], boxes, 0.0)
    ymin, xmin, ymax, xmax = (safe[..., i] for i in range(4))
    usable = finite & (ymax > ymin) & (xmax > xmin) & (ymax > 0) & (xmax > 0) & (ymin < 1) & (xmin < 1)
    invalid = (classes >= 0) & ~usable
    if invalid_boxes == "raise":
        assert_in_graph(
            ~ops.any(invalid),
            "y['boxes'] has non-finite, empty or out-of-image boxes "
            f"(format {preprocessor.bounding_box_format!r}); fix them or build the detector "
            "with invalid_boxes='drop'.",
        )
    classes = ops.where(invalid, -1, classes)
    boxes = ops.clip(ops.where(invalid[..., None], 0.0, safe), 0.0, 1.0)
    return boxes, classes, ops.sum(ops.cast(invalid, "float32"))
