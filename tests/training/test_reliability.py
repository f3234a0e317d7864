"""No lost runs, no silent garbage, no partial files, clear errors."""

import math
import os

import keras
import numpy as np
import pytest
from PIL import Image

from mobilenet_zoo import SSD, MobileNetBackbone, MobileNetClassifier
from mobilenet_zoo.images import ImageError, load_rgb
from mobilenet_zoo.task import NonFiniteLossError
from mobilenet_zoo.training import run as training
from mobilenet_zoo.weights_io import atomic_write, save_by_name


def _tiny_classifier():
    model = MobileNetClassifier(MobileNetBackbone(alpha=0.25, input_shape=(32, 32, 3)), num_classes=3,
                                include_preprocessing=True)
    model.compile(keras.optimizers.SGD(0.01), "sparse_categorical_crossentropy")
    return model


def _data(n=16):
    rng = np.random.default_rng(0)
    return rng.uniform(0, 255, (n, 32, 32, 3)).astype("float32"), rng.integers(0, 3, n)


def test_resume_falls_back_to_the_previous_backup_when_the_latest_is_truncated(tmp_path, capsys):
    x, y = _data()
    model = _tiny_classifier()
    model.fit(x, y, batch_size=8, epochs=2, verbose=0,
              callbacks=training.standard_callbacks(str(tmp_path), resume=False))
    backup = tmp_path / "backup"
    assert sorted(os.listdir(backup)) == ["latest.weights.h5", "latest_training_metadata.json",
                                          "prev.weights.h5", "prev_training_metadata.json"]
    latest = backup / "latest.weights.h5"
    latest.write_bytes(latest.read_bytes()[: latest.stat().st_size // 4])  # killed mid-write
    resumed = _tiny_classifier()
    history = resumed.fit(x, y, batch_size=8, epochs=3, verbose=0,
                          callbacks=training.standard_callbacks(str(tmp_path), resume=True))
    out = capsys.readouterr().out
    assert "unreadable" in out and "continuing after epoch 1" in out and "prev" in out
    # Epoch 1 (from the backup's history) then epochs 2 and 3: the counter is continuous.
    assert len(history.history["loss"]) == 3 and history.epoch == [0, 1, 2]
    assert int(resumed.optimizer.iterations) == 6  # 2 steps x 3 epochs, none lost, none twice


def test_resume_with_nothing_to_resume_says_so(tmp_path, capsys):
    x, y = _data()
    model = _tiny_classifier()
    model.fit(x, y, batch_size=8, epochs=1, verbose=0,
              callbacks=training.standard_callbacks(str(tmp_path), resume=True))
    assert "no complete backup" in capsys.readouterr().out


def test_a_write_killed_midway_leaves_the_old_file_intact(tmp_path):
    target = tmp_path / "w.weights.h5"
    save_by_name({"layer": [np.ones(3, np.float32)]}, target)
    before = target.read_bytes()

    def dies_midway(tmp):
        with open(tmp, "wb") as f:
            f.write(b"partial")
        raise KeyboardInterrupt  # the process is killed here

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, dies_midway)
    assert target.read_bytes() == before
    assert os.listdir(tmp_path) == ["w.weights.h5"]  # no temporary file left behind


def _ssd(**kwargs):
    model = SSD(MobileNetBackbone(alpha=0.25, min_depth=16), num_classes=2, image_size=64, **kwargs)
    model.compile(keras.optimizers.SGD(0.01))
    return model


def _boxes(bad):
    boxes = np.full((2, 3, 4), -1, np.float32)
    classes = np.full((2, 3), -1, np.int32)
    boxes[:, 0], classes[:, 0] = [0.1, 0.1, 0.5, 0.5], 0
    boxes[0, 1], classes[0, 1] = bad, 1
    return boxes, classes


@pytest.mark.parametrize("bad", [[np.nan, 0.1, 0.5, 0.5], [0.5, 0.5, 0.2, 0.2], [1.2, 1.2, 1.5, 1.5]])
def test_ssd_fit_drops_nonfinite_empty_and_outside_boxes(bad):
    model = _ssd()
    x = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    boxes, classes = _boxes(bad)
    history = model.fit(x, {"boxes": boxes, "classes": classes}, epochs=1, verbose=0)
    assert history.history["invalid_boxes"][0] == 1
    assert math.isfinite(history.history["loss"][0]) and history.history["box_loss"][0] < 10
    assert all(np.isfinite(w).all() for w in model.get_weights())
    strict = _ssd(invalid_boxes="raise")
    with pytest.raises(Exception, match="out-of-image boxes"):
        strict.fit(x, {"boxes": boxes, "classes": classes}, epochs=1, verbose=0)


def test_ssd_fit_refuses_labels_below_minus_one():
    model = _ssd()
    x = np.zeros((2, 64, 64, 3), np.float32)
    boxes, classes = _boxes([0.2, 0.2, 0.4, 0.4])
    classes[1, 0] = -5
    with pytest.raises(Exception, match="below -1"):
        model.fit(x, {"boxes": boxes, "classes": classes}, epochs=1, verbose=0)


def test_a_nan_loss_stops_fit_with_a_clear_error():
    model = _ssd()
    x = np.zeros((2, 64, 64, 3), np.float32)
    x[0, 5, 5, 0] = np.nan  # one NaN pixel, arriving through tf.data (arrays are checked earlier)
    boxes, classes = _boxes([0.2, 0.2, 0.4, 0.4])
    with pytest.raises(ValueError, match="NaN or infinite pixel"):
        model.fit(x, {"boxes": boxes, "classes": classes}, epochs=1, verbose=0)
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensors((x, {"boxes": boxes, "classes": classes}))
    with pytest.raises(NonFiniteLossError, match="epoch 1, batch 1"):
        model.fit(ds, epochs=1, verbose=0)


def test_wrong_image_shapes_name_the_expected_and_received_shape():
    model = _ssd()
    # Another size is resized by the detector's preprocessor (issue 28); a wrong number of
    # channels is still refused, naming the expected and received shape.
    with pytest.raises(ValueError, match=r"\(batch, 64, 64, 3\); got \(1, 48, 48, 4\)"):
        model.predict(np.zeros((1, 48, 48, 4), np.float32), verbose=0)
    with pytest.raises(ValueError, match=r"got \(1, 64, 64\)"):
        model.predict(np.zeros((1, 64, 64), np.float32), verbose=0)


@pytest.mark.parametrize("alpha,message", [(float("nan"), "finite"), (float("inf"), "finite"),
                                           (1e-9, "min_depth / 1024"), (0, "> 0")])
def test_unusable_alpha_gets_a_clear_error(alpha, message):
    with pytest.raises(ValueError, match=message):
        MobileNetBackbone(alpha=alpha)


def test_image_loader_reads_16_bit_palette_alpha_and_exif_correctly(tmp_path):
    gray16 = (np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)  # 0 .. 65520
    Image.fromarray(gray16).save(tmp_path / "g16.png")
    rgb = load_rgb(tmp_path / "g16.png")
    assert rgb.shape == (64, 64, 3) and rgb.dtype == np.uint8
    assert rgb[0, 0, 0] == 0 and rgb[-1, -1, 0] == 255 and 100 < rgb[32, 0, 0] < 156  # not saturated
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:4, :, 3] = 255  # top half opaque red, bottom half transparent
    Image.fromarray(rgba).save(tmp_path / "a.png")
    out = load_rgb(tmp_path / "a.png")
    assert out[0, 0].tolist() == [200, 0, 0] and out[-1, -1].tolist() == [255, 255, 255]
    tall = Image.fromarray(np.zeros((10, 20, 3), np.uint8))
    exif = tall.getexif()
    exif[0x0112] = 6  # "rotate 90 CW" orientation
    tall.save(tmp_path / "rot.jpg", exif=exif)
    assert load_rgb(tmp_path / "rot.jpg").shape == (20, 10, 3)
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0garbage")
    with pytest.raises(ImageError, match="bad.jpg"):
        load_rgb(tmp_path / "bad.jpg")


def test_image_folders_with_one_class_empty_classes_or_corrupt_files_are_refused(tmp_path):
    from mobilenet_zoo.training.transfer import check_image_folder

    good = Image.fromarray(np.zeros((8, 8, 3), np.uint8))
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
        good.save(tmp_path / cls / "1.png")
    assert check_image_folder(tmp_path) == ["a", "b"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"\['empty'\].*no images"):
        check_image_folder(tmp_path)
    (tmp_path / "empty").rmdir()
    (tmp_path / "b" / "2.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    with pytest.raises(ValueError, match="2.jpg"):
        check_image_folder(tmp_path)
    for f in (tmp_path / "b").iterdir():
        f.unlink()
    (tmp_path / "b").rmdir()
    with pytest.raises(ValueError, match="at least two"):
        check_image_folder(tmp_path)


def test_coco_json_drops_nan_boxes_uses_real_image_sizes_and_names_bad_files(tmp_path):
    import json

    from mobilenet_zoo.data.detection import coco_json

    (tmp_path / "images").mkdir()
    Image.fromarray(np.zeros((40, 80, 3), np.uint8)).save(tmp_path / "images" / "a.png")
    ann = {"images": [{"id": 1, "file_name": "a.png", "width": 999, "height": 999}],
           "categories": [{"id": 7, "name": "thing"}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 7, "bbox": [8, 4, 40, 20]},
                           {"id": 2, "image_id": 1, "category_id": 7, "bbox": [float("nan"), 0, 5, 5]}]}
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(ann))
    src = coco_json(path)
    assert src.stats == {"boxes_clipped": 0, "boxes_dropped": 1, "image_sizes_corrected": 1}
    example = next(iter(src.dataset))
    np.testing.assert_allclose(example["boxes"].numpy(), [[0.1, 0.1, 0.6, 0.6]], atol=1e-6)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not a readable COCO JSON"):
        coco_json(path)
    path.write_text(json.dumps({"images": [], "annotations": []}))
    with pytest.raises(ValueError, match="categories"):
        coco_json(path)
    ann["annotations"][0]["image_id"] = 77
    path.write_text(json.dumps(ann))
    with pytest.raises(ValueError, match="image_id 77"):
        coco_json(path)
    ann["images"][0]["file_name"] = "gone.png"
    path.write_text(json.dumps(ann))
    with pytest.raises(ValueError, match="missing"):
        coco_json(path)


def test_segmentation_loss_takes_trailing_channel_masks_and_names_bad_labels():
    import tensorflow as tf

    from mobilenet_zoo.segmentation import segmentation_loss

    loss = segmentation_loss()
    logits = tf.constant([[[[5.0, 0.0], [0.0, 5.0]]]])
    flat = float(loss(tf.constant([[[0, 1]]]), logits))
    assert float(loss(tf.constant([[[[0], [1]]]]), logits)) == pytest.approx(flat)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"\[0, num_classes\) = \[0, 2\) or 255"):
        loss(tf.constant([[[0, 7]]]), logits)
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert type(restored) is type(loss) and restored.ignore_label == 255


def test_weights_accepts_keras_save_weights_files_and_names_garbage(tmp_path):
    source = MobileNetBackbone(alpha=0.25, input_shape=(64, 64, 3))
    source.save_weights(tmp_path / "keras_format.weights.h5")
    loaded = MobileNetBackbone(alpha=0.25, input_shape=(64, 64, 3),
                               weights=str(tmp_path / "keras_format.weights.h5"))
    np.testing.assert_array_equal(loaded.get_layer("conv1").get_weights()[0],
                                  source.get_layer("conv1").get_weights()[0])
    (tmp_path / "garbage.h5").write_bytes(b"\x89HDF\r\n\x1a\n truncated")
    with pytest.raises(ValueError, match="garbage.h5"):
        MobileNetBackbone(alpha=0.25, weights=str(tmp_path / "garbage.h5"))


def test_a_renamed_copy_of_a_preset_file_is_checksum_checked(tmp_path):
    from mobilenet_zoo import presets

    fake = tmp_path / presets.get_preset(presets.IMAGENET)["file"]
    save_by_name(MobileNetBackbone(alpha=1.0), fake)
    with pytest.raises(ValueError, match="sha256"):
        MobileNetBackbone(alpha=1.0, weights=str(fake))


def test_nan_pixels_are_refused_at_predict_instead_of_giving_confident_nonsense():
    model = _ssd()
    x = np.zeros((1, 64, 64, 3), np.float32)
    x[0, 1, 2, 0] = np.nan
    with pytest.raises(ValueError, match="1 NaN or infinite pixel"):
        model.predict(x, verbose=0)


def test_results_json_is_written_atomically(tmp_path):
    import json

    path = training.write_results(str(tmp_path), {"a": np.float32(1.5)})
    assert json.loads(open(path).read())["a"] == 1.5
    assert sorted(os.listdir(tmp_path)) == ["results.json"]


@pytest.mark.parametrize("suffix, message", [
    (".pb", "not a frozen TensorFlow GraphDef"),
    (".keras", "not a readable .keras file"),
    ("", "not a readable TF checkpoint"),
])
def test_converter_names_garbage_inputs(tmp_path, suffix, message):
    from mobilenet_zoo.convert import convert

    src = tmp_path / f"mobilenet_v1_1.0_224{suffix or '.ckpt'}"
    src.write_bytes(os.urandom(3000))
    if not suffix:  # a checkpoint prefix whose .index is garbage
        (tmp_path / "model.ckpt.index").write_bytes(os.urandom(3000))
        src = tmp_path / "model.ckpt"
    out = tmp_path / "out.weights.h5"
    with pytest.raises(ValueError, match=message):
        convert(src, out)
    assert not out.exists()


def test_teacher_cache_killed_midway_leaves_no_partial_file(tmp_path):
    import tensorflow as tf

    from mobilenet_zoo.distillation import cache_teacher_outputs, load_teacher_cache

    teacher = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    path = tmp_path / "teacher.tfrecord"
    good = tf.data.Dataset.from_tensor_slices(np.ones((6, 4), np.float32)).batch(3)
    assert cache_teacher_outputs(teacher, good, path) == 6

    def dying():
        yield np.ones((3, 4), np.float32)
        raise KeyboardInterrupt("killed while caching")

    bad = tf.data.Dataset.from_generator(dying, output_signature=tf.TensorSpec((None, 4), tf.float32))
    with pytest.raises(Exception, match="killed while caching"):
        cache_teacher_outputs(teacher, bad, path)
    assert len(list(load_teacher_cache(path))) == 6  # the complete earlier cache is intact
    assert [p.name for p in tmp_path.iterdir()] == ["teacher.tfrecord"]


def test_converter_takes_keras_save_weights_files(tmp_path):
    from mobilenet_zoo.convert import convert
    from mobilenet_zoo.weights_io import read_by_name

    model = MobileNetClassifier(MobileNetBackbone(alpha=0.25, input_shape=(64, 64, 3)), num_classes=5)
    rng = np.random.default_rng(0)
    model.set_weights([rng.normal(size=w.shape).astype(np.float32) for w in model.get_weights()])
    src = tmp_path / "mine.weights.h5"
    model.save_weights(src)
    meta = convert(src, tmp_path / "out.weights.h5")
    assert meta["alpha"] == 0.25 and meta["num_classes"] == 5
    converted = read_by_name(tmp_path / "out.weights.h5")
    for name in ("conv1", "conv_pw_13_bn", "conv_preds"):
        for a, b in zip(converted[name], model.get_layer(name).get_weights()
                        if name == "conv_preds" else model.backbone.get_layer(name).get_weights()):
            np.testing.assert_array_equal(a, b)


def test_a_backup_pair_from_two_epochs_is_not_resumed_from(tmp_path, capsys):
    x, y = _data()
    model = _tiny_classifier()
    model.fit(x, y, batch_size=8, epochs=2, verbose=0,
              callbacks=training.standard_callbacks(str(tmp_path), resume=False))
    backup = tmp_path / "backup"
    # Killed between the renames: epoch 2's weights moved to prev, epoch 1's metadata still there.
    os.replace(backup / "latest.weights.h5", backup / "prev.weights.h5")
    resumed = _tiny_classifier()
    resumed.fit(x, y, batch_size=8, epochs=3, verbose=0,
                callbacks=training.standard_callbacks(str(tmp_path), resume=True))
    out = capsys.readouterr().out
    assert "another epoch's weights" in out and "no complete backup" in out


@pytest.mark.slow
def test_ssd_coco_killed_at_any_point_resumes_to_a_continuous_run(tmp_path):
    """SIGKILL during a backup write, at a random instant and during the final save; each
    `--resume` continues, and the finished model has exactly epochs x steps optimizer steps."""
    import glob
    import subprocess
    import sys
    import time
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    out = tmp_path / "run"
    cmd = [sys.executable, str(root / "recipes" / "ssd_coco.py"), "--dataset", "embedded",
           "--embedded-train", "8", "--embedded-val", "4", "--alpha", "0.25", "--weights", "scratch",
           "--image-size", "128", "--batch-size", "4", "--epochs", "4", "--steps-per-epoch", "2",
           "--no-tflite", "--verbose", "0", "--out", str(out)]
    env = dict(os.environ, MOBILENET_ZOO_CACHE=str(tmp_path / "cache"))

    def run_and_kill(extra, when, limit=300):
        proc = subprocess.Popen(cmd + extra, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        start = time.time()
        while proc.poll() is None and time.time() - start < limit:
            if when():
                proc.kill()
                proc.wait()
                return "killed"
            time.sleep(0.005)
        assert proc.poll() is not None, "run did not finish in time"
        return proc.returncode

    backup_tmp = lambda: bool(glob.glob(str(out / "backup" / "tmp*")))  # noqa: E731
    kills = []
    kills.append(run_and_kill([], backup_tmp))  # during the first backup write
    t0 = time.time() + np.random.default_rng(0).uniform(10, 25)
    kills.append(run_and_kill(["--resume"], lambda: time.time() > t0))  # a random instant
    kills.append(run_and_kill(["--resume"], lambda: bool(glob.glob(str(out / ".model.keras.tmp*")))))
    assert kills[0] == "killed"
    for _ in range(3):  # resume until the run completes
        if run_and_kill(["--resume"], lambda: False) == 0:
            break
    assert (out / "results.json").exists()
    import keras as k

    finished = k.saving.load_model(out / "model.keras")
    assert int(finished.optimizer.iterations) == 4 * 2, (kills, int(finished.optimizer.iterations))
