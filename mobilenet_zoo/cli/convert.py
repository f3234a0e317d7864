"""``mobilenet-zoo convert SRC --out FILE``: TF-slim checkpoints / frozen graphs,
keras.applications ``.h5`` / ``.keras`` files and TF OD API SSD checkpoints (or their
tfjs exports) to the package's by-layer-name weights (``mobilenet_zoo.convert``).

The source is only read: an ``--out`` that is the source, one of its files or inside
its folder is refused, and an existing ``--out`` is replaced only with
``--overwrite``; both checks come before TensorFlow loads. "not used" lists the
source's layers with weights that the model did not take (layers without weights,
such as ReLU, Dropout or Reshape, are not listed).
Exit codes: 0 written, 2 bad input, 3 TensorFlow missing."""

from __future__ import annotations

import argparse
import glob
import json
import os

from mobilenet_zoo.cli import common as cli
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
    cli.add_overwrite_flag(parser, "--out", batch=False)
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
    check_out(args.src, args.out, args.overwrite)
    cli.remove_stale_temporaries_of(args.out)  # a killed conversion's, its writer gone
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


def source_files(src: str) -> list[str]:
    """The files that converting ``src`` reads: the file itself; a TF checkpoint
    prefix's ``.index`` / ``.data-*`` / ``.meta``; a tfjs manifest's shards; every file
    under a folder."""
    if os.path.isdir(src):
        return [os.path.join(d, f) for d, _, files in os.walk(src) for f in files]
    prefix = src[: -len(".index")] if src.endswith(".index") else src
    found = [src, *glob.glob(glob.escape(prefix) + ".*")]
    if src.endswith(".json") and os.path.isfile(src):
        try:  # tfjs: [{"paths": ["group1-shard1of1.bin"], "weights": [...]}, ...]
            with open(src) as f:
                manifest = json.load(f)
            shards = [p for group in manifest for p in group.get("paths", [])]
        except (OSError, ValueError, TypeError, AttributeError):
            shards = []  # not a manifest: convert() says so
        found += [os.path.join(os.path.dirname(src), p) for p in shards if isinstance(p, str)]
    return found


def check_out(src: str, out: str, overwrite: bool) -> None:
    """Usage errors (one line, exit 2) before anything is read: ``--out`` is the source,
    one of its files or inside its folder; or ``--out`` exists and ``--overwrite`` was
    not given."""
    real_out = os.path.realpath(out)
    real_src = os.path.realpath(src)
    if real_out == real_src or real_out in {os.path.realpath(f) for f in source_files(src)}:
        cli.usage_exit(f"--out {out} is the source being converted ({src}); writing it would "
                       "destroy the input. Choose another --out.")
    if os.path.isdir(src) and real_out.startswith(real_src.rstrip(os.sep) + os.sep):
        cli.usage_exit(f"--out {out} is inside the source folder {src}; write it outside the "
                       "source. Choose another --out.")
    if os.path.isdir(out):
        cli.usage_exit(f"--out {out} is a folder; give a file name, e.g. "
                       f"{os.path.join(out, 'NAME.weights.h5')}")
    if os.path.lexists(out) and not overwrite:
        cli.usage_exit(f"--out {out} exists; pass --overwrite to replace it, or choose another "
                       "--out")


if __name__ == "__main__":
    raise SystemExit(main())
