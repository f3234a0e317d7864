"""`python -m mobilenet_zoo.finetune detector DATA` (issue 29): a labelled folder in, a trained
model, its phone files and a report that measures every file on the same validation photos
out; MediaPipe's ObjectDetector reads the user's label names from the int8 file.

The photos are the sample set (`mobilenet_zoo.data.sample_photos`: scikit-learn digits on
scikit-image photos), written by the test in the layouts labelling tools write."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mobilenet_zoo.data import sample_photos
from mobilenet_zoo.data.layouts.readers import read_detection

REPO = str(Path(__file__).resolve().parents[2])
NAMES = ["zero", "one", "two"]
# The tests of one fine-tuned run share a worker (`--dist loadgroup`), so it is made once.
ONE_RUN = pytest.mark.xdist_group("finetune")


def _cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", "mobilenet_zoo.finetune", *args], capture_output=True,
                          text=True, env=env, cwd=REPO, timeout=timeout)


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    return sample_photos.write(tmp_path_factory.mktemp("photos") / "yolo", "yolo", num_train=12,
                               num_val=6, image_size=160)


@pytest.fixture(scope="module")
def run(photos, tmp_path_factory):
    from mobilenet_zoo.finetune import finetune

    # --overwrite into a folder that holds an earlier run, whose phone file of another
    # --quantize must not be left beside the new files.
    out = tmp_path_factory.mktemp("runs") / "mine"
    out.mkdir()
    (out / "log.csv").write_text("epoch,loss\n0,1.0\n")
    (out / "model_float16.tflite").write_bytes(b"an earlier run's phone file")
    # The face SSD: a detection preset, whose box predictor the fine-tune keeps.
    return finetune("detector", photos, out=out, smoke=True, overwrite=True,
                    preset="ssd_mobilenet_v1_face_512", image_size=128, qat=True, verbose=0)


def test_sample_photos_read_the_same_in_yolo_voc_and_coco(tmp_path):
    sources = {layout: read_detection(sample_photos.write(tmp_path / layout, layout, num_train=6,
                                                          num_val=3, image_size=128))
               for layout in ("yolo", "voc", "coco")}
    assert {k: s.format for k, s in sources.items()} == {k: k for k in sources}
    # VOC files list no classes: its reader sorts the names; each box keeps its name.
    assert sources["yolo"].class_names == sources["coco"].class_names == NAMES
    assert sources["voc"].class_names == sorted(NAMES)
    rows = {k: [(e["boxes"].numpy().round(3).tolist(), [s.class_names[c] for c in e["classes"].numpy()])
                for e in s.dataset] for k, s in sources.items()}
    assert rows["yolo"] == rows["voc"] == rows["coco"]
    assert sum(len(c) for _, c in rows["yolo"]) >= 6


@ONE_RUN
def test_fine_tune_writes_the_model_its_phone_files_and_a_side_by_side_report(run):
    out = Path(run.out_dir)
    for name in ("model.keras", "model.tflite", "model_int8.tflite", "report.json", "report.md",
                 "pr_curves.png", "detections.png"):
        assert (out / name).stat().st_size > 0, name
    report = json.loads((out / "report.json").read_text())
    assert report == run.report | {"models": report["models"]}  # what the call returned
    assert report["classes"] == NAMES and report["preset"] == "ssd_mobilenet_v1_face_512"
    assert [m["file"] for m in report["models"]] == ["model.keras", "model.tflite", "model_int8.tflite",
                                                     "model_qat_int8.tflite"]  # --qat
    assert report["phone_file"] == "model_qat_int8.tflite" and report["qat"]["learning_rate"] == pytest.approx(4e-5)
    for m in report["models"]:
        assert set(m["metrics"]) >= {"AP", "AP50", "AP75"} and m["latency_ms"] > 0
        assert set(m["per_class"]) == set(NAMES)
    assert all(m["size_mb"] < report["models"][1]["size_mb"] / 3 for m in report["models"][2:])  # int8
    text = (out / "report.md").read_text()
    assert "model_int8.tflite" in text and "vision.ObjectDetector" in text and "![pr_curves](pr_curves.png)" in text
    # The classes of the data, in the data's order, are the model's and the file's labels.
    assert run.model.class_names == NAMES
    assert not (out / "model_float16.tflite").exists()  # --overwrite removed the earlier run's


@ONE_RUN
@pytest.mark.parametrize("phone_file", ["model_int8.tflite", "model_qat_int8.tflite"])
def test_mediapipe_object_detector_runs_the_int8_files_with_the_users_label_names(run, photos, phone_file):
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions, vision
    from PIL import Image

    photo = np.asarray(Image.open(next((photos / "images" / "val").iterdir())).convert("RGB"))
    options = vision.ObjectDetectorOptions(
        base_options=BaseOptions(model_asset_path=os.path.join(run.out_dir, phone_file)),
        score_threshold=0.0, max_results=20)
    with vision.ObjectDetector.create_from_options(options) as detector:
        found = detector.detect(mp.Image(image_format=mp.ImageFormat.SRGB,
                                         data=np.ascontiguousarray(photo))).detections
    assert found, "a two-step model still scores every anchor; threshold 0 keeps some"
    assert {d.categories[0].category_name for d in found} <= set(NAMES)


@ONE_RUN
def test_a_detection_preset_keeps_its_box_predictor_and_renews_the_class_predictor(run):
    from mobilenet_zoo import SSD

    source = SSD.from_preset("ssd_mobilenet_v1_face_512")
    boxes = [layer.name for layer in source.layers if layer.get_weights() and "BoxEncoding" in layer.name]
    classes = [layer.name for layer in source.layers if layer.get_weights() and "ClassPredictor" in layer.name]
    assert boxes and classes
    for name in boxes:  # two RMSProp steps move the preset's kernels a little, not away
        tuned, given = run.model.get_layer(name).get_weights()[0], source.get_layer(name).get_weights()[0]
        assert np.corrcoef(tuned.ravel(), given.ravel())[0, 1] > 0.99, name
    for name in classes:  # new classes: a new predictor, 3 scores per anchor (+ background)
        assert run.model.get_layer(name).get_weights()[0].shape[-1] != source.get_layer(name).get_weights()[0].shape[-1]


@ONE_RUN
def test_a_run_folder_is_not_replaced_without_resume_or_overwrite(run, photos):
    before = Path(run.out_dir, "report.json").read_text()
    done = _cli("detector", str(photos), "--out", run.out_dir, "--smoke")
    assert done.returncode == 2, done.stderr
    assert "--resume" in done.stderr and "--overwrite" in done.stderr and "Traceback" not in done.stderr
    assert Path(run.out_dir, "report.json").read_text() == before


@pytest.mark.parametrize("args,message", [
    (["detector", "NOWHERE"], "is not a folder"),
    (["detector", "DATA", "--preset", "nope"], "Unknown preset 'nope'"),
    (["detector", "DATA", "--epochs", "0"], "--epochs must be at least 1"),
    (["detector", "DATA", "--strategy", "mirrored"], "one machine"),
    (["segment", "DATA"], "invalid choice: 'segment'"),
    (["detector", "DATA", "--quantize", "int4"], "invalid choice: 'int4'"),
    (["detector", "DATA", "--qat-epochs", "2"], "pass --qat as well"),
    (["classifier", "DATA", "--qat", "--qat-epochs", "0"], "qat_epochs (--qat-epochs) must be a positive"),
])
def test_bad_flags_are_one_line_errors_before_anything_loads(photos, args, message):
    done = _cli(*[str(photos) if a == "DATA" else a for a in args], timeout=60)
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr


def test_the_python_call_raises_value_errors_instead_of_exiting(photos, tmp_path):
    from mobilenet_zoo.finetune import finetune

    with pytest.raises(ValueError, match="invalid choice: 'segment'"):
        finetune("segment", photos, out=tmp_path / "a")
    with pytest.raises(ValueError, match="invalid choice: 'xml'"):
        finetune("detector", photos, out=tmp_path / "a", format="xml")
    with pytest.raises(ValueError, match="image_size must be at least 64"):
        finetune("detector", photos, out=tmp_path / "a", image_size=32)
    assert not (tmp_path / "a").exists()
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "log.csv").write_text("epoch,loss\n")  # an earlier run
    with pytest.raises(ValueError, match="holds an earlier run"):
        finetune("detector", photos, out=tmp_path / "b")
    with pytest.raises(TypeError, match="smoke is True or False"):
        finetune("detector", photos, out=tmp_path / "c", smoke="no")


def test_bad_labels_stop_the_fine_tune_naming_the_file_and_line(photos, tmp_path):
    import shutil

    from mobilenet_zoo.finetune import finetune

    data = tmp_path / "photos"
    shutil.copytree(photos, data)
    label = sorted((data / "labels" / "train").iterdir())[0]
    label.write_text(label.read_text() + "7 0.5 0.5 0.1 0.1\n")  # class 7 of 3
    with pytest.raises(ValueError, match=rf"labels/train/{label.name}.*line"):
        finetune("detector", data, out=tmp_path / "run", smoke=True)
    assert not (tmp_path / "run").exists()  # nothing trained, nothing written


def test_help_and_flag_errors_answer_without_loading_keras():
    code = ("import sys, mobilenet_zoo.finetune; "
            "print(sorted(m for m in ('keras', 'tensorflow', 'jax', 'torch') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": REPO}, timeout=60)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr
    assert "usage:" in _cli("--help", timeout=60).stdout


# ------------------------------------------------------------------ the classifier
@pytest.fixture(scope="module")
def classifier_run(tmp_path_factory):
    from mobilenet_zoo.finetune import finetune

    folders = sample_photos.write(tmp_path_factory.mktemp("digits") / "folders", "folders",
                                  num_train=16, num_val=8, image_size=160)
    return folders, finetune("classifier", folders, out=tmp_path_factory.mktemp("runs") / "digits",
                             smoke=True, image_size=96, qat=True, verbose=0)


@pytest.mark.xdist_group("finetune_classifier")
def test_classifier_fine_tune_reports_top1_of_every_file_and_a_confusion_matrix(classifier_run):
    _, run = classifier_run
    report = run.report
    assert report["task"] == "classifier" and report["classes"] == sorted(NAMES)  # folder order
    # --qat: the quantization-aware int8 file beside the post-training one, and it is the phone file.
    assert [m["file"] for m in report["models"]] == ["model.keras", "model.tflite", "model_int8.tflite",
                                                     "model_qat_int8.tflite"]
    assert report["phone_file"] == "model_qat_int8.tflite" and report["qat"]["epochs"] == 1
    for m in report["models"]:
        assert 0.0 <= m["metrics"]["top1"] <= m["metrics"]["top5"] <= 1.0
        assert sum(map(sum, m["confusion"])) == sum(c["images"] for c in m["per_class"].values()) > 0
    assert Path(run.file("confusion.png")).stat().st_size > 0
    assert "vision.ImageClassifier" in Path(run.file("report.md")).read_text()


@pytest.mark.xdist_group("finetune_classifier")
@pytest.mark.parametrize("phone_file", ["model_int8.tflite", "model_qat_int8.tflite"])
def test_mediapipe_image_classifier_reads_the_users_labels_from_the_int8_files(classifier_run, phone_file):
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions, vision
    from PIL import Image

    folders, run = classifier_run
    photo = np.asarray(Image.open(next((folders / "val" / "one").iterdir())).convert("RGB"))
    options = vision.ImageClassifierOptions(
        base_options=BaseOptions(model_asset_path=run.file(phone_file)), max_results=3)
    with vision.ImageClassifier.create_from_options(options) as classifier:
        result = classifier.classify(mp.Image(image_format=mp.ImageFormat.SRGB,
                                              data=np.ascontiguousarray(photo)))
    assert {c.category_name for c in result.classifications[0].categories} == set(NAMES)


@pytest.mark.parametrize("args,message", [
    (["classifier", "DATA", "--preset", "ssd_mobilenet_v1_face_512"], "ssd_mobilenet_v1_face_512 is an SSD preset"),
    (["classifier", "DATA", "--format", "yolo"], "a classifier's data format is one of auto, folders"),
    (["classifier", "DATA", "--resize-mode", "pad"], "--resize-mode pad applies to a detector only"),
])
def test_a_classifier_refuses_what_fits_only_a_detector(photos, args, message):
    done = _cli(*[str(photos) if a == "DATA" else a for a in args], timeout=60)
    assert done.returncode == 2 and message in done.stderr, done.stderr


def test_a_uint8_files_scores_rank_as_their_values():
    """A uint8 output (an int8 file with uint8 I/O) is ranked as numbers: negated as uint8, a
    score of 0 stayed 0 and ranked first (the report gave the int8 classifier 49.6% top-1
    where it has 73.6%)."""
    from mobilenet_zoo.training.report import score_classifier

    batches = [(np.zeros((2, 8, 8, 3), np.float32), np.array([0, 2]))]
    scores = np.array([[232, 1, 23], [2, 0, 254]], np.uint8)
    s = score_classifier("int8", __file__, lambda images: {"output": scores}, batches, NAMES)
    assert s.metrics["top1"] == 1.0 and s.confusion == [[1, 0, 0], [0, 0, 0], [0, 0, 1]]


# ------------------------------------------------------------------ careless use (sweep)
def test_a_batch_larger_than_the_photos_becomes_their_number(capsys):
    """The detector's training batches drop the remainder: a batch of 16 on 12 photos ran zero
    steps and exported an untrained model, exit 0."""
    from mobilenet_zoo.training.finetune import fit_batch
    from mobilenet_zoo.training.schedule import Schedule, TrainFlags, resolve

    plan = fit_batch(resolve(Schedule(epochs=2, batch_size=16, learning_rate=0.1), TrainFlags(), 12), 12)
    assert (plan.batch_size, plan.steps_per_epoch) == (12, 1)
    assert "batch 16 is more than the 12 training photos: batch 12" in capsys.readouterr().out
    kept = resolve(Schedule(epochs=2, batch_size=4, learning_rate=0.1), TrainFlags(), 12)
    assert fit_batch(kept, 12) == kept


@ONE_RUN
def test_overwrite_with_bad_labels_keeps_the_earlier_run(run, photos, tmp_path):
    import shutil

    from mobilenet_zoo.finetune import finetune

    data = tmp_path / "bad"
    shutil.copytree(photos, data)
    label = sorted((data / "labels" / "train").iterdir())[0]
    label.write_text(label.read_text() + "9 0.5 0.5 0.1 0.1\n")
    state = sorted(p.name for p in Path(run.out_dir).iterdir())
    with pytest.raises(ValueError, match="Nothing was trained"):
        finetune("detector", data, out=run.out_dir, overwrite=True, smoke=True)
    assert sorted(p.name for p in Path(run.out_dir).iterdir()) == state  # nothing removed


def test_a_wrong_format_or_out_is_one_clear_error(photos, tmp_path):
    from mobilenet_zoo.finetune import finetune

    with pytest.raises(ValueError, match="Nothing was run"):  # a YOLO folder forced as VOC
        finetune("detector", photos, out=tmp_path / "r", format="voc")
    (tmp_path / "r").write_text("mine")
    done = _cli("detector", str(photos), "--out", str(tmp_path / "r"), timeout=60)
    assert done.returncode == 2 and "is a file" in done.stderr and "Traceback" not in done.stderr
    assert (tmp_path / "r").read_text() == "mine"


def test_coco_evaluation_gives_per_class_ap_and_curves_by_name():
    from mobilenet_zoo.detection.coco_eval import coco_evaluation

    gt = {"images": [{"id": 1, "height": 100, "width": 100}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 3, "bbox": [10, 10, 20, 20],
                           "area": 400, "iscrowd": 0},
                          {"id": 2, "image_id": 1, "category_id": 7, "bbox": [50, 50, 20, 20],
                           "area": 400, "iscrowd": 0}],
          "categories": [{"id": 3, "name": "cat"}, {"id": 7, "name": "cup"}, {"id": 9, "name": "dog"}]}
    dets = [{"image_id": 1, "category_id": 3, "bbox": [10, 10, 20, 20], "score": 0.9},
            {"image_id": 1, "category_id": 7, "bbox": [0, 0, 20, 20], "score": 0.8},  # a miss
            {"image_id": 1, "category_id": 7, "bbox": [50, 50, 20, 20], "score": 0.5}]
    e = coco_evaluation(gt, dets)
    assert e.per_class["cat"]["AP"] == pytest.approx(1.0) and e.per_class["dog"]["AP"] == -1.0
    assert e.per_class["cup"]["AP50"] == pytest.approx(0.5, abs=0.01)  # found second, after a miss
    # cup: all of its one box is found at the second detection, at precision 1/2
    assert e.pr_curves["cup"] == pytest.approx([0.5] * 101) and e.pr_curves["dog"] == [0.0] * 101
    assert e.metrics["AP50"] == pytest.approx((1.0 + e.per_class["cup"]["AP50"]) / 2)  # dog left out
    nothing = coco_evaluation(gt, [])
    assert nothing.per_class["dog"]["AP"] == -1.0 and nothing.per_class["cat"]["AP"] == 0.0


def test_a_classifier_with_an_empty_val_folder_is_one_clear_error(tmp_path):
    from mobilenet_zoo.finetune import finetune

    folders = sample_photos.write(tmp_path / "f", "folders", num_train=6, num_val=2, image_size=96)
    for image in (folders / "val").rglob("*.jpg"):
        image.unlink()
    with pytest.raises(ValueError, match="holds no images"):
        finetune("classifier", folders, out=tmp_path / "r")


def test_voc_data_is_scored_by_the_voc_devkit_rule_beside_pycocotools(tmp_path):
    """Data labelled as Pascal VOC gets VOC_AP50 beside COCO AP; a detector that finds every box
    but the difficult one scores 1.0 (the devkit does not count a difficult box as missed)."""
    from mobilenet_zoo import MobileNetBackbone
    from mobilenet_zoo.data.layouts.readers import read_voc
    from mobilenet_zoo.detection.ssd import SSD
    from mobilenet_zoo.training.report import score_detector

    data = sample_photos.write(tmp_path / "voc", "voc", num_train=4, num_val=8, image_size=128)
    xml = sorted((data / "Annotations").glob("val_*.xml"))[0]
    xml.write_text(xml.read_text().replace("<difficult>0</difficult>", "<difficult>1</difficult>", 1))
    source = read_voc(data, "val")
    model = SSD(MobileNetBackbone(alpha=0.25, min_depth=16), num_classes=3, image_size=128)
    val = model.preprocessor.pipeline(source, 2)
    truths = iter([y for _, y in val])

    def ground_truth(images):
        y = next(truths, None)
        if y is None:  # the latency runs after the scoring: any answer
            return {"boxes": np.zeros((1, 1, 4)), "classes": np.zeros((1, 1)), "scores": np.zeros((1, 1)),
                    "num_detections": np.zeros(1, int)}
        found = (np.asarray(y["classes"]) >= 0) & (np.asarray(y["is_crowd"]) == 0)  # not the difficult
        order = np.argsort(~found, axis=-1, kind="stable")  # found boxes first
        boxes = np.take_along_axis(np.asarray(y["boxes"]), order[..., None], axis=1)
        classes = np.take_along_axis(np.maximum(np.asarray(y["classes"]), 0), order, axis=1)
        return {"boxes": boxes, "classes": classes, "scores": np.sort(found, axis=-1)[:, ::-1].astype(np.float32),
                "num_detections": found.sum(-1)}

    scored = score_detector("perfect", str(xml), ground_truth, val, model, source)
    assert scored.metrics["VOC_AP50"] == pytest.approx(1.0) and scored.metrics["AP50"] == pytest.approx(1.0)
    assert {c: v["VOC_AP50"] for c, v in scored.per_class.items()} == pytest.approx(
        {c: 1.0 for c in source.class_names})  # each class has a box to find in these 8 photos
    assert int(np.asarray(next(iter(val))[1]["is_crowd"]).sum()) == 1  # the difficult box reached it
