"""Every model of the package in one import: importing this module registers every
serialisable class (backbone, task models, preprocessors, detection pieces, layers,
losses) with Keras, so ``keras.saving.load_model`` opens any ``.keras`` file that a
recipe or the converter writes; ``load_model`` does both."""

from __future__ import annotations

import os
from typing import Any

import keras

from mobilenet_zoo import backbone, classification, detection, segmentation  # noqa: F401
from mobilenet_zoo.distillation import losses as _distillation_losses  # noqa: F401


def load_model(path: str | os.PathLike, **kwargs: Any) -> keras.Model:
    """``keras.saving.load_model`` with every class of the package registered.

    Args:
        path: a ``.keras`` file written by ``model.save`` (any task of the package).
        **kwargs: passed to ``keras.saving.load_model`` (``compile``, ``safe_mode``).
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"`path` must be a path to a .keras file; got {type(path).__name__} {path!r}.")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No such .keras file: {os.fspath(path)!r}.")
    return keras.saving.load_model(os.fspath(path), **kwargs)
