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

from mobilenet_zoo.convert.core import build_for, convert
from mobilenet_zoo.convert.keras_files import alpha_from_name, read_keras3_weights, read_keras_file
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
