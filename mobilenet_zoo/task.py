"""The task contract: one base class for every task model.

Modelled on KerasHub's ``Task`` (a backbone, a head, a preprocessor; presets),
made smaller: a task model here is a functional ``keras.Model`` that

- holds a ``backbone`` (see ``mobilenet_zoo.backbone.check_backbone``) and a
  ``preprocessor`` that owns the data contract (image size, resize, box format,
  mask handling) and builds the tf.data pipeline, so sizes and formats cannot
  disagree between training, evaluation and serving;
- turns raw outputs into results in ``postprocess`` -- the one serving path that
  ``predict``, ``serving_function`` (SavedModel / TFLite export) and the recipes use;
- serialises: ``get_config`` mirrors ``__init__`` on top of this class's
  ``get_config``, ``from_config`` deserialises every nested Keras object
  (backbone, preprocessor, detection pieces), so subclasses round-trip as
  themselves;
- builds from a preset with ``from_preset``.

Adding a head: subclass ``Task``, build the graph on ``backbone`` in
``__init__``, call ``super().__init__(inputs=..., outputs=...)`` then
``self._init_task(backbone, preprocessor)``, extend ``get_config`` and, if the
raw outputs are not final, override ``postprocess``. Register the class with
``keras.saving.register_keras_serializable(package="mobilenet_zoo")`` and import
it from ``mobilenet_zoo/__init__.py``.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import math
import warnings
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from mobilenet_zoo import presets
from mobilenet_zoo.backbone import MobileNetBackbone
from mobilenet_zoo.tensorflow_support import import_tensorflow
from mobilenet_zoo.utils import check_known_kwargs
from mobilenet_zoo.weights_io import ByNameWeightsMixin


def _maybe_deserialize(value: Any) -> Any:
    if isinstance(value, dict) and "class_name" in value and "config" in value:
        return keras.saving.deserialize_keras_object(value)
    return value


def serialize(obj: Any) -> Any:
    """``keras.saving.serialize_keras_object`` that leaves ``None`` alone."""
    return None if obj is None else keras.saving.serialize_keras_object(obj)


class NonFiniteLossError(FloatingPointError):
    """``fit`` met a NaN or infinite loss: the weights are no longer usable."""



@contextlib.contextmanager
def _variables_kept_on_failure(model: keras.Model):
    """Keras' JAX trainer empties every variable before the first step and puts the
    values back from the step's results; when that step raises (a data check in the
    loss), they stay empty and the model is unusable (keras-team/keras PR #21019).
    Here they come back as they were. Only on JAX, where the arrays are copied first."""
    if keras.backend.backend() != "jax":
        yield
        return
    # Copies: the train step donates (deletes) the arrays it is given. One copy of the
    # weights for the duration of the call.
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None and not optimizer.built and model.built:
        optimizer.build(model.trainable_variables)  # as fit would: its slots are kept too
    groups = [model.variables, model.metrics_variables]
    if optimizer is not None:
        groups.append(optimizer.variables)
    kept = {id(v): keras.ops.copy(v.value) for group in groups for v in group
            if v._value is not None}
    try:
        yield
    except BaseException:
        for group in groups:
            for v in group:
                if id(v) in kept and _emptied(v):
                    v.assign(kept[id(v)])
        raise


def _requires(cls: type, argument: str) -> bool:
    """True when ``cls(...)`` needs ``argument`` (a parameter without a default)."""
    parameter = inspect.signature(cls.__init__).parameters.get(argument)
    return parameter is not None and parameter.default is inspect.Parameter.empty


def _emptied(variable) -> bool:
    """True when the JAX trainer left ``variable`` without a usable value: emptied
    (``None``) or holding an array the failed step donated (deleted)."""
    value = variable._value
    if value is None:
        return True
    is_deleted = getattr(value, "is_deleted", None)
    return bool(is_deleted()) if callable(is_deleted) else False

class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Raises ``NonFiniteLossError`` at the first NaN / inf batch loss.

    Every ``Task.fit`` adds it (Keras' ``TerminateOnNaN`` only sets
    ``stop_training``, so ``fit`` returns normally with NaN weights).
    """

    def __init__(self) -> None:
        super().__init__()
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise NonFiniteLossError(
                f"The loss became {float(loss)} at epoch {self._epoch + 1}, batch {batch + 1}; "
                "training stopped (the weights are not finite any more). Check the data "
                "(NaN pixels, boxes, labels) or lower the learning rate."
            )


def make_serving_function(model: keras.Model, batch_size: int = 1, postprocess: Callable | None = None):
    """A ``tf.function`` with a static ``(batch_size, H, W, C)`` float32 input:
    ``postprocess(model(images))``. What SavedModel and TFLite export trace."""
    tf = import_tensorflow("SavedModel / TFLite export")

    shape = (batch_size, *model.inputs[0].shape[1:])
    if any(s is None for s in shape[1:]):
        raise ValueError(
            f"Export needs a static input size; the model's input is {shape}. Rebuild it "
            "with `model.with_image_size((height, width))` or pass `image_size=` to the exporter."
        )
    post = postprocess or (lambda outputs: outputs)

    @tf.function(input_signature=[tf.TensorSpec(shape, tf.float32, name="images")])
    def serve(images):
        return post(model(images, training=False))

    return serve


class Task(ByNameWeightsMixin, keras.Model):
    """Base class of the task models (classifier, SSD, DeepLabV3).

    Subclasses call ``_init_task(backbone, preprocessor)`` after building their
    graph. Attributes: ``backbone``, ``preprocessor``, ``image_size``.
    """

    #: kwargs for the backbone that ``from_preset`` builds (e.g. SSD's min_depth 16).
    backbone_defaults: dict[str, Any] = {}
    #: whether ``predict`` takes images of any size (resized by the preprocessor).
    predict_resizes: bool = False

    def _init_task(self, backbone: keras.Model, preprocessor: Any) -> None:
        self.backbone = backbone
        self.preprocessor = preprocessor

    @property
    def image_size(self) -> tuple:
        """(height, width) of the model input (``None`` sides: any size)."""
        return tuple(self.inputs[0].shape[1:3])

    # ----------------------------------------------------------- serving path
    def postprocess(self, outputs: Any, tflite_ops: bool = False, export: bool | None = None) -> Any:
        """Raw model outputs -> final results (identity unless overridden).

        ``tflite_ops=True`` asks for a graph that converts to TFLite builtins
        (``export=`` is its old name, deprecated).
        """
        return outputs

    def _check_images(self, x: Any, where: str) -> None:
        """Clear error when arrays of the wrong image shape reach the model."""
        expected = tuple(self.inputs[0].shape[1:])
        shape = getattr(x, "shape", None)
        if isinstance(x, np.ndarray) and x.dtype.kind == "f" and not np.isfinite(x).all():
            raise ValueError(
                f"{type(self).__name__}.{where}: the images contain {int((~np.isfinite(x)).sum())} "
                "NaN or infinite pixel values; a model fed them returns confident nonsense."
            )
        if shape is None or len(expected) != 3:
            return
        got = tuple(shape[1:]) if len(shape) == 4 else tuple(shape)
        ok = len(got) == 3 and all(e is None or g is None or e == g for e, g in zip(expected, got))
        if not ok:
            size = ", ".join("any" if e is None else str(e) for e in expected)
            if self.predict_resizes and where.startswith("predict"):
                hint = (f"Any height and width is resized by model.preprocessor, but the images "
                        f"must have {expected[-1]} channels: a (batch, height, width, {expected[-1]}) "
                        f"array, one (height, width, {expected[-1]}) image or a list of them.")
            else:
                hint = ("Give RGB images of that size (resize them first, e.g. with "
                        "keras.ops.image.resize).")
            raise ValueError(f"{type(self).__name__}.{where} expects images of shape (batch, "
                             f"{size}); got {tuple(shape)}. {hint}")

    def fit(self, x=None, y=None, *args, callbacks=None, **kwargs):
        """``keras.Model.fit`` that stops with ``NonFiniteLossError`` on a NaN loss, refuses
        to train without a loss, and keeps the weights when a data check stops it."""
        self._check_images(x, "fit")
        self._check_loss()
        callbacks = list(callbacks or [])
        if not any(isinstance(c, StopOnNonFiniteLoss) for c in callbacks):
            callbacks.append(StopOnNonFiniteLoss())
        with _variables_kept_on_failure(self):
            return super().fit(x, y, *args, callbacks=callbacks, **kwargs)

    def evaluate(self, x=None, y=None, *args, **kwargs):
        with _variables_kept_on_failure(self):
            return super().evaluate(x, y, *args, **kwargs)

    def _check_loss(self) -> None:
        """``fit`` needs a loss: ``compile(loss=...)`` or the task's own ``compute_loss``
        (detectors). Keras raises on TensorFlow and PyTorch but trains on a loss of 0.0
        on JAX."""
        # A task whose compute_loss only checks the data (the classifier) says own_loss = False.
        own_loss = getattr(type(self), "own_loss", type(self).compute_loss is not keras.Model.compute_loss)
        if not own_loss and getattr(self, "_compile_loss", None) is None and getattr(
                self, "loss", None) is None:
            raise ValueError(
                f"{type(self).__name__}.fit needs a loss: compile(optimizer, loss=...), e.g. "
                "'sparse_categorical_crossentropy' for a classifier or "
                "mobilenet_zoo.segmentation.segmentation_loss() for DeepLabV3."
            )

    def predict(self, x, *args, **kwargs):
        self._check_images(x, "predict")
        self._warn_unit_range(x)
        return super().predict(x, *args, **kwargs)

    def _warn_unit_range(self, x: Any) -> None:
        """A warning when photos look scaled to [0, 1]: the model takes pixels in [0, 255]
        (its preprocessing maps them to [-1, 1]), and [0, 1] gives confident nonsense."""
        if not getattr(self, "include_preprocessing", True):
            return
        if isinstance(x, np.ndarray) and x.dtype.kind == "f" and x.size and x.ndim >= 3:
            low, high = float(x.min()), float(x.max())
            if low >= 0.0 and 0.0 < high <= 1.0:
                warnings.warn(
                    f"{type(self).__name__}.predict: the images' pixels lie in [0, {high:.3g}]; the "
                    "model takes pixels in [0, 255] (as decoded from a file). Multiply [0, 1] "
                    "images by 255.", UserWarning, stacklevel=3)

    def predict_step(self, *args):
        # The backend trainer's own step (JAX passes (state, data) and returns
        # (outputs, state)); postprocess on top of it.
        result = super().predict_step(*args)
        if keras.backend.backend() == "jax":
            outputs, state = result
            return self.postprocess(outputs), state
        return self.postprocess(result)

    def serving_function(self, batch_size: int = 1, **postprocess_kwargs: Any):
        """The exported function: ``postprocess(self(images), tflite_ops=True)``."""
        post = functools.partial(self.postprocess, tflite_ops=True, **postprocess_kwargs)
        return make_serving_function(self, batch_size, post)

    def serving_fn(self, batch_size: int = 1, **postprocess_kwargs: Any):
        """Deprecated name of ``serving_function`` (one name per idea)."""
        warnings.warn("`Task.serving_fn` is deprecated: call `serving_function`.", DeprecationWarning,
                      stacklevel=2)
        return self.serving_function(batch_size, **postprocess_kwargs)

    # ----------------------------------------------------------------- config
    def get_config(self) -> dict[str, Any]:
        # Not keras.Model.get_config: a functional config cannot be passed back
        # to a subclass constructor (same choice as KerasHub's Task).
        return {
            "name": self.name,
            "trainable": self.trainable,
            "backbone": serialize(self.backbone),
            "preprocessor": serialize(self.preprocessor),
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]):
        return cls(**{k: _maybe_deserialize(v) for k, v in config.items()})

    def with_image_size(self, image_size: int | tuple, copy_weights: bool = True):
        """The same model for another input size (weights copied).

        Every task here is fully convolutional up to its head, so all weights
        fit; detectors recompute their anchors.
        """
        size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        config = self.get_config()
        channels = self.inputs[0].shape[-1]
        config["backbone"] = self.backbone.with_input_shape((*size, channels), copy_weights=False)
        if "image_size" in config:
            config["image_size"] = list(size)
        if self.preprocessor is not None and hasattr(self.preprocessor, "image_size"):
            pre = self.preprocessor.get_config()
            square = size[0] if size[0] == size[1] else None
            pre["image_size"] = list(size) if isinstance(pre["image_size"], list) else square
            if pre["image_size"] is None:
                raise ValueError(
                    f"{type(self.preprocessor).__name__} takes square images; got image_size={size}."
                )
            config["preprocessor"] = type(self.preprocessor).from_config(pre)
        rebuilt = type(self).from_config(config)
        if copy_weights:
            rebuilt.set_weights(self.get_weights())
        return rebuilt

    # ----------------------------------------------------------------- presets
    @classmethod
    def from_preset(cls, preset: str, input_shape: tuple | None = None, **kwargs: Any):
        """Builds this task on a preset.

        A preset of this task (same ``task`` in its manifest entry) builds with
        the preset's ``task_config`` (overridden by ``kwargs``) and loads whole;
        with another ``num_classes`` every layer but the class head loads. A
        classifier preset (the ImageNet family) or a backbone-only preset
        initialises the backbone only and the head starts fresh (transfer
        learning), as in KerasHub. A preset of another task head (an SSD preset
        for a classifier) is refused, naming what fits
        (``mobilenet_zoo.presets.check_preset_fits``).

        Args:
            preset: a name from ``mobilenet_zoo.presets.list_presets()``.
            input_shape: the backbone's input (default: the preset's size;
                detectors rebuild it at their ``image_size``).
            **kwargs: the task's constructor arguments (``num_classes``...).

        Raises:
            ValueError: an unknown preset, or a preset of another task head.
        """
        check_known_kwargs(cls, kwargs, "from_preset", skip=("backbone", "weights"))
        # The rule first, from the metadata: a refused preset is neither downloaded nor built.
        own = presets.check_preset_fits(presets.preset_metadata(preset), cls) == "whole"
        if not own and "num_classes" not in kwargs and _requires(cls, "num_classes"):
            raise ValueError(
                f"{preset} initialises only the backbone of {cls.__name__} (a new head): give the "
                f"number of classes of your data, e.g. {cls.__name__}.from_preset({preset!r}, "
                "num_classes=N).")
        meta = presets.installed_preset(preset)
        backbone = MobileNetBackbone.from_preset(preset, input_shape, **presets.backbone_arguments(cls, meta))
        config = presets.task_config_of(meta) if own else {}
        if kwargs.get("num_classes", config.get("num_classes")) != config.get("num_classes"):
            config.pop("class_names", None)  # a new head: the preset's names do not apply
        model = cls(backbone=backbone, **{**config, **kwargs})
        if own:
            presets.load_into(model, preset, skip_mismatched_head=not presets.head_matches(model, meta))
        return model
