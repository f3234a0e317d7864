"""Registry of pretrained weights (one place, timm-style).

Each preset names a weights file and its metadata: task, alpha, input size,
classes, sha256, source, licence and published metric (``weights/manifest.json``
keys). Files are checked against their sha256 before loading. Presets come from

1. the weights shipped inside the package (``mobilenet_zoo/weights``: the
   1.0-224 ImageNet classifier and the face SSD), no network needed;
2. the user cache (``$MOBILENET_ZOO_CACHE/presets``, default
   ``~/.cache/mobilenet_zoo/presets``): presets installed or registered later;
3. the published family (``catalog.py``): the 16 TF-slim ImageNet variants and
   the TF OD API COCO SSDs, downloaded, verified and converted on first use
   (``install.py``), then offline.

``weights="imagenet"`` follows the model's alpha and input size, as
keras.applications does. ``mobilenet-zoo presets`` prints the table;
``mobilenet-zoo presets fetch NAME [--from FILE]`` installs one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mobilenet_zoo.hub.download import sha256_of
from mobilenet_zoo.hub.presets import (
    COCO_SSD,
    FACE_SSD,
    IMAGENET,
    METADATA_KEYS,
    WEIGHTS_ALIASES,
    backbone_weights,
    check_preset_fits,
    describe,
    get_preset,
    imagenet_preset,
    list_presets,
    resolve_weights,
)
from mobilenet_zoo.hub.registry import (
    ENV_CACHE_DIR,
    ENV_WEIGHTS_DIR,
    cache_dir,
    cache_root,
    downloads_dir,
    weights_dir,
)
from mobilenet_zoo.lazy import lazy_dir, lazy_getattr

if TYPE_CHECKING:  # loaded on first use: they need Keras (mobilenet_zoo.lazy)
    from mobilenet_zoo.presets.loading import (
        backbone_arguments,
        build_from_metadata,
        check_metadata,
        head_matches,
        installed_preset,
        load_into,
        preset_metadata,
        preset_path,
        task_config_of,
    )
    from mobilenet_zoo.presets.register import register_preset

__all__ = [
    "ENV_CACHE_DIR", "ENV_WEIGHTS_DIR", "IMAGENET", "FACE_SSD", "COCO_SSD", "WEIGHTS_ALIASES",
    "METADATA_KEYS", "cache_dir", "cache_root", "downloads_dir", "weights_dir", "resolve_weights",
    "imagenet_preset", "backbone_weights", "list_presets", "get_preset", "describe", "sha256_of",
    "check_preset_fits", "preset_metadata",
    "register_preset", "preset_path", "load_into", "build_from_metadata", "task_config_of", "check_metadata", "installed_preset", "head_matches",
    "backbone_arguments",
]

__getattr__ = lazy_getattr(__name__, {
    "register_preset": "mobilenet_zoo.presets.register",
    **{name: "mobilenet_zoo.presets.loading" for name in (
        "preset_path",
        "preset_metadata",
        "load_into",
        "build_from_metadata",
        "task_config_of",
        "check_metadata",
        "installed_preset",
        "head_matches",
        "backbone_arguments",
    )},
})
__dir__ = lazy_dir(globals())
