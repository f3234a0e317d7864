"""Converters from published MobileNet v1 weights to our by-layer-name files.

Sources:

* TF Object Detection API ``ssd_mobilenet_v1`` checkpoints -> our ``SSD``;

* TF-slim checkpoints (``tf.train.load_checkpoint``) and TF-slim frozen graphs
  (``.pb`` GraphDef), with ``MobilenetV1/...`` variable names (``research/slim/nets/mobilenet_v1.py`` scopes);
* keras.applications MobileNet ``.h5`` files (weights-only or whole model, as
  cached in ``~/.keras/models``) and Keras 3 ``.keras`` files.

``mobilenet-zoo convert SRC --out weights/NAME.weights.h5``

One reader per source: ``slim.py`` (TF-slim checkpoints and frozen graphs),
``od_api.py`` (TF OD API SSD checkpoints), ``tfjs.py`` (TensorFlow.js weights),
``keras_files.py`` (keras.applications / Keras 3 files).

Every tensor is checked by name and shape against the Keras model of the alpha
the file holds; any mismatch or missing tensor fails naming it, and nothing is
written.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mobilenet_zoo.lazy import lazy_dir, lazy_getattr

if TYPE_CHECKING:  # loaded on first use, so `python -m mobilenet_zoo.convert --help` needs no Keras
    from mobilenet_zoo.convert.core import build_for, convert
    from mobilenet_zoo.convert.keras_files import (
        alpha_from_name,
        read_keras3_weights,
        read_keras_file,
    )
    from mobilenet_zoo.convert.od_api import (
        OD_API_PREFIX,
        convert_od_api_ssd,
        is_od_api_ssd,
        od_api_ssd_to_keras,
    )
    from mobilenet_zoo.convert.slim import (
        BN_VARS,
        SLIM_LOGITS,
        SLIM_SCOPE,
        read_slim_checkpoint,
        read_slim_graphdef,
        slim_layer_map,
        slim_to_keras,
    )
    from mobilenet_zoo.convert.tfjs import read_tfjs, tfjs_od_api_ssd_to_checkpoint

__all__ = [
    "BN_VARS", "OD_API_PREFIX", "SLIM_LOGITS", "SLIM_SCOPE", "alpha_from_name", "build_for",
    "convert", "convert_od_api_ssd", "is_od_api_ssd", "od_api_ssd_to_keras", "read_keras3_weights",
    "read_keras_file", "read_slim_checkpoint", "read_slim_graphdef", "read_tfjs", "slim_layer_map",
    "slim_to_keras", "tfjs_od_api_ssd_to_checkpoint",
]

__getattr__ = lazy_getattr(__name__, {
    "BN_VARS": "mobilenet_zoo.convert.slim",
    "OD_API_PREFIX": "mobilenet_zoo.convert.od_api",
    "SLIM_LOGITS": "mobilenet_zoo.convert.slim",
    "SLIM_SCOPE": "mobilenet_zoo.convert.slim",
    "alpha_from_name": "mobilenet_zoo.convert.keras_files",
    "build_for": "mobilenet_zoo.convert.core",
    "convert": "mobilenet_zoo.convert.core",
    "convert_od_api_ssd": "mobilenet_zoo.convert.od_api",
    "is_od_api_ssd": "mobilenet_zoo.convert.od_api",
    "od_api_ssd_to_keras": "mobilenet_zoo.convert.od_api",
    "read_keras3_weights": "mobilenet_zoo.convert.keras_files",
    "read_keras_file": "mobilenet_zoo.convert.keras_files",
    "read_slim_checkpoint": "mobilenet_zoo.convert.slim",
    "read_slim_graphdef": "mobilenet_zoo.convert.slim",
    "read_tfjs": "mobilenet_zoo.convert.tfjs",
    "slim_layer_map": "mobilenet_zoo.convert.slim",
    "slim_to_keras": "mobilenet_zoo.convert.slim",
    "tfjs_od_api_ssd_to_checkpoint": "mobilenet_zoo.convert.tfjs",
})
__dir__ = lazy_dir(globals())
