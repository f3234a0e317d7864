"""The fine-tune command learns new classes in minutes on 2 CPU cores (issue 29): from the
shipped ImageNet preset, with the default schedule, far above the same SSD trained from
scratch on the same photos with the same schedule; the int8 phone file keeps the float file's
AP50, and MediaPipe's ObjectDetector finds the digits in it by their names.

Measured (docs/finetune.md): AP50 0.789 fine-tuned vs 0.001 from scratch, int8 0.733 vs float
TFLite 0.758 (24 epochs, 3.9 min; scratch 8.3 min); with --qat (3 more epochs) the
quantization-aware int8 file 0.752 vs float TFLite 0.733. Marked slow: about 16 minutes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mobilenet_zoo.data import sample_photos

REPO = str(Path(__file__).resolve().parents[2])
pytestmark = pytest.mark.slow


def _ap50(report: dict, file: str) -> float:
    return next(m["metrics"]["AP50"] for m in report["models"] if m["file"] == file)


def test_fine_tuning_the_imagenet_preset_learns_new_classes_far_above_scratch(tmp_path):
    from mobilenet_zoo.finetune import finetune

    data = sample_photos.write(tmp_path / "photos")  # 240 train, 60 val photos, 3 classes
    run = finetune("detector", data, out=tmp_path / "tuned", qat=True, verbose=0)
    assert run.report["preset"] == "mobilenet_v1_1.0_224_imagenet"
    keras_ap50 = _ap50(run.report, "model.keras")
    float_ap50, int8_ap50 = _ap50(run.report, "model.tflite"), _ap50(run.report, "model_int8.tflite")
    assert keras_ap50 >= 0.7, run.report["models"]
    assert abs(int8_ap50 - float_ap50) <= 0.06, run.report["models"]
    # Quantization-aware training: its int8 file against the float file (the same
    # post-processing op); measured +1.9 AP50 points with the command, -1.6 in one experiment
    # with the same schedule (60 validation photos: a photo is 1.7 points).
    assert _ap50(run.report, "model_qat_int8.tflite") >= float_ap50 - 0.02, run.report["models"]

    # The same SSD from scratch, same photos and schedule (recipes/ssd_coco.py reads the folder).
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run(
        [sys.executable, os.path.join(REPO, "recipes", "ssd_coco.py"), "--data-dir", str(data),
         "--weights", "scratch", "--epochs", "24", "--batch-size", "16", "--image-size", "224",
         "--learning-rate", "0.004", "--freeze-until", "none", "--no-tflite",
         "--out", str(tmp_path / "scratch")], capture_output=True, text=True, env=env, cwd=REPO,
        timeout=1200)
    assert done.returncode == 0, done.stderr[-2000:]
    import json

    scratch = json.loads((tmp_path / "scratch" / "results.json").read_text())["coco_metrics"]["AP50"]
    assert keras_ap50 >= scratch + 0.3, (keras_ap50, scratch)

    # MediaPipe reads the phone file's labels (the quantization-aware int8 one) and finds the
    # digits by name.
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions, vision
    from PIL import Image

    options = vision.ObjectDetectorOptions(
        base_options=BaseOptions(model_asset_path=run.file("model_qat_int8.tflite")), score_threshold=0.3)
    names, hits = ["zero", "one", "two"], 0
    photos = sorted((data / "images" / "val").iterdir())
    with vision.ObjectDetector.create_from_options(options) as detector:
        for photo in photos:
            pixels = np.asarray(Image.open(photo).convert("RGB"))
            found = detector.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=pixels)).detections
            truth = [line.split() for line in (data / "labels" / "val" / f"{photo.stem}.txt").read_text().splitlines()]
            hits += any(_matches(d, truth, names, pixels.shape[:2]) for d in found)
    assert hits >= 0.8 * len(photos), (hits, len(photos))  # measured: 55 of 60


def _matches(detection, truth, names, size) -> bool:
    """The detection overlaps a ground-truth box of its class name (IoU >= 0.5)."""
    h, w = size
    b = detection.bounding_box
    box = (b.origin_x / w, b.origin_y / h, (b.origin_x + b.width) / w, (b.origin_y + b.height) / h)
    for c, cx, cy, bw, bh in truth:
        cx, cy, bw, bh = map(float, (cx, cy, bw, bh))
        gt = (cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2)
        ix = max(0.0, min(box[2], gt[2]) - max(box[0], gt[0]))
        iy = max(0.0, min(box[3], gt[3]) - max(box[1], gt[1]))
        union = (box[2] - box[0]) * (box[3] - box[1]) + bw * bh - ix * iy
        if detection.categories[0].category_name == names[int(c)] and union > 0 and ix * iy / union >= 0.5:
            return True
    return False
