"""``mobilenet-zoo detect IMAGE_OR_DIR...``: run a detector on image files.

Prints one JSON line per image (boxes in pixels of the original image,
``[x1, y1, x2, y2]``, class ids and names, scores) and writes an annotated PNG
per image to ``--out``, each written atomically (complete or absent). Folders are
walked recursively; an image's PNG keeps its path under the folder
(``photos/2024/a.jpg`` -> ``OUT/2024/a.png``), with ``-2``, ``-3`` ... where two
inputs would share a name. Inputs are never modified: ``--out`` inside an input
folder is refused. No existing file is replaced without ``--overwrite``: a name
taken by a file this run did not write gets the next counter (``a-2.png``), and
the summary on stderr says so. Images are resized as the model was trained (its
resize mode: stretch, or pad to a square); boxes map back to each image's own pixels.

An unreadable, oversized (``--max-image-pixels``) or failing image is skipped with
its reason on stderr and the run goes on. Exit codes: 0 every image done, 1 some
inputs skipped (listed on stderr), 2 usage error (nothing was run), 3 fatal error.

    mobilenet-zoo detect photo.jpg                          # the face preset
    mobilenet-zoo detect photos/ --model runs/ssd_coco/model.keras --score 0.3
    mobilenet-zoo detect photos/ --model runs/faster_rcnn_coco/model.keras
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np
from PIL import Image, ImageDraw

from mobilenet_zoo.cli import common as cli
from mobilenet_zoo.cli import start_backend
from mobilenet_zoo.hub.presets import FACE_SSD

_COLOUR = (230, 25, 75)


def load_detector(preset: str | None, model_path: str | None, load: bool = True):
    """The detector (any ``Detector``: SSD, Faster R-CNN) of ``--model`` or ``--preset``;
    ``SystemExit`` with a message (exit code 2, nothing was run) when it cannot be one.

    The checks that need no Keras come first (the file exists; the preset is known, a
    detector, and installed or downloadable: ``common.check_preset``); with
    ``load=False`` (no image to read) only they run, and ``None`` is returned."""
    preset = preset or FACE_SSD
    if model_path and not os.path.isfile(model_path):
        cli.usage_exit(f"--model {model_path}: no such file (a detector saved with "
                    "model.save('NAME.keras'))")
    meta = {} if model_path else cli.check_preset(preset, "detect")
    start_backend(check_only=not load)  # after the cheap checks: they answer before Keras loads
    if not load:
        return None
    from mobilenet_zoo.detection import SSD, Detector, FasterRCNN
    from mobilenet_zoo.models import load_model
    from mobilenet_zoo.weights_io import check_finite

    classes = {cls.__name__: cls for cls in (SSD, FasterRCNN)}
    if model_path:
        try:
            model = load_model(model_path)
        except (OSError, ValueError) as err:
            cli.usage_exit(f"cannot load --model {model_path}: {err}")
        if not isinstance(model, Detector):
            cli.usage_exit(f"--model {model_path} holds a {type(model).__name__}, not a detector "
                        f"({', '.join(classes)} or another Detector).")
        try:  # NaN / inf weights predict nothing useful (folding would hide them)
            check_finite(model, f"--model {model_path}")
        except ValueError as err:
            cli.usage_exit(str(err))
        return model
    return classes[meta["task"]].from_preset(preset)


def detect_image(model, image: np.ndarray, min_score: float) -> list[dict]:
    """Detections of one uint8 RGB image, boxes ``[x1, y1, x2, y2]`` in its own pixels.

    The image is resized as the model was trained (``model.preprocessor.resize_mode``:
    stretched for the COCO SSDs, padded to a square for the face preset), the same
    input that ``model.predict`` and MediaPipe (for a stretch model) give it."""
    pre = model.preprocessor
    x, frame = pre.resize(image)
    dets = {k: np.asarray(v)[0] for k, v in model.predict_on_batch(x[None]).items()}
    boxes = pre.boxes_to_image(dets["boxes"], image.shape[:2], frame, target_format="xyxy")
    names = model.class_names or [f"class_{i}" for i in range(model.num_classes)]
    out = []
    for box, cls, score in zip(boxes, dets["classes"], dets["scores"]):
        if cls >= 0 and score >= min_score:
            out.append({"box": [round(float(v), 1) for v in box], "class": int(cls),
                        "label": names[int(cls)], "score": round(float(score), 4)})
    return out


def draw(image: np.ndarray, detections: list[dict], path: str) -> None:
    """Writes ``image`` with its boxes as a PNG at ``path``, atomically."""
    from mobilenet_zoo.weights_io import atomic_write

    canvas = annotate(image, detections)
    atomic_write(path, lambda tmp: canvas.save(tmp, format="PNG"))


def annotate(image: np.ndarray, detections: list[dict]) -> Image.Image:
    """``image`` with its boxes and labels drawn, as a PIL image."""
    canvas = Image.fromarray(image)
    pen = ImageDraw.Draw(canvas)
    width = max(2, round(max(image.shape[:2]) / 300))
    for d in detections:
        pen.rectangle(d["box"], outline=_COLOUR, width=width)
        pen.text((d["box"][0] + 3, d["box"][1] + 2), f"{d['label']} {d['score']:.2f}", fill=_COLOUR)
    return canvas


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mobilenet-zoo detect", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=cli.EXIT_CODES_HELP)
    parser.add_argument("inputs", nargs="+", help="image files or folders of images (walked recursively)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--preset", default=None,
                       help="a detection preset (default: the face detector; "
                            "list them with mobilenet-zoo presets)")
    which.add_argument("--model", default=None, help="a detector (SSD, Faster R-CNN) saved as .keras (e.g. by ssd_coco.py)")
    parser.add_argument("--score", type=float, default=0.5, help="minimum score to report, in [0, 1]")
    parser.add_argument("--out", default="detections",
                        help="folder for the annotated PNGs; not inside an input folder")
    cli.add_overwrite_flag(parser, "an annotated PNG")
    cli.add_image_flags(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not 0 <= args.score <= 1:
        parser.error(f"--score must be in [0, 1], got {args.score}")
    cli.check_image_flags(parser, args)
    items, skipped, notes = cli.collect(args.inputs)
    named = cli.output_paths(items, args.out, ".png")
    cli.check_out(parser, args.out, args.inputs, named.values())
    # No file this run did not write is replaced: a taken name gets the next counter.
    pngs = named if args.overwrite else cli.output_paths(items, args.out, ".png", keep_existing=True)
    return cli.run_guarded(lambda: _run(args, items, skipped, notes, pngs, named),
                           kept=f"the annotated PNGs written so far in {args.out} are complete "
                                "(none is half-written); rerun to do the rest")


def _run(args, items, skipped, notes, pngs, named=None) -> int:
    from mobilenet_zoo.images import ImageError, ImageTooLarge, load_rgb

    # A killed run's temporaries (its writer gone) where this one writes: removed.
    cli.remove_stale_temporaries_in(os.path.dirname(os.path.abspath(p)) for p in pngs.values())
    # Loaded after the cheap checks; not at all when no input is an image (no Keras).
    detector = load_detector(args.preset, args.model, bool(items))
    total = len(items) + len(skipped)
    if detector is None:
        return cli.report(skipped, total, notes)
    from mobilenet_zoo.fold import fold_batch_norm

    model = fold_batch_norm(detector)  # same detections, faster
    named = named or pngs
    renamed = 0
    for item in items:
        try:
            image = load_rgb(item.path, max_pixels=args.max_image_pixels)
        except ImageTooLarge as err:
            skipped.append((item.path, f"{_reason(err, item.path)}; raise the limit with "
                                       "--max-image-pixels N (0 = none) if you trust the file"))
            continue
        except ImageError as err:
            skipped.append((item.path, _reason(err, item.path)))
            continue
        try:
            detections = detect_image(model, image, args.score)
            # write_new makes the one temporary file (not draw's atomic_write inside it).
            png = cli.write_new(pngs[item.path],
                                lambda tmp, im=image, d=detections: annotate(im, d).save(tmp, format="PNG"),
                                overwrite=args.overwrite)
        except Exception as err:  # noqa: BLE001  one bad item never stops the batch
            skipped.append((item.path, f"{type(err).__name__}: {err}"))
            continue
        if png != named[item.path]:
            notes.append(cli.renamed_note(named[item.path], png))
            renamed += 1
        print(json.dumps({"image": item.path, "width": image.shape[1], "height": image.shape[0],
                          "detections": detections, "annotated": png}), flush=True)
    return cli.report(skipped, total, notes, renamed=renamed)


def _reason(err: Exception, path: str) -> str:
    return str(err).removeprefix(path + ": ")


if __name__ == "__main__":
    raise SystemExit(main())
