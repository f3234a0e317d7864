"""Small helpers shared across modules: config round trips, argument checks."""

from __future__ import annotations

import inspect
from typing import Any

import keras


class ConfigMixin:
    """``from_config(get_config())`` for plain objects whose config is their kwargs.

    With ``keras.saving.register_keras_serializable`` a subclass serialises under
    its own name, so it comes back as itself after save/load.
    """

    @classmethod
    def from_config(cls, config: dict):
        return cls(**config)


def build_piece(obj, default_cls):
    """A detection piece from an object, a serialised dict, a kwargs dict or None."""
    if obj is None:
        return default_cls()
    if isinstance(obj, dict):
        if "class_name" in obj and "config" in obj:
            return keras.saving.deserialize_keras_object(obj)
        return default_cls(**obj)
    return obj


def check_num_classes(num_classes) -> None:
    """ValueError unless ``num_classes`` is an int >= 1 (bool excluded)."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"`num_classes` must be an int >= 1, got {num_classes!r}.")


KERAS_MODEL_KWARGS = ("name", "dtype", "trainable")


def check_known_kwargs(cls: type, kwargs: dict[str, Any], where: str,
                       skip: tuple[str, ...] = ()) -> None:
    """Refuses keyword arguments that ``cls.__init__`` does not take (a typo such as
    ``num_clases=3`` would otherwise be swallowed by ``keras.Model``'s ``**kwargs``)."""
    known = {p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "kwargs")}
    known = (known | set(KERAS_MODEL_KWARGS)) - set(skip)
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise TypeError(f"{cls.__name__}.{where}() got unknown argument(s) {unknown}; it takes "
                        f"{sorted(known)}.")


def check_int(name: str, value, minimum: int = 1) -> None:
    """ValueError unless ``value`` is an int >= ``minimum`` (bool excluded)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"`{name}` must be an int >= {minimum}, got {value!r}.")


def check_fraction(name: str, value) -> None:
    """ValueError unless ``value`` is a number in (0, 1]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value <= 1.0:
        raise ValueError(f"`{name}` must be in (0, 1], got {value!r}.")


def assert_in_graph(ok, message: str) -> None:
    """Stops ``fit`` / ``predict`` with ``message`` when the boolean tensor ``ok`` is False.

    One data check for every backend: ``tf.debugging.assert_equal`` on TensorFlow
    (graph or eager); ``jax.debug.callback`` under ``jax.jit``, whose ValueError
    surfaces in the ``JaxRuntimeError`` that the step raises; a plain ValueError on
    eager values (PyTorch, JAX outside jit).
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf  # loaded already: it is the backend

        tf.debugging.assert_equal(ok, True, message=message)
        return
    if backend == "jax":
        import jax

        if isinstance(ok, jax.core.Tracer):
            def _check(value) -> None:
                if not bool(value):
                    raise ValueError(message)

            jax.debug.callback(_check, ok)
            return
    if not bool(keras.ops.convert_to_numpy(ok)):
        raise ValueError(message)
