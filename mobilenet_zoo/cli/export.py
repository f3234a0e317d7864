"""``mobilenet-zoo export``: a preset or a ``.keras`` file to a ``.tflite`` file.

The file carries TFLite metadata (input normalisation, labels, output meaning)
so MediaPipe Tasks and the TFLite runtimes run it as it is; an SSD ends with the
``TFLite_Detection_PostProcess`` op by default. Prints the file's size and its
inputs and outputs. Reads nothing from the network: a remote preset must be
installed first (``mobilenet-zoo presets fetch NAME``).

Examples::

    mobilenet-zoo export --preset ssd_mobilenet_v1_face_512 --out face.tflite
    mobilenet-zoo export --preset mobilenet_v1_1.0_224_imagenet --out cls.tflite \\
        --quantize int8 --representative photos/ --uint8-io
    mobilenet-zoo export --model my_deeplab.keras --out seg.tflite --image-size 256

An existing ``--out`` is replaced only with ``--overwrite``. A preset is checked
from its metadata before Keras loads: an unknown name, a backbone-only preset (no
head: no task reads its feature maps, and TFLite metadata needs one) or a
published preset that is not installed is a usage error.

Exit codes: 0 written; 2 usage error (nothing was converted); 3 the export failed;
130 interrupted (Ctrl-C): ``--out`` is as it was. The temporary files of ``--out`` that a
killed export left (``OUT.tmp-PID``, its writer gone) are removed at start.
"""

from __future__ import annotations

import argparse
import os
import sys

from mobilenet_zoo.cli import common as cli
from mobilenet_zoo.cli import start_backend
from mobilenet_zoo.cli.common import EXIT_FATAL, EXIT_OK
from mobilenet_zoo.tensorflow_support import TensorFlowRequiredError

QUANTIZE_CHOICES = ("none", "dynamic", "float16", "int8")
POSTPROCESS_CHOICES = ("detection_postprocess", "detection_postprocess_fast", "builtin_nms")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mobilenet-zoo export",
        description="Export a preset or a .keras model to a .tflite file with TFLite metadata "
                    "(MediaPipe Tasks: ObjectDetector, ImageClassifier, ImageSegmenter).",
        epilog="exit codes: 0 written; 2 usage error (nothing was converted); 3 export failed; "
               "130 interrupted (Ctrl-C; --out left as it was)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--preset", metavar="NAME", help="a preset (shipped or installed in the cache)")
    source.add_argument("--model", metavar="FILE.keras", help="a model saved with model.save()")
    parser.add_argument("--out", required=True, metavar="FILE.tflite", help="the file to write")
    cli.add_overwrite_flag(parser, "--out", batch=False)
    parser.add_argument("--quantize", choices=QUANTIZE_CHOICES, default="none",
                        help="none (float32), dynamic (int8 weights), float16, int8 (needs "
                             "--representative)")
    parser.add_argument("--representative", metavar="DIR",
                        help="folder of images to calibrate int8 (read recursively)")
    parser.add_argument("--max-representative", type=int, default=100, metavar="N",
                        help="use at most N images of --representative (default 100)")
    parser.add_argument("--uint8-io", action="store_true",
                        help="int8 only: uint8 image input (camera pixels) and uint8 outputs for "
                             "classifiers / segmenters")
    parser.add_argument("--postprocess", choices=POSTPROCESS_CHOICES,
                        help="SSD post-processing: detection_postprocess_fast (default; the "
                             "TFLite op with class-agnostic NMS, as the TF OD API's "
                             "export_tflite_ssd_graph.py writes by default, runs in MediaPipe, "
                             "the fastest), detection_postprocess (the op with per-class NMS, "
                             "as Keras predict) or builtin_nms (the Keras predict layout; "
                             "MediaPipe cannot read it)")
    parser.add_argument("--image-size", type=int, metavar="N",
                        help="export at N x N (a dynamic-size model needs it); the file's "
                             "metadata states N and the model's resize mode")
    parser.add_argument("--no-metadata", action="store_true", help="write no TFLite metadata")
    return parser


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Usage errors, found before TensorFlow is imported."""
    if args.model is not None:
        if not os.path.isfile(args.model):
            parser.error(f"--model {args.model!r}: no such file")
        if not args.model.endswith(".keras"):
            parser.error(f"--model {args.model!r}: expected a .keras file (model.save('x.keras'))")
    if not args.out.endswith(".tflite"):
        parser.error(f"--out {args.out!r}: the file name must end with .tflite")
    if os.path.isdir(args.out):
        parser.error(f"--out {args.out!r} is a folder; give a file name inside it")
    blocker = cli.file_in_the_way(args.out)
    if blocker is not None:  # `--out cachefile/x.tflite`: a usage error, before any loading
        cli.usage_exit(f"--out {args.out} cannot be written: {blocker} is a file, not a folder; "
                       "choose an --out outside it")
    if args.quantize == "int8" and not args.representative:
        parser.error("--quantize int8 needs --representative DIR (calibration images)")
    if args.representative and args.quantize != "int8":
        parser.error(f"--representative is only used by --quantize int8 (got --quantize "
                     f"{args.quantize})")
    if args.representative and not os.path.isdir(args.representative):
        parser.error(f"--representative {args.representative!r} is not a folder")
    if args.uint8_io and args.quantize != "int8":
        parser.error("--uint8-io needs --quantize int8")
    if args.image_size is not None and args.image_size < 32:
        parser.error(f"--image-size must be >= 32, got {args.image_size}")
    if args.max_representative < 1:
        parser.error(f"--max-representative must be >= 1, got {args.max_representative}")
    if os.path.lexists(args.out) and not args.overwrite:
        cli.usage_exit(f"--out {args.out} exists; pass --overwrite to replace it, or choose "
                       "another --out")
    if args.preset is not None:  # known, a task model, installed: from its metadata alone
        cli.check_preset(args.preset, "export")


def representative_images(folder: str, height: int, width: int, limit: int,
                          minus_one_to_one: bool, resize_mode: str | None = None) -> list:
    """Up to ``limit`` images of ``folder`` (recursive, sorted) resized to the
    model's input, float32 pixels in [0, 255] (or [-1, 1] for a model without
    its own preprocessing), batch 1 each (``export.checks.folder_samples``)."""
    from mobilenet_zoo.export.checks import folder_samples

    skipped: list[str] = []
    try:
        samples = folder_samples(folder, height, width, limit, minus_one_to_one, skipped, resize_mode)
    finally:
        for line in skipped:
            print(f"skipped calibration image {line}", file=sys.stderr)
    return samples


def load_source(args):
    """The model to export and its metadata info (preset name when there is one)."""
    os.environ["MOBILENET_ZOO_OFFLINE"] = "1"  # never download: a remote preset must be installed
    from mobilenet_zoo import presets
    from mobilenet_zoo.models import load_model as load_keras_file

    if args.model is not None:
        return load_keras_file(args.model), {}
    meta = presets.get_preset(args.preset)  # ValueError listing the presets
    if meta["location"] == "remote":
        raise ValueError(f"preset {args.preset!r} is not installed and this command reads nothing "
                         f"from the network; install it first: mobilenet-zoo presets "
                         f"fetch {args.preset}")
    overrides = {}
    if meta.get("task") == "MobileNetClassifier" and args.uint8_io:
        overrides["include_preprocessing"] = True  # uint8 camera pixels in
    if meta.get("task") in (None, "MobileNetBackbone"):
        raise ValueError(f"preset {args.preset!r} is a backbone (features, no task head): export a "
                         "task model built on it with --model FILE.keras")
    model = presets.build_from_metadata(meta, **overrides)
    presets.load_into(model, args.preset)
    return model, {"preset": args.preset}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_args(parser, args)
    kept = (f"{args.out} is as it was" if os.path.lexists(args.out)
            else f"{args.out} was not written")
    return cli.run_guarded(lambda: _export(args), kept=kept + " (no temporary file is left)")


def _export(args: argparse.Namespace) -> int:
    """Loads the model, converts it and writes ``--out``; the exit code."""
    # A killed export's temporary files of --out (their writer gone): removed.
    cli.remove_stale_temporaries_of(args.out)
    start_backend()  # after parsing: --help and usage errors answer before Keras loads
    try:
        # First: without TensorFlow, one clear error before any work.
        from mobilenet_zoo.export import to_tflite
        from mobilenet_zoo.export.checks import resize_mode_of

        model, info = load_source(args)
        samples = None
        if args.quantize == "int8":
            h, w = (args.image_size,) * 2 if args.image_size else tuple(model.inputs[0].shape[1:3])
            if h is None or w is None:
                raise ValueError("the model takes any size: give --image-size N")
            samples = representative_images(args.representative, h, w, args.max_representative,
                                            not getattr(model, "include_preprocessing", True),
                                            resize_mode_of(model))
        from mobilenet_zoo.detection.ssd import SSD
        from mobilenet_zoo.export import metadata as tflite_metadata

        postprocess = args.postprocess
        if postprocess is None and isinstance(model, SSD):
            # The layout MediaPipe Tasks and phones read; class-agnostic NMS as the TF OD
            # API's export_tflite_ssd_graph.py (use_regular_nms=False) and the fastest
            # (docs/deploy.md: the only one 2x faster in int8 than in float).
            postprocess = "detection_postprocess_fast"

        flat = to_tflite(model, args.out, quantize=None if args.quantize == "none" else args.quantize,
                         representative_data=samples, image_size=args.image_size,
                         postprocess=postprocess, metadata=False if args.no_metadata else info,
                         uint8_io=args.uint8_io)
    except (ValueError, OSError, TensorFlowRequiredError) as err:  # one line, no traceback
        print(f"error: {err}", file=sys.stderr)
        return EXIT_FATAL
    print(f"wrote {args.out}: {len(flat):,} bytes ({len(flat) / 2**20:.1f} MiB)")
    print(tflite_metadata.describe(flat))
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
