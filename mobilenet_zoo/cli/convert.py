"""``mobilenet-zoo convert SRC --out FILE``: TF-slim checkpoints / frozen graphs,
keras.applications ``.h5`` / ``.keras`` files and TF OD API SSD checkpoints (or their
tfjs exports) to the package's by-layer-name weights (``mobilenet_zoo.convert``).
Exit codes: 0 written, 2 bad input, 3 TensorFlow missing."""

from __future__ import annotations

import argparse

from mobilenet_zoo.cli import start_backend
from mobilenet_zoo.hub.download import sha256_of
from mobilenet_zoo.tensorflow_support import TensorFlowRequiredError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="mobilenet-zoo convert",
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
    start_backend()  # after parsing: --help and usage errors answer before TensorFlow loads
    from mobilenet_zoo.convert.core import convert

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


if __name__ == "__main__":
    raise SystemExit(main())
