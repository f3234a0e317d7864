"""`python -m mobilenet_zoo.finetune segmenter DATA` (issue 29): images + PNG masks in, a
DeepLabV3, its phone files and a report of every file's mean IoU out; MediaPipe's
ImageSegmenter reads the user's class names from the int8 files.

The photos and masks are the sample set's (`mobilenet_zoo.data.sample_photos --layout masks`:
scikit-learn digits on scikit-image photos, each digit's pixels its class)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mobilenet_zoo.data import sample_photos

REPO = str(Path(__file__).resolve().parents[2])
CLASSES = ["background", "zero", "one", "two"]
ONE_RUN = pytest.mark.xdist_group("finetune_segmenter")


@pytest.fixture(scope="module")
def masks(tmp_path_factory) -> Path:
    return sample_photos.write(tmp_path_factory.mktemp("masks") / "masks", "masks", num_train=8,
                               num_val=4, image_size=128)


@pytest.fixture(scope="module")
def run(masks, tmp_path_factory):
    from mobilenet_zoo.finetune import finetune

    return finetune("segmenter", masks, out=tmp_path_factory.mktemp("runs") / "masks", smoke=True,
                    image_size=64, qat=True, verbose=0)


def _cli(*args: str, timeout: int = 60) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", "mobilenet_zoo.finetune", *args], capture_output=True,
                          text=True, env=env, cwd=REPO, timeout=timeout)


def test_the_sample_masks_label_each_digits_pixels_inside_its_box(tmp_path):
    """The masks layout and the YOLO layout of one seed are the same photos: every labelled
    pixel of class k lies in a YOLO box of class k - 1 (background 0 shifts the classes)."""
    masks = sample_photos.write(tmp_path / "m", "masks", num_train=4, num_val=2, image_size=96)
    yolo = sample_photos.write(tmp_path / "y", "yolo", num_train=4, num_val=2, image_size=96)
    assert (masks / "labels.txt").read_text().split() == CLASSES
    labelled = 0
    for mask_file in sorted((masks / "masks" / "train").iterdir()):
        mask = np.asarray(Image.open(mask_file))
        photo = np.asarray(Image.open(masks / "images" / "train" / f"{mask_file.stem}.jpg"))
        assert photo.shape[:2] == mask.shape
        np.testing.assert_array_equal(photo, np.asarray(Image.open(yolo / "images" / "train" /
                                                                   f"{mask_file.stem}.jpg")))
        boxes = [line.split() for line in (yolo / "labels" / "train" / f"{mask_file.stem}.txt")
                 .read_text().splitlines() if line.strip()]
        inside = np.zeros_like(mask, bool)
        for c, cx, cy, w, h in boxes:
            x0, y0 = round((float(cx) - float(w) / 2) * 96), round((float(cy) - float(h) / 2) * 96)
            x1, y1 = round((float(cx) + float(w) / 2) * 96), round((float(cy) + float(h) / 2) * 96)
            inside[y0:y1, x0:x1] |= mask[y0:y1, x0:x1] == int(c) + 1
        assert (inside == (mask > 0)).all()
        labelled += int((mask > 0).sum())
    assert labelled > 100


@ONE_RUN
def test_segmenter_fine_tune_reports_the_mean_iou_of_every_file(run):
    report = run.report
    assert report["task"] == "segmenter" and report["classes"] == CLASSES
    assert [m["file"] for m in report["models"]] == ["model.keras", "model.tflite", "model_int8.tflite",
                                                     "model_qat_int8.tflite"]
    assert report["phone_file"] == "model_qat_int8.tflite" and report["qat"]["epochs"] == 1
    for m in report["models"]:
        assert set(m["metrics"]) == {"mIoU", "pixel_accuracy"} and 0.0 <= m["metrics"]["mIoU"] <= 1.0
        assert list(m["per_class"]) == CLASSES and m["latency_ms"] > 0
        assert sum(map(sum, m["confusion"])) == sum(c["pixels"] for c in m["per_class"].values()) > 0
    keras_model, float_file = report["models"][:2]
    assert float_file["metrics"] == pytest.approx(keras_model["metrics"], abs=0.01)  # one model
    assert all(m["size_mb"] < float_file["size_mb"] / 3 for m in report["models"][2:])  # int8
    assert Path(run.file("overlays.png")).stat().st_size > 0
    text = Path(run.file("report.md")).read_text()
    assert "vision.ImageSegmenter" in text and "![overlays](overlays.png)" in text
    assert run.model.num_classes == 4 and run.model.backbone.output_stride == 16


@ONE_RUN
@pytest.mark.parametrize("phone_file", ["model_int8.tflite", "model_qat_int8.tflite"])
def test_mediapipe_image_segmenter_runs_the_int8_files_with_the_users_classes(run, masks, phone_file):
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions, vision

    from mobilenet_zoo.export import TFLiteRunner

    photo = Image.open(sorted((masks / "images" / "val").iterdir())[0]).convert("RGB")
    options = vision.ImageSegmenterOptions(
        base_options=BaseOptions(model_asset_path=run.file(phone_file)), output_category_mask=True)
    masks_found = {}
    with vision.ImageSegmenter.create_from_options(options) as segmenter:
        assert segmenter.labels == CLASSES
        for side in (128, 64):  # the photo's own size, and the model's (no resize in MediaPipe)
            pixels = np.asarray(photo.resize((side, side)))
            result = segmenter.segment(mp.Image(image_format=mp.ImageFormat.SRGB,
                                                data=np.ascontiguousarray(pixels)))
            # numpy_view() is a view of the result's buffer: copied while the result lives
            masks_found[side] = result.category_mask.numpy_view().copy()[..., 0]
    assert masks_found[128].shape == (128, 128) and int(masks_found[128].max()) < len(CLASSES)
    (scores,) = TFLiteRunner(run.file(phone_file))(np.asarray(photo.resize((64, 64)), np.float32)[None]).values()
    assert (masks_found[64] == np.asarray(scores, np.float32)[0].argmax(-1)).mean() > 0.99


def test_bad_masks_stop_the_fine_tune_naming_the_file(masks, tmp_path):
    import shutil

    from mobilenet_zoo.finetune import finetune

    data = tmp_path / "masks"
    shutil.copytree(masks, data)
    first, second = sorted((data / "masks" / "train").iterdir())[:2]
    bad = np.asarray(Image.open(first)).copy()
    bad[0, 0] = 9  # class 9 of 4
    Image.fromarray(bad).save(first)
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(second)  # not its photo's size
    with pytest.raises(ValueError, match=rf"(?s){first.name}.*mask values \[9\].*{second.name}.*is 10x10"):
        finetune("segmenter", data, out=tmp_path / "run", smoke=True)
    assert not (tmp_path / "run").exists()  # nothing trained, nothing written


@pytest.mark.parametrize("args,message", [
    (["segmenter", "DATA", "--preset", "ssd_mobilenet_v1_face_512"], "ssd_mobilenet_v1_face_512 is an SSD preset"),
    (["segmenter", "DATA", "--format", "yolo"], "a segmenter's data format is one of auto, masks"),
    (["segmenter", "DATA", "--resize-mode", "pad"], "--resize-mode pad applies to a detector only"),
])
def test_a_segmenter_refuses_what_fits_another_task(masks, args, message):
    done = _cli(*[str(masks) if a == "DATA" else a for a in args])
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_the_mean_iou_ignores_255_ranks_uint8_scores_and_leaves_absent_classes_out():
    from mobilenet_zoo.training.report import score_segmenter

    masks = np.array([[[0, 0], [1, 255]]])  # one 2x2 image: background, background, class 1, ignored
    scores = np.zeros((1, 2, 2, 3), np.uint8)  # a uint8 file's scores: class 2 is never predicted
    scores[0, :, :, 0], scores[0, 1, 0, 1] = 200, 250  # background everywhere but (1, 0): class 1
    s = score_segmenter("int8", __file__, lambda images: {"output": scores},
                        [(np.zeros((1, 2, 2, 3), np.float32), masks)], ["background", "a", "b"])
    assert s.per_class["background"]["IoU"] == 1.0 and s.per_class["a"]["IoU"] == 1.0
    assert s.per_class["b"]["IoU"] == -1.0 and s.metrics == {"mIoU": 1.0, "pixel_accuracy": 1.0}
    assert sum(map(sum, s.confusion)) == 3  # the 255 pixel counted nowhere
    nothing = score_segmenter("int8", __file__, lambda images: {"output": scores},
                              [(np.zeros((1, 2, 2, 3), np.float32), np.full((1, 2, 2), 255))], ["x", "y", "z"])
    assert nothing.metrics == {"mIoU": -1.0, "pixel_accuracy": -1.0}  # n/a, not 0


def _edited(masks: Path, tmp_path: Path, edit) -> Path:
    import shutil

    data = tmp_path / "data"
    shutil.copytree(masks, data)
    edit(data)
    return data


def _empty_val(data: Path) -> None:
    for p in [*(data / "images" / "val").iterdir(), *(data / "masks" / "val").iterdir()]:
        p.unlink()


def _background_only(data: Path) -> None:
    (data / "labels.txt").write_text("background\n")
    for p in data.glob("masks/*/*.png"):
        Image.fromarray(np.zeros_like(np.asarray(Image.open(p)))).save(p)


@pytest.mark.parametrize("edit,message", [(_empty_val, "no validation image with its mask"),
                                          (_background_only, "the masks hold one class (background)")])
def test_a_split_without_pairs_or_a_single_class_is_one_clear_error(masks, tmp_path, edit, message):
    from mobilenet_zoo.finetune import finetune

    data = _edited(masks, tmp_path, edit)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        finetune("segmenter", data, out=tmp_path / "run", smoke=True)
    assert not (tmp_path / "run").exists()


@ONE_RUN
def test_the_reports_mediapipe_snippet_runs_as_written(run, masks, tmp_path, monkeypatch, capsys):
    import shutil

    shutil.copy(sorted((masks / "images" / "val").iterdir())[0], tmp_path / "photo.jpg")
    shutil.copy(run.file(run.report["phone_file"]), tmp_path / run.report["phone_file"])
    monkeypatch.chdir(tmp_path)
    exec(run.report["mediapipe"], {})
    assert capsys.readouterr().out.strip() == f"{CLASSES} (128, 128, 1)"


def test_camera_file_names_a_bom_and_orphans_read_as_a_user_means_them(masks, tmp_path):
    """Upper-case .JPG photos are found, a BOM is not part of the first class name, a mask
    without its photo and a JPEG mask are named (sweep of issue 29)."""
    from mobilenet_zoo.data.layouts import LabelError, parse_masks

    data = _edited(masks, tmp_path, lambda d: None)
    first = sorted((data / "images" / "train").iterdir())[0]
    first.rename(first.with_suffix(".JPG"))
    (data / "labels.txt").write_text("\ufeffbackground\nzero\n\none\ntwo\n", encoding="utf-8")
    parsed = parse_masks(data, "train")
    assert parsed.class_names == CLASSES and len(parsed.images) == 8
    second = sorted((data / "images" / "train").glob("*.jpg"))[0]
    second.unlink()  # its mask stays
    mask = sorted((data / "masks" / "train").glob("*.png"))[2]
    Image.open(mask).convert("RGB").save(mask.with_suffix(".jpg"))
    mask.unlink()
    with pytest.raises(LabelError) as err:
        parse_masks(data, "train")
    said = str(err.value)
    assert f"image file missing for mask {second.stem}.png" in said
    assert f"found {mask.stem}.jpg: masks are PNG" in said


def test_the_python_call_refuses_wrong_types_before_anything_runs(masks, tmp_path):
    from mobilenet_zoo.finetune import finetune

    for kwargs, message in (({"image_size": 64.0}, "image_size is an int"), ({"epochs": "8"}, "epochs is an int"),
                            ({"learning_rate": "1e-3"}, "learning_rate is a number"),
                            ({"preset": 3}, "preset is a name")):
        with pytest.raises(TypeError, match=message):
            finetune("segmenter", masks, out=tmp_path / "run", **kwargs)
    assert not (tmp_path / "run").exists()
