"""Small helpers shared across modules."""

from __future__ import annotations

import keras


def rebuild_at(model: keras.Model, input_shape: tuple, copy_weights: bool = False) -> keras.Model:
    """The same model (from its config) with a new backbone ``input_shape``.

    Works for this package's models (a backbone, or a task model holding one).
    With ``copy_weights`` the weights are copied over (same architecture).
    """
    config = model.get_config()
    if "backbone" in config:
        inner = dict(config["backbone"]["config"], input_shape=tuple(input_shape), rho=None)
        config = dict(config, backbone=dict(config["backbone"], config=inner))
    elif "input_shape" in config:
        config = dict(config, input_shape=tuple(input_shape), rho=None)
    else:
        raise ValueError(
            f"Cannot rebuild {type(model).__name__} at input_shape={input_shape}; "
            "build it with a static input size instead."
        )
    rebuilt = type(model).from_config(config)
    if copy_weights:
        rebuilt.set_weights(model.get_weights())
    return rebuilt


def check_num_classes(num_classes) -> None:
    """ValueError unless ``num_classes`` is an int >= 1 (bool excluded)."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"`num_classes` must be an int >= 1, got {num_classes!r}.")
