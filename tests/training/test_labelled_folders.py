"""`recipes/ssd_coco.py --data-dir` takes the folders labelling tools write (issue 29's
readers): YOLO here, COCO JSON and Pascal VOC through the same code (tests/layouts). Bad
labels stop the run before anything trains, each named with its file and line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from skimage import data

ROOT = Path(__file__).resolve().parents[2]
NAMES = ["face", "cup"]
pytestmark = pytest.mark.integration


def _yolo(root: Path, bad_line: str | None = None) -> Path:
    """Real photos with boxes in YOLO's layout (data.yaml, images/<split>, labels/<split>)."""
    photos = {"astronaut": data.astronaut(), "coffee": data.coffee(), "chelsea": data.chelsea(),
              "rocket": data.rocket()}
    for split, stems in (("train", list(photos)), ("val", ["astronaut", "coffee"])):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for stem in stems:
            Image.fromarray(photos[stem]).save(root / "images" / split / f"{stem}.jpg")
            lines = ["0 0.45 0.3 0.2 0.25", "1 0.6 0.7 0.3 0.2"]
            if bad_line and split == "train" and stem == "coffee":
                lines.append(bad_line)
            (root / "labels" / split / f"{stem}.txt").write_text("\n".join(lines) + "\n")
    (root / "data.yaml").write_text(f"path: {root}\ntrain: images/train\nval: images/val\n"
                                    f"names: [{', '.join(NAMES)}]\n")
    return root


def _recipe(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "tensorflow"}
    return subprocess.run([sys.executable, str(ROOT / "recipes" / "ssd_coco.py"), *args],
                          capture_output=True, text=True, timeout=900, cwd=ROOT, env=env)


def test_bad_labels_stop_the_run_naming_file_and_line_before_training(tmp_path):
    folder = _yolo(tmp_path / "photos", bad_line="5 0.5 0.5 0.2 0.2")  # class 5 of 2
    done = _recipe("--data-dir", str(folder), "--out", str(tmp_path / "run"))
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert "labels/train/coffee.txt line 3" in done.stderr and "--skip-bad-labels" in done.stderr
    assert not (tmp_path / "run").exists()  # nothing trained, nothing written


def test_a_yolo_folder_trains_with_its_classes_in_its_order(tmp_path):
    folder = _yolo(tmp_path / "photos")
    done = _recipe("--data-dir", str(folder), "--format", "yolo", "--epochs", "1",
                   "--steps-per-epoch", "1", "--batch-size", "2", "--no-tflite", "--eval-batches", "1",
                   "--alpha", "0.25", "--weights", "scratch", "--image-size", "128",  # the reader, cheaply
                   "--out", str(tmp_path / "run"))
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["data"].startswith("YOLO folder") and "classes face, cup" in results["data"]
    assert "AP" in results["coco_metrics"]
