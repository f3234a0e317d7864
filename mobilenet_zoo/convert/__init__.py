"""Converters from published MobileNet v1 weights to our by-layer-name files.

Sources:

* TF Object Detection API ``ssd_mobilenet_v1`` checkpoints -> our ``SSD``;

* TF-slim checkpoints (``tf.train.load_checkpoint``) and TF-slim frozen graphs
  (``.pb`` GraphDef), with ``MobilenetV1/...`` variable names (``research/slim/nets/mobilenet_v1.py`` scopes);
* keras.applications MobileNet ``.h5`` files (weights-only or whole model, as
  cached in ``~/.keras/models``) and Keras 3 ``.keras`` files.

``python -m mobilenet_zoo.convert SRC --out weights/NAME.weights.h5``

One reader per source: ``slim.py`` (TF-slim checkpoints and frozen graphs),
``od_api.py`` (TF OD API SSD checkpoints), ``tfjs.py`` (TensorFlow.js weights),
``keras_files.py`` (keras.applications / Keras 3 files).

Every tensor is checked by name and shape against the Keras model of the alpha
the file holds; any mismatch or missing tensor fails naming it, and nothing is
written.
"""

from __future__ import annotations

import argparse
import importlib
from typing import Any

# Public names -> the module that defines them. They load on first use, so
# ``python -m mobilenet_zoo.convert --help`` answers before TensorFlow loads.
_EXPORTS = {
    "convert": "core", "build_for": "core",
    "_keras_meta": "keras_files", "alpha_from_name": "keras_files",
    "read_keras3_weights": "keras_files", "read_keras_file": "keras_files",
    "OD_API_PREFIX": "od_api", "convert_od_api_ssd": "od_api", "is_od_api_ssd": "od_api",
    "od_api_ssd_to_keras": "od_api",
    "BN_VARS": "slim", "SLIM_LOGITS": "slim", "SLIM_SCOPE": "slim", "read_slim_checkpoint": "slim",
    "read_slim_graphdef": "slim", "slim_layer_map": "slim", "slim_to_keras": "slim",
    "read_tfjs": "tfjs", "tfjs_od_api_ssd_to_checkpoint": "tfjs",
}
__all__ = sorted(_EXPORTS) + ["main"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mobilenet_zoo.convert",
        description="Convert TF-slim / keras.applications MobileNet v1 weights.",
    )
    parser.add_argument("src", help="checkpoint prefix or dir, frozen .pb, keras .h5 or .keras, "
                                    "or a tfjs *weights_manifest.json (TF OD API SSD)")
    parser.add_argument("--out", required=True, help="output file, e.g. weights/NAME.weights.h5")
    parser.add_argument(
        "--keep-background",
        action="store_true",
        help="keep the 1001st (background) logit of TF-slim heads instead of dropping it",
    )
    parser.add_argument("--image-size", "--input-size", dest="input_size", type=int, default=None,
                        help="training resolution (the preset's input_size)")
    parser.add_argument("--prefix", default="MobilenetV1",  # TF-slim's scope (slim.SLIM_SCOPE)
                        help="scope of the MobileNet variables")
    parser.add_argument(
        "--anchor-order", choices=["2017", "current"], default="2017",
        help="SSD checkpoints: box-spec order the predictor was trained with (2017 model zoo: 2017)",
    )
    args = parser.parse_args(argv)
    from mobilenet_zoo import cli

    cli.load_package()  # after parsing: TensorFlow and the model classes
    from mobilenet_zoo.convert.core import convert
    from mobilenet_zoo.presets import sha256_of
    from mobilenet_zoo.tensorflow_support import TensorFlowRequiredError

    try:
        meta = convert(args.src, args.out, args.keep_background, args.input_size, args.prefix,
                       anchor_order=args.anchor_order)
    except TensorFlowRequiredError as err:
        parser.exit(3, f"error: {err}\n")
    except (ValueError, OSError) as err:
        parser.exit(2, f"error: {err}\n")
    print(
        f"wrote {args.out}: alpha {meta['alpha']}, input {meta['input_size']}, "
        f"classes {meta.get('num_classes', 'none (backbone only)')}, "
        f"{meta['params']:,} params, {meta['layers_loaded']} layers; "
        f"sha256 {sha256_of(args.out)}"
    )
    if meta["unused"]:
        print(f"not used: {meta['unused']}")
    return 0
