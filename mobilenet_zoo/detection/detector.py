"""``Detector``: the base of the detectors (``SSD``, ``FasterRCNN``).

Modelled on keras-hub's ``ImageObjectDetector`` (a ``Task`` whose preprocessor
owns the image size and the box format; training through ``compute_loss``) and
on what torchvision's ``GeneralizedRCNN`` / ``GeneralizedRCNNTransform`` share
between its detectors (ground-truth checks, box conversion back to the caller's
frame). What every detector here has in common lives in this class:

- the common arguments, checked before the graph is built (``detector_inputs``):
  ``num_classes``, ``class_names``, ``invalid_boxes``, ``image_size`` and the
  preprocessor's agreement with ``image_size`` / ``bounding_box_format``;
- the ground truth: checked and converted to the model's normalised yxyx boxes
  (``ground_truth``; bad boxes dropped and counted, or raised);
- training: ``compute_loss`` = the subclass's ``detection_losses`` + the slim L2
  term on conv / dense kernels + layer regularizers, each term a tracked metric;
- serving: ``postprocess`` (the subclass's ``decode``, then the boxes in
  ``bounding_box_format``), shared by ``predict``, SavedModel and TFLite
  (``serving_function``, with ``tflite_ops=True``);
- ``with_image_size`` and the builders' ``from_weights`` (``"imagenet"``, a
  preset, a weights file or ``None``).

Adding a detector: subclass ``Detector``; in ``__init__`` call
``detector_inputs``, build the graph (raw outputs), ``super().__init__(inputs=...,
outputs=...)``, then ``_init_detector``; implement ``detection_losses`` and
``decode``; list the loss terms in ``loss_names``; extend ``get_config``. Register
it (``keras.saving.register_keras_serializable(package="mobilenet_zoo")``) and
export it from ``mobilenet_zoo/detection/__init__.py``.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
from keras import layers

from mobilenet_zoo import presets
from mobilenet_zoo.backbone import MobileNetBackbone
from mobilenet_zoo.detection.box_coder import FasterRCNNBoxCoder
from mobilenet_zoo.detection.postprocess import DetectionDecoder, tflite_ops_argument
from mobilenet_zoo.detection.preprocessor import (
    RESIZE_MODES,
    DetectionPreprocessor,
    as_image_size,
    ground_truth_to_model,
)
from mobilenet_zoo.task import Task, make_serving_function
from mobilenet_zoo.utils import build_piece, check_num_classes
from mobilenet_zoo.weights_io import iter_weighted_layers

INVALID_BOXES = ("drop", "raise")


class Detector(Task):
    """Base class of the detectors: images in, ``{"boxes", "classes", "scores",
    "num_detections"}`` out (``predict``), boxes in ``bounding_box_format``.

    Training data: images plus ``{"boxes": (B, M, 4), "classes": (B, M)}`` padded
    with -1; labels are 0-based, without background.
    """

    #: the loss terms ``detection_losses`` reports, each a metric of ``fit``.
    loss_names: tuple[str, ...] = ()
    #: deprecated keyword -> (new argument, key in that piece's kwargs or None).
    renamed_kwargs: dict[str, tuple[str, str | None]] = {}
    #: ``predict`` resizes images of any size with the model's ``resize_mode``.
    predict_resizes: bool = True

    # ----------------------------------------------------------- construction
    @staticmethod
    def detector_inputs(detector: str, num_classes: int, image_size: int | Sequence[int],
                        bounding_box_format: str, preprocessor: Any, class_names: Sequence[str] | None,
                        invalid_boxes: str, weight_decay: float, include_preprocessing: bool,
                        box_coder: Any, decoder: Any, augment: bool = True,
                        resize_mode: str | None = None):
        """Checks the common arguments; returns ``(image size (h, w), common)``, ``common``
        the checked arguments for ``_init_detector`` (pieces built: ``common["box_coder"]``).

        A missing preprocessor is built from ``image_size``, ``bounding_box_format``
        and ``resize_mode`` (``None``: ``"stretch"``; ``augment``: the SSD random crop in
        training); a given one (object or config dict) must agree with all three
        (``resize_mode=None`` takes the preprocessor's).
        """
        check_num_classes(num_classes)
        if invalid_boxes not in INVALID_BOXES:
            raise ValueError(f"`invalid_boxes` must be one of {INVALID_BOXES}, got {invalid_boxes!r}.")
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"`class_names` has {len(class_names)} names for num_classes={num_classes}.")
        if weight_decay < 0:
            raise ValueError(f"`weight_decay` must be >= 0, got {weight_decay!r}.")
        size = as_image_size(image_size)
        if preprocessor is None:
            preprocessor = DetectionPreprocessor(size, bounding_box_format, augment=augment,
                                                 resize_mode=resize_mode or "stretch")
        preprocessor = build_piece(preprocessor, DetectionPreprocessor)
        if resize_mode is not None and resize_mode != preprocessor.resize_mode:
            raise ValueError(
                f"The preprocessor has resize_mode={preprocessor.resize_mode!r}; the {detector} was "
                f"given resize_mode={resize_mode!r}. Give one of them (resize_modes: {RESIZE_MODES})."
            )
        if (preprocessor.image_size, preprocessor.bounding_box_format) != (size, bounding_box_format):
            raise ValueError(
                f"The preprocessor has image_size={preprocessor.image_size} and "
                f"bounding_box_format={preprocessor.bounding_box_format!r}; the {detector} has {size} and "
                f"{bounding_box_format!r}. Give both the same values."
            )
        return size, {
            "preprocessor": preprocessor, "num_classes": num_classes,
            "bounding_box_format": bounding_box_format,
            "class_names": None if class_names is None else [str(n) for n in class_names],
            "invalid_boxes": invalid_boxes, "weight_decay": weight_decay,
            "include_preprocessing": include_preprocessing,
            "box_coder": build_piece(box_coder, FasterRCNNBoxCoder),
            "decoder": build_piece(decoder, DetectionDecoder),
        }

    @classmethod
    def upgrade_kwargs(cls, kwargs: dict[str, Any]) -> dict[str, Any]:
        """Moves deprecated keywords (``renamed_kwargs``) to their new place, with a
        DeprecationWarning; e.g. FasterRCNN's ``max_proposals=50`` becomes
        ``proposal_layer={"max_proposals": 50}``."""
        kwargs = dict(kwargs)
        for old in [k for k in kwargs if k in cls.renamed_kwargs]:
            new, key = cls.renamed_kwargs[old]
            value = kwargs.pop(old)
            warnings.warn(f"{cls.__name__}({old}=...) is deprecated; use "
                          + (f"{new}={{{key!r}: ...}}" if key else f"{new}=..."), DeprecationWarning,
                          stacklevel=3)
            if key is None:
                kwargs[new] = value
                continue
            piece = kwargs.get(new)
            if piece is not None and (not isinstance(piece, dict) or "class_name" in piece):
                raise ValueError(f"`{old}` cannot change the `{new}` object given; set `{key}` on it.")
            kwargs[new] = {**(piece or {}), key: value}
        return kwargs

    def _init_detector(self, backbone: keras.Model, common: dict[str, Any],
                       track_backbone: bool = True) -> None:
        """After ``super().__init__(inputs=..., outputs=...)``: the attributes every
        detector has (``common`` from ``detector_inputs``), its L2 kernels and its
        loss trackers.

        ``track_backbone=False``: the backbone is kept as an attribute but its
        weights are not the detector's (Faster R-CNN uses it up to conv_pw_11 only).
        """
        common = dict(common)
        self._init_task(backbone, common.pop("preprocessor"))
        if not track_backbone:
            self._tracker.untrack(backbone)
            object.__setattr__(self, "backbone", backbone)
        for name, value in common.items():
            setattr(self, name, value)
        # Conv and dense kernels, each once; not depthwise ones (TF-slim:
        # regularize_depthwise=False), not BN or biases, not those with their own
        # regularizer (e.g. MobileNetBackbone(weight_decay=...)).
        kernels = {}
        for layer in iter_weighted_layers(self):
            if (isinstance(layer, (layers.Conv2D, layers.Dense))
                    and not isinstance(layer, layers.DepthwiseConv2D) and layer.kernel_regularizer is None):
                kernels.setdefault(id(layer.kernel), layer.kernel)
        self._decay_kernels = list(kernels.values())
        self.loss_trackers = {n: keras.metrics.Mean(name=n) for n in (*self.loss_names, "invalid_boxes")}

    # ----------------------------------------------------------------- training
    def ground_truth(self, y: dict):
        """``y = {"boxes", "classes"}`` -> (normalised yxyx boxes, int32 labels), checked;
        unusable boxes become padding (counted in ``invalid_boxes``) or raise."""
        boxes, classes, invalid = ground_truth_to_model(y, self.preprocessor, self.num_classes,
                                                        self.invalid_boxes)
        self.loss_trackers["invalid_boxes"].update_state(invalid)
        return boxes, classes

    def detection_losses(self, y: dict, y_pred: dict, training: bool):
        """(total, {name: term}) of a batch; ``name`` among ``loss_names``."""
        raise NotImplementedError

    def regularization_loss(self):
        """Slim's L2 ``weight_decay * sum(k^2) / 2`` on ``_decay_kernels``, plus layer regularizers."""
        ops = keras.ops
        total = ops.zeros((), "float32")
        if self.weight_decay and self._decay_kernels:
            total += self.weight_decay * 0.5 * sum(
                ops.sum(ops.square(ops.cast(k, "float32"))) for k in self._decay_kernels)
        for value in self.losses:  # layer regularizers (a backbone built with weight_decay)
            total += ops.cast(value, "float32")
        return total

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        total, parts = self.detection_losses(y, y_pred, training)
        for name, value in parts.items():
            self.loss_trackers[name].update_state(value)
        return total + self.regularization_loss()

    @property
    def metrics(self):
        return super().metrics + list(self.loss_trackers.values())

    # ---------------------------------------------------------------- inference
    @property
    def resize_mode(self) -> str:
        """How an image of another size becomes the input: ``"stretch"`` or ``"pad"``
        (the preprocessor's; part of a preset's metadata)."""
        return self.preprocessor.resize_mode

    def _images_of_any_size(self, x: Any):
        """``x`` for ``predict``: a list of ``(H, W, C)`` images of any sizes, one such
        image, or a batch array of another size -> (model-size float32 batch, each
        image's (height, width), each frame); ``None`` when ``x`` is already model-size
        or is something else (a dataset, a generator: passed to Keras as it is)."""
        channels = self.inputs[0].shape[-1]
        if isinstance(x, (list, tuple)) and x and all(hasattr(i, "shape") for i in x):
            images = [np.asarray(i) for i in x]
            bad = [i.shape for i in images if i.ndim != 3 or i.shape[-1] != channels]
            if bad:
                raise ValueError(f"{type(self).__name__}.predict takes a list of (height, width, "
                                 f"{channels}) images; got shapes {bad[:3]}.")
        elif hasattr(x, "shape") and len(x.shape) in (3, 4) and not isinstance(x, dict):
            shape = tuple(x.shape)
            if len(shape) == 3:  # one image: a batch of one
                if shape[-1] != channels:
                    return None  # _check_images names the expected shape
                images = [np.asarray(x)]
            elif shape[1:3] == tuple(self.image_size) or shape[-1] != channels:
                return None  # the model's own size: predict as before
            else:
                images = [np.asarray(x)]  # one size: resized together
        else:
            return None
        batches, sizes, frames = [], [], []
        for image in images:
            batch = image if image.ndim == 4 else image[None]
            resized, frame = self.preprocessor.resize_images(batch)
            batches.append(resized)
            sizes += [tuple(batch.shape[1:3])] * len(batch)
            frames += [frame] * len(batch)
        return np.concatenate(batches), sizes, frames

    def _boxes_to_images(self, dets: dict, sizes: list, frames: list) -> dict:
        """Boxes on the model input -> each image's own (``boxes_to_image``); padding
        rows stay -1."""
        dets = {k: np.asarray(v) for k, v in dets.items()}
        boxes = dets["boxes"].copy()
        for i, (size, frame) in enumerate(zip(sizes, frames)):
            if size == frame == tuple(self.image_size):
                continue  # a model-size image: its boxes are already its own
            valid = dets["classes"][i] >= 0
            boxes[i, valid] = self.preprocessor.boxes_to_image(boxes[i, valid], size, frame)
        dets["boxes"] = boxes
        return dets

    def predict(self, x: Any, *args: Any, **kwargs: Any) -> dict[str, np.ndarray]:
        """``keras.Model.predict`` that also takes images of any size.

        ``x``: a batch array of the model's input size (predicted as it is), or a list of
        ``(H, W, C)`` images of any sizes, one such image, or a batch array of another
        size: resized through ``preprocessor`` with the model's ``resize_mode``, as the
        detect CLI does. Returns ``{"boxes", "classes", "scores", "num_detections"}``
        with a batch axis (one row per image, a single image included); each image's
        ``boxes`` are in ``bounding_box_format`` of *its own* pixels (``rel_`` formats:
        fractions of its own height and width), padding -1.
        """
        prepared = self._images_of_any_size(x)
        if prepared is None:
            return super().predict(x, *args, **kwargs)
        images, sizes, frames = prepared
        return self._boxes_to_images(super().predict(images, *args, **kwargs), sizes, frames)

    def predict_on_batch(self, x: Any) -> dict[str, np.ndarray]:
        """``keras.Model.predict_on_batch`` that takes images of any size, as ``predict``."""
        prepared = self._images_of_any_size(x)
        if prepared is None:
            self._check_images(x, "predict_on_batch")
            return super().predict_on_batch(x)
        images, sizes, frames = prepared
        self._check_images(images, "predict_on_batch")
        return self._boxes_to_images(super().predict_on_batch(images), sizes, frames)

    def decode(self, outputs: dict, tflite_ops: bool) -> dict:
        """Raw outputs -> detections with normalised yxyx boxes (``DetectionDecoder``'s dict)."""
        raise NotImplementedError

    def postprocess(self, outputs: dict, tflite_ops: bool = False, export: bool | None = None) -> dict:
        """Raw outputs -> detections in ``bounding_box_format`` (padding: -1).

        The one decoding path of ``predict`` and of the exported graphs
        (``tflite_ops=True``: NMS from TFLite builtins; ``export=`` is its old name).
        """
        tflite_ops = tflite_ops_argument(tflite_ops, export, f"{type(self).__name__}.postprocess")
        dets = self.decode(outputs, tflite_ops)
        boxes = self.preprocessor.from_model_boxes(dets["boxes"])
        dets["boxes"] = keras.ops.where(dets["classes"][..., None] >= 0, boxes, -1.0)
        return dets

    def tflite_model(self) -> Detector:
        """This detector built from TFLite builtins (``self`` unless its graph holds
        TF-only ops, as Faster R-CNN's NMS and ROI crop)."""
        return self

    def serving_function(self, batch_size: int = 1, **postprocess_kwargs: Any):
        """The exported function: ``postprocess(model(images), tflite_ops=True)`` on
        ``tflite_model()``, with a static ``batch_size``."""
        model = self.tflite_model()
        post = functools.partial(model.postprocess, tflite_ops=True, **postprocess_kwargs)
        return make_serving_function(model, batch_size, post)

    def with_image_size(self, image_size: int | Sequence[int], copy_weights: bool = True) -> Detector:
        """The same detector at another input size, weights copied, anchors recomputed."""
        return super().with_image_size(as_image_size(image_size), copy_weights)

    # ------------------------------------------------------------------ config
    #: the subclass's own constructor arguments, saved by ``get_config`` from the
    #: attributes of the same names (pieces serialised, tuples as lists).
    config_attributes: tuple[str, ...] = ()

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config["image_size"] = list(self.image_size)
        for name in ("num_classes", "bounding_box_format", "include_preprocessing", "box_coder", "decoder",
                     "weight_decay", "class_names", "invalid_boxes", "resize_mode", *self.config_attributes):
            value = getattr(self, name)
            if isinstance(value, (tuple, dict)):
                config[name] = list(value) if isinstance(value, tuple) else dict(value)
            elif value is None or isinstance(value, (bool, int, float, str, list)):
                config[name] = value
            else:
                config[name] = keras.saving.serialize_keras_object(value)
        return config

    @classmethod
    def from_weights(cls, num_classes: int, alpha: float = 1.0, image_size: int | Sequence[int] = 300,
                     weights: str | None = "imagenet", **kwargs: Any) -> Detector:
        """The builders' helper (``ssd_mobilenet_v1``, ``faster_rcnn_mobilenet_v1``).

        ``weights``: ``"imagenet"`` (the 224 ImageNet preset of ``alpha``, as the TF
        OD API starts from the 224 classification checkpoint), a preset (a detection
        preset of this class loads whole, any other initialises the backbone: see
        ``Task.from_preset``), a weights file for the backbone, or ``None``. The
        backbone takes ``backbone_defaults`` (the TF OD API's ``min_depth`` 16).
        """
        kwargs = cls.upgrade_kwargs(kwargs)
        if weights is not None and weights in presets.list_presets():
            meta = presets.get_preset(weights)
            if meta["alpha"] != alpha:
                raise ValueError(f"Preset {weights!r} has alpha {meta['alpha']}; got alpha={alpha}.")
            return cls.from_preset(weights, num_classes=num_classes, image_size=image_size, **kwargs)
        backbone = MobileNetBackbone(alpha=alpha, weights=presets.backbone_weights(weights, alpha),
                                     **cls.backbone_defaults)
        return cls(backbone, num_classes, image_size=image_size, **kwargs)


__all__ = ["Detector", "INVALID_BOXES"]
