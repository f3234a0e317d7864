"""Loading presets: what needs Keras (``mobilenet_zoo.presets`` exports these names,
loaded on first use); registering is ``register.py``."""

from __future__ import annotations

import contextlib
import contextvars
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keras

from mobilenet_zoo import weights_io
from mobilenet_zoo.hub import catalog
from mobilenet_zoo.hub.download import sha256_of
from mobilenet_zoo.hub.presets import (
    get_preset,
    imagenet_preset,
    list_presets,
)
from mobilenet_zoo.hub.registry import (
    all_presets,
)
from mobilenet_zoo.hub.tasks import get_task, task_names
from mobilenet_zoo.presets.install import install as install_preset

# Presets being registered: ``register_preset`` loads one through the real ``from_preset``
# (same code path) before anything is written; these names resolve to the staged file.
_STAGED: contextvars.ContextVar[dict[str, tuple[dict[str, Any], Path]] | None] = (
    contextvars.ContextVar("mobilenet_zoo_staged_presets", default=None))


@contextlib.contextmanager
def _staged(name: str, meta: dict[str, Any], path: Path) -> Iterator[None]:
    """Within the block, preset ``name`` resolves to ``meta`` and ``path`` (this context only)."""
    staged = dict(_STAGED.get() or {})
    staged[name] = (dict(meta, name=name, location="cache", directory=str(path.parent)), path)
    token = _STAGED.set(staged)
    try:
        yield
    finally:
        _STAGED.reset(token)


def _staged_entry(name: Any) -> tuple[dict[str, Any], Path] | None:
    staged = _STAGED.get()
    return staged.get(name) if staged and isinstance(name, str) else None


def build_from_metadata(metadata: dict[str, Any], **overrides: Any) -> keras.Model:
    """The (untrained) model a preset's metadata describes: a backbone, or its task (a
    detector with the preset's ``resize_mode``)."""
    task = metadata.get("task")
    if task and (task == "MobileNetBackbone" or task not in task_names()):
        raise ValueError(f"`task` {task!r} is not a task model of mobilenet_zoo "
                         f"({', '.join(n for n in task_names() if n != 'MobileNetBackbone')}).")
    cls = get_task(task) if task else None
    MobileNetBackbone = get_task("MobileNetBackbone")
    size = metadata["input_size"]
    arch = {"alpha": metadata["alpha"], "input_shape": (size, size, 3),
            "depth_multiplier": metadata.get("depth_multiplier", 1),
            "min_depth": metadata.get("min_depth", 8), "variant": metadata.get("variant", "separable")}
    if cls is None:
        return MobileNetBackbone(**arch)
    arch.update(backbone_arguments(cls, metadata))
    config = task_config_of(metadata)
    # A detector preset names the resize its weights were trained with ("stretch": TF OD API
    # fixed_shape_resizer; "pad": face-api.js padToSquare); its task_config may repeat it.
    if metadata.get("resize_mode") is not None:
        config.setdefault("resize_mode", metadata["resize_mode"])
    return cls(backbone=MobileNetBackbone(**arch), **{**config, **overrides})


def backbone_arguments(cls: type, metadata: dict[str, Any]) -> dict[str, Any]:
    """The backbone arguments a task's preset builds with: the task's ``backbone_defaults``
    (SSD's ``min_depth`` 16, DeepLabV3's ``output_stride`` 16), the preset's recorded
    ``output_stride`` first (a DeepLabV3 registered at 8 rebuilds at 8)."""
    arguments = dict(getattr(cls, "backbone_defaults", {}))
    if metadata.get("output_stride") is not None:
        arguments["output_stride"] = int(metadata["output_stride"])
    return arguments


def task_config_of(metadata: dict[str, Any]) -> dict[str, Any]:
    """The task's constructor arguments of a preset (``num_classes`` included)."""
    config = dict(metadata.get("task_config", {}))
    if "num_classes" in metadata:
        config.setdefault("num_classes", metadata["num_classes"])
    return config


def check_metadata(path: str | os.PathLike, metadata: dict[str, Any]) -> None:
    """Builds the model ``metadata`` describes and loads ``path`` into it, strictly."""
    try:
        model = build_from_metadata(metadata)
        load_into(model, path)
    except (ValueError, TypeError) as err:
        raise ValueError(f"The metadata cannot be honoured by {path}: {err}") from err


def preset_metadata(name: str) -> dict[str, Any]:
    """A preset's metadata without installing it (``get_preset``; a preset that
    ``register_preset`` is checking included): enough for ``check_preset_fits``."""
    staged = _staged_entry(name)
    return dict(staged[0]) if staged is not None else get_preset(name)


def installed_preset(name: str) -> dict[str, Any]:
    """A preset's metadata after installing it if it is remote (``install.py``): the
    installed entry holds what the archive said (e.g. an SSD's ``task_config``)."""
    staged = _staged_entry(name)
    if staged is not None:
        return dict(staged[0])
    if get_preset(name)["location"] == "remote":
        preset_path(name)
    return get_preset(name)


def preset_path(name: str) -> Path:
    """Path of a preset's file, installed first if it is remote, after checking its sha256."""
    staged = _staged_entry(name)
    if staged is not None:  # being registered: register_preset checked the file it wrote
        return staged[1]
    meta = get_preset(name)
    if meta["location"] == "remote":
        install_preset(name)
        meta = get_preset(name)
    path = Path(meta["directory"]) / meta["file"]
    if meta["location"] == "package":
        repair = "reinstall mobilenet_zoo (or `git checkout weights/` in a clone)"
    elif name in catalog.remote_presets():
        repair = f"install it again: mobilenet-zoo presets fetch {name} --force"
    else:
        repair = f"register it again: mobilenet_zoo.presets.register_preset({name!r}, FILE, metadata)"
    if not path.is_file():
        raise ValueError(f"Preset {name!r}: weights file {path} is missing; {repair}.")
    found = sha256_of(path)
    if found != meta["sha256"]:
        raise ValueError(
            f"Preset {name!r}: sha256 of {path} is {found}, the manifest expects "
            f"{meta['sha256']}. The file is corrupt or was replaced; {repair}.")
    return path


def _architecture_of(model: keras.Model) -> dict[str, Any]:
    backbone = getattr(model, "backbone", model)
    return {
        "alpha": getattr(backbone, "alpha", None),
        "depth_multiplier": getattr(backbone, "depth_multiplier", 1),
        "variant": getattr(backbone, "variant", "separable"),
    }


def head_matches(model: keras.Model, meta: dict[str, Any]) -> bool:
    """True when ``model``'s head has the preset's number of classes."""
    return getattr(model, "num_classes", None) == meta.get("num_classes")


def _resolve(weights: str | os.PathLike) -> tuple[Path, dict[str, Any]]:
    weights = os.fspath(weights)
    staged = _staged_entry(weights)
    if staged is not None:
        return staged[1], dict(staged[0])
    if weights in all_presets():
        path = preset_path(weights)
        meta = get_preset(weights)
    elif os.path.isfile(weights):
        path = Path(weights)
        if not weights_io.is_by_name_file(path):
            return path, {}  # a Keras save_weights file (or garbage): load_into says which
        meta = weights_io.read_metadata(path)
        for name, entry in all_presets().items():  # a copy of a preset's file: check it too
            if entry.get("file") == path.name and sha256_of(path) != entry["sha256"]:
                raise ValueError(
                    f"{path} has the file name of preset {name!r} but not its sha256 "
                    f"({entry['sha256'][:12]}...): the file is corrupt or another model."
                )
    else:
        raise ValueError(
            f"`weights` must be None, a preset name or an existing file; got "
            f"{weights!r}. Available presets: {list_presets() or 'none'}."
        )
    return path, meta


def _input_size(backbone: keras.Model) -> int | None:
    height, width = tuple(backbone.inputs[0].shape[1:3])
    return height if height == width else None


def load_into(model: keras.Model, weights: str | os.PathLike,
              skip_mismatched_head: bool = False) -> weights_io.LoadReport:
    """Loads a preset name or a weights file into a backbone or task model.

    ``weights="imagenet"`` is the published ImageNet preset of the model's alpha
    and input size (``imagenet_preset``). A backbone takes the backbone layers
    (a head in the file is ignored); a
    task model must have the file's number of classes, unless
    ``skip_mismatched_head``: then every layer whose shapes match loads and
    the others (the class head) keep their initialisation (fine-tuning from a
    detection preset). The report lists what was skipped in ``missing``.
    """
    if weights == "imagenet":
        backbone = getattr(model, "backbone", model)
        weights = imagenet_preset(getattr(backbone, "alpha", 1.0), _input_size(backbone))
    path, meta = _resolve(weights)
    if not weights_io.is_by_name_file(path):
        try:  # Keras' own model.save_weights() format holds the same layers
            model.load_weights(path)
        except Exception as err:
            raise ValueError(
                f"{path} is neither a by-layer-name HDF5 file (keras.applications layout, our "
                f"converters) nor a Keras .weights.h5 of this architecture: {err}"
            ) from err
        return weights_io.LoadReport(loaded=[la.name for la in weights_io.iter_weighted_layers(model)])
    arch = _architecture_of(model)
    for key in ("alpha", "depth_multiplier", "variant"):
        if key in meta and arch[key] is not None and meta[key] != arch[key]:
            raise ValueError(
                f"Weights {weights!r} are for {key}={meta[key]!r}; the model has "
                f"{key}={arch[key]!r}. Build the model with {key}={meta[key]!r} "
                "(any input size works)."
            )
    num_classes = getattr(model, "num_classes", None)
    theirs, ours = meta.get("min_depth"), getattr(getattr(model, "backbone", model), "min_depth", None)
    if theirs is not None and ours is not None and theirs != ours and not skip_mismatched_head:
        # The TF OD API restores only the checkpoint variables whose shape matches
        # (variables_helper.get_variables_available_in_checkpoint); e.g. min_depth 16
        # at alpha 0.25 widens conv1 from 8 to 16 channels.
        report = weights_io.assign_matching(model, weights_io.read_by_name(path), source=str(weights))
        if report.missing:
            warnings.warn(f"Weights {weights!r} were trained with min_depth={theirs}; the model has "
                          f"min_depth={ours}, so {report.missing} keep their initialisation.",
                          UserWarning, stacklevel=3)
        return report
    if skip_mismatched_head:
        return weights_io.assign_matching(model, weights_io.read_by_name(path), source=str(weights))
    if num_classes is not None and "num_classes" in meta and num_classes != meta["num_classes"]:
        raise ValueError(
            f"Weights {weights!r} have a {meta['num_classes']}-class head; the "
            f"classifier has num_classes={num_classes}. For transfer learning load "
            "them into the backbone: MobileNetClassifier(MobileNetBackbone("
            f"weights={weights!r}), num_classes={num_classes})."
        )
    return weights_io.load_by_name(model, path)

