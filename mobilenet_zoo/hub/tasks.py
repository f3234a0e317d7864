"""Model classes by name, timm-style: each class registers itself with
``@register_task()``; presets, converters and installers build models through
``get_task(name)`` and import no model module.

The built-in classes are found on first use from ``BUILTIN_TASKS`` (name ->
defining module, as data), so ``get_task("SSD")`` works whichever modules the
caller imported; a class from another package registers itself when its module
is imported (timm's ``register_model`` works the same way, ``timm/models/_registry.py``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T", bound=type)

# Where the built-in models are defined, as data: imported by name when a preset or a
# converter asks for a model. Like the package root's and the sub-commands' by-name imports
# (``mobilenet_zoo.__init__``, ``cli.COMMANDS``), it is invisible to import-linter on
# purpose: the presets layer reaches the models at run time (a model's ``weights=`` may
# install a preset that builds that model) without importing them.
BUILTIN_TASKS: dict[str, str] = {
    "MobileNetBackbone": "mobilenet_zoo.backbone",
    "MobileNetClassifier": "mobilenet_zoo.classification.classifier",
    "SSD": "mobilenet_zoo.detection.ssd",
    "FasterRCNN": "mobilenet_zoo.detection.faster_rcnn",
    "DeepLabV3": "mobilenet_zoo.segmentation.deeplab",
}

_REGISTRY: dict[str, type] = {}


def register_task(name: str | None = None) -> Callable[[T], T]:
    """Class decorator: records the class under ``name`` (default: its ``__name__``).

    Registering a second, different class under a taken name is a ValueError (a
    re-import of the same module re-registers its own class, which is allowed, as
    Keras' ``register_keras_serializable`` does); the built-in names belong to their
    modules (``BUILTIN_TASKS``), whether or not those are imported yet.
    """
    if isinstance(name, type):
        raise TypeError("register_task is a decorator factory: write @register_task() (or "
                        f"@register_task('NAME')), not @register_task; got the class {name.__name__}.")
    if name is not None and (not isinstance(name, str) or not name):
        raise TypeError(f"The task name must be a non-empty str (or None: the class's name); got {name!r}.")

    def decorate(cls: T) -> T:
        if not isinstance(cls, type):
            raise TypeError(f"register_task() decorates a class; got {cls!r}.")
        key = name or cls.__name__
        builtin = BUILTIN_TASKS.get(key)
        if builtin is not None and cls.__module__ != builtin:
            raise ValueError(f"Task name {key!r} is the built-in {builtin}.{key}; register "
                             f"{cls.__module__}.{cls.__qualname__} under another name.")
        known = _REGISTRY.get(key)
        if known is not None and f"{known.__module__}.{known.__qualname__}" != (
                f"{cls.__module__}.{cls.__qualname__}"):
            raise ValueError(f"Task name {key!r} is taken by {known.__module__}.{known.__qualname__}; "
                             f"register {cls.__module__}.{cls.__qualname__} under another name.")
        _REGISTRY[key] = cls
        return cls

    return decorate


def get_task(name: str) -> type:
    """The model class registered as ``name``; ValueError listing the known names."""
    if not isinstance(name, str):
        raise TypeError(f"A task name is a str (e.g. 'SSD'); got {name!r}.")
    if name not in _REGISTRY and name in BUILTIN_TASKS:
        importlib.import_module(BUILTIN_TASKS[name])
    if name not in _REGISTRY:
        close = [n for n in task_names() if n.lower() == name.lower()]
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"Unknown task {name!r}; the known tasks are {task_names()}.{hint}")
    return _REGISTRY[name]


def task_names() -> list[str]:
    """Every name ``get_task`` answers: the built-in models and those registered since."""
    return sorted(set(BUILTIN_TASKS) | set(_REGISTRY))
