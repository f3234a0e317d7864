"""``mobilenet-zoo finetune`` (= ``python -m mobilenet_zoo.finetune``): your labelled photos
to a phone model in one command.

    python -m mobilenet_zoo.finetune detector photos/ --out runs/mine
    python -m mobilenet_zoo.finetune detector photos/ --preset ssd_mobilenet_v1_coco \\
        --format voc --epochs 20 --quantize int8
    python -m mobilenet_zoo.finetune classifier class_folders/ --out runs/classes
    python -m mobilenet_zoo.finetune segmenter images_and_masks/ --out runs/masks

DATA is a detector's folder labelled as COCO JSON, Pascal VOC or YOLO, a classifier's class
folders or a segmenter's images + PNG masks (detected, or --format); its labels are checked
before anything trains. A detection preset keeps its backbone, extra layers and box predictor
and renews the class predictor for your classes; an ImageNet preset (the default) gives the
backbone (a segmenter's at output stride 16, under a new DeepLabV3 head). OUT gets
model.keras, model.tflite (float32), the --quantize file (default int8, uint8 camera
pixels in) and with --qat a quantization-aware int8 file, each with the labels (and a
detector's post-processing) MediaPipe reads, and report.json / report.md: every file measured on the same validation photos (a detector's
COCO AP with precision-recall curves and detections, a classifier's top-1 / top-5 with a
confusion matrix, a segmenter's mean IoU with predicted masks) and the MediaPipe Tasks snippet. Details: docs/finetune.md.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from mobilenet_zoo.training import flags
from mobilenet_zoo.training.config import (
    DEFAULT_DETECTOR_PRESET,
    FINETUNE_QUANTIZE,
    FINETUNE_SCHEDULES,
    FINETUNE_TASKS,
    QAT_EPOCHS,
    FinetuneOptions,
)

OUT_DEFAULT = "runs/finetune"


class _RaisingParser(argparse.ArgumentParser):
    """The parser ``finetune(...)`` uses: a bad value is a ValueError, not an exit."""

    def error(self, message: str):
        raise ValueError(f"finetune: {message}")


def build_parser(raising: bool = False) -> argparse.ArgumentParser:
    """The command's parser; ``raising``: errors raise ValueError (the Python call)."""
    p = (_RaisingParser if raising else argparse.ArgumentParser)(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.prog = "python -m mobilenet_zoo.finetune"
    p.add_argument("task", choices=FINETUNE_TASKS, help="what to fine-tune")
    p.add_argument("data", metavar="DATA", help="the folder of labelled photos")
    d = p.add_argument_group("data")
    d.add_argument("--format", choices=["auto", "coco", "voc", "yolo", "folders", "masks"],
                   default="auto",
                   help="the layout of DATA: a detector's COCO JSON, Pascal VOC (Annotations/, "
                        "JPEGImages/, ImageSets/Main/) or YOLO (data.yaml, labels/); a classifier's "
                        "class folders (DATA/<class>/ or DATA/train/<class>/, DATA/val/<class>/); a "
                        "segmenter's masks (JPEGImages/ + SegmentationClass/, or images/ + masks/: "
                        "PNG class indices, 255 = ignore, labels.txt naming them); auto: detected")
    d.add_argument("--skip-bad-labels", action="store_true",
                   help="drop wrong boxes, bad masks and unreadable images and say how many; "
                        "default: list them all and train nothing")
    m = p.add_argument_group("model")
    m.add_argument("--preset", default=DEFAULT_DETECTOR_PRESET,
                   help=f"where to start: an ImageNet preset (its backbone), or a preset of the "
                        f"task (a detection preset: its backbone, extra layers and box predictor "
                        f"kept; a DeepLabV3 preset: kept whole), the class layer new (default: "
                        f"{DEFAULT_DETECTOR_PRESET}, which ships)")
    m.add_argument("--image-size", type=int, default=None,
                   help="input side (default: the preset's; a detector's at most 320, a "
                        "segmenter's at most 224)")
    m.add_argument("--resize-mode", choices=["stretch", "pad"], default="stretch",
                   help="how photos fit the square input: stretch (default; what MediaPipe's "
                        "ObjectDetector does) or pad (keeps the aspect ratio)")
    o = flags.add_schedule_flags(
        p, FINETUNE_SCHEDULES, "training (the defaults shown are a detector's: RMSProp, "
        "ssd_mobilenet_v1_coco.config; a classifier's: 10 epochs of batch 32, the first half the "
        "head with Adam 1e-3, then the top 2 blocks at 1e-4; a segmenter's: 8 epochs of batch 8, "
        "Adam 1e-3)")
    o.add_argument("--freeze-until", choices=["none", "P1", "P2", "P3", "P4"], default=None,
                   help="a detector's or segmenter's backbone frozen up to this level (a "
                        "detector's " + FINETUNE_SCHEDULES.help("freeze_until") + "; a segmenter's: none)")
    e = p.add_argument_group("evaluation and export")
    e.add_argument("--quantize", choices=FINETUNE_QUANTIZE, default="int8",
                   help="the file written beside model.tflite (float32): int8 (default; "
                        "calibrated on the training photos, uint8 input), float16, dynamic or none")
    e.add_argument("--qat", action="store_true",
                   help="then quantization-aware training of a copy (BatchNorm folded, weights "
                        "and activations fake-quantised as TFLite's int8 kernels) and its int8 "
                        "file, model_qat_int8.tflite, written from the learned ranges whatever "
                        "--quantize says (the phone file then)")
    e.add_argument("--qat-epochs", type=int, default=None,
                   help="epochs of quantization-aware training (default: a detector's "
                        f"{QAT_EPOCHS['detector']}, a classifier's {QAT_EPOCHS['classifier']}, a "
                        f"segmenter's {QAT_EPOCHS['segmenter']})")
    e.add_argument("--eval-batches", type=int, default=None,
                   help="evaluate on this many validation batches only (default: all)")
    flags.add_common_flags(p, OUT_DEFAULT)
    # One machine: the recipes take --strategy / --tpu; here they are refused (checked_options).
    for flag in ("--strategy", "--tpu"):
        p._option_string_actions[flag].help = argparse.SUPPRESS
    p._option_string_actions["--smoke"].help = ("two training steps and one validation batch on "
                                                "DATA, to check the plumbing")
    p._option_string_actions["--out"].help = f"the run folder (default: {OUT_DEFAULT})"
    return p


def main(argv: list[str] | None = None) -> int:
    """Parses the flags, checks them without Keras, then fine-tunes; the exit code."""
    from mobilenet_zoo.cli import common

    args = build_parser().parse_args(argv)
    try:
        options = checked_options(args)
    except ValueError as err:
        common.usage_exit(str(err))
    from mobilenet_zoo.cli import start_backend

    start_backend()
    kept = (f"{args.out} keeps what was finished: --resume continues from the last epoch its "
            "backup folders saved, if any")
    return common.run_guarded(lambda: _run(options, args), kept=kept)


def checked_options(args: argparse.Namespace) -> FinetuneOptions:
    """The parsed flags as ``FinetuneOptions``; ValueError naming a bad one (no Keras)."""
    if args.strategy != "default":
        raise ValueError("finetune runs on one machine (--strategy default); the recipes take "
                         "--strategy for multi-worker training.")
    for name in ("epochs", "batch_size", "steps_per_epoch"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ValueError(f"finetune: --{name.replace('_', '-')} must be at least 1; got {value}.")
    if args.task == "segmenter" and args.resize_mode != "stretch":
        raise ValueError("finetune: --resize-mode pad applies to a detector only; a segmenter is "
                         "trained on random crops and measured on photos stretched to its input, "
                         "as MediaPipe's ImageSegmenter feeds it.")
    if args.task == "classifier":
        given = [flag for flag, on in (("--freeze-until", args.freeze_until is not None),
                                       ("--resize-mode pad", args.resize_mode != "stretch"),
                                       ("--steps-per-epoch", args.steps_per_epoch is not None)) if on]
        if given:
            raise ValueError(f"finetune: {', '.join(given)} applies to a detector only; a classifier "
                             "trains its head, then its top 2 blocks, on photos stretched to its input.")
    _check_out(args.out)
    if os.path.isdir(args.out) and not (args.resume or args.overwrite):
        from mobilenet_zoo.training.identity import earlier_run  # said before the data is read

        if earlier_run(args.out):
            raise ValueError(f"finetune: --out {args.out} holds an earlier run; nothing was changed. "
                             "Pass --resume to continue it, --overwrite to replace it, or choose "
                             "another --out.")
    if args.learning_rate is not None and not args.learning_rate > 0:
        raise ValueError(f"finetune: --learning-rate must be positive; got {args.learning_rate}.")
    return FinetuneOptions(task=args.task, data_dir=args.data, preset=args.preset, format=args.format,
                           skip_bad_labels=args.skip_bad_labels, image_size=args.image_size,
                           resize_mode=args.resize_mode, quantize=args.quantize,
                           eval_batches=args.eval_batches, qat=args.qat, qat_epochs=args.qat_epochs)


def run_call(argv: list[str]) -> Any:
    """The body of ``mobilenet_zoo.finetune.finetune(...)``: ``argv`` parsed with every error a
    ValueError (never an exit), checked, then the run; returns its ``Finetuned``."""
    args = build_parser(raising=True).parse_args(argv)
    options = checked_options(args)
    try:
        return _runner(options.task)(options, flags.run_options(args), flags.train_flags(args))
    except SystemExit as stop:  # the command's one-line refusals: a Python error here
        if isinstance(stop.code, str):
            raise ValueError(stop.code.removeprefix("error: ")) from None
        raise


def _check_out(out: str) -> None:
    """``--out`` must be a folder, or a new one under a writable folder: said before anything
    loads, not after the training."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"finetune: --out {out} is a file; give a folder for the run.")
    parent = os.path.abspath(out)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise ValueError(f"finetune: --out {out} is under {parent}, which is a file; give a folder.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"finetune: --out {out}: {parent} is not writable; give a folder you can write.")


def _runner(task: str) -> Any:
    """The function that fine-tunes ``task`` (its module loads Keras and TensorFlow)."""
    if task == "segmenter":
        from mobilenet_zoo.training.finetune_segmenter import run_segmenter

        return run_segmenter
    from mobilenet_zoo.training import finetune

    return finetune.run_detector if task == "detector" else finetune.run_classifier


def _run(options: FinetuneOptions, args: argparse.Namespace) -> int:
    _runner(options.task)(options, flags.run_options(args), flags.train_flags(args))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
