"""``python -m mobilenet_zoo.detect IMAGE_OR_DIR...``: run a detector on image files.

Prints one JSON line per image (boxes in pixels of the original image,
``[x1, y1, x2, y2]``, class ids and names, scores) and writes an annotated PNG
per image to ``--out``. Non-square images are letterboxed, so boxes map back
exactly. An unreadable file is reported on stderr and the run goes on; the exit
code is the number of files that failed (capped at 255).

    python -m mobilenet_zoo.detect photo.jpg                          # the face preset
    python -m mobilenet_zoo.detect photos/ --model runs/ssd_coco/model.keras --score 0.3
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import keras
import numpy as np
from PIL import Image, ImageDraw

from mobilenet_zoo import presets
from mobilenet_zoo.detection.ssd import SSD
from mobilenet_zoo.fold import fold_batch_norm
from mobilenet_zoo.images import ImageError, load_rgb

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
_COLOUR = (230, 25, 75)


def expand(inputs: list[str]) -> list[str]:
    """Files as given, and the image files of each directory (sorted)."""
    out = []
    for item in inputs:
        if os.path.isdir(item):
            out += sorted(str(p) for p in Path(item).iterdir()
                          if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        else:
            out.append(item)
    return out


def load_detector(preset: str | None, model_path: str | None) -> SSD:
    if model_path:
        try:
            model = keras.saving.load_model(model_path)
        except (OSError, ValueError) as err:
            raise SystemExit(f"error: cannot load {model_path}: {err}") from err
        if not isinstance(model, SSD):
            raise SystemExit(f"error: {model_path} holds a {type(model).__name__}, not a detector (SSD).")
        return model
    meta = presets.get_preset(preset)
    if meta.get("task") != "SSD":
        detectors = [n for n in presets.list_presets() if presets.get_preset(n).get("task") == "SSD"]
        raise SystemExit(f"error: preset {preset!r} is not a detector; detectors: {detectors}.")
    return SSD.from_preset(preset)


def detect_image(model: SSD, image: np.ndarray, min_score: float) -> list[dict]:
    """Detections of one uint8 RGB image, boxes in its own pixels."""
    pre = model.preprocessor
    canvas, scale, offset = pre.letterbox(image)
    dets = {k: np.asarray(v)[0] for k, v in model.predict_on_batch(canvas[None]).items()}
    boxes = pre.boxes_to_original(dets["boxes"], scale, offset, image.shape[:2])
    names = model.class_names or [f"class_{i}" for i in range(model.num_classes)]
    out = []
    for box, cls, score in zip(boxes, dets["classes"], dets["scores"]):
        if cls >= 0 and score >= min_score:
            out.append({"box": [round(float(v), 1) for v in box], "class": int(cls),
                        "label": names[int(cls)], "score": round(float(score), 4)})
    return out


def draw(image: np.ndarray, detections: list[dict], path: str) -> None:
    canvas = Image.fromarray(image)
    pen = ImageDraw.Draw(canvas)
    width = max(2, round(max(image.shape[:2]) / 300))
    for d in detections:
        pen.rectangle(d["box"], outline=_COLOUR, width=width)
        pen.text((d["box"][0] + 3, d["box"][1] + 2), f"{d['label']} {d['score']:.2f}", fill=_COLOUR)
    canvas.save(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mobilenet_zoo.detect", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="+", help="image files or directories of images")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--preset", default=presets.FACE_SSD,
                       help=f"a detection preset (default {presets.FACE_SSD})")
    which.add_argument("--model", default=None, help="a detector saved as .keras (e.g. by ssd_coco.py)")
    parser.add_argument("--score", type=float, default=0.5, help="minimum score to report")
    parser.add_argument("--out", default="detections", help="folder for the annotated PNGs")
    args = parser.parse_args(argv)
    if not 0 <= args.score <= 1:
        parser.error(f"--score must be in [0, 1], got {args.score}")
    model = fold_batch_norm(load_detector(args.preset, args.model))  # same detections, faster
    os.makedirs(args.out, exist_ok=True)
    failed = 0
    for path in expand(args.inputs):
        try:
            image = load_rgb(path)
        except ImageError as err:
            print(f"skipped: {err}", file=sys.stderr, flush=True)
            failed += 1
            continue
        detections = detect_image(model, image, args.score)
        png = os.path.join(args.out, Path(path).stem + ".png")
        draw(image, detections, png)
        print(json.dumps({"image": path, "width": image.shape[1], "height": image.shape[0],
                          "detections": detections, "annotated": png}), flush=True)
    if failed:
        print(f"{failed} file(s) could not be read", file=sys.stderr)
    return min(failed, 255)


if __name__ == "__main__":
    raise SystemExit(main())
