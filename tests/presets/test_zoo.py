"""The zoo as a user installs it: the face detector preset, the detect CLI, the tfjs
reader, presets in the wheel and the user cache."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata
from sklearn.datasets import load_sample_images

from mobilenet_zoo import SSD, MobileNetBackbone, presets
from mobilenet_zoo.cli.detect import detect_image
from mobilenet_zoo.cli.detect import main as detect_main
from mobilenet_zoo.convert import read_tfjs, tfjs_od_api_ssd_to_checkpoint
from mobilenet_zoo.detection import ssd_mobilenet_v1
from mobilenet_zoo.weights_io import iter_weighted_layers, save_by_name

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def face_detector():
    return SSD.from_preset(presets.FACE_SSD)


def test_face_preset_finds_the_one_face_in_astronaut(face_detector):
    assert face_detector.image_size == (512, 512) and len(face_detector.anchors) == 5118
    assert face_detector.class_names == ["face", "unused"]
    found = detect_image(face_detector, skdata.astronaut(), min_score=0.5)
    assert len(found) == 1
    face = found[0]
    assert face["label"] == "face" and face["score"] > 0.9
    x1, y1, x2, y2 = face["box"]
    # Her face: about x 180-265, y 70-175 of the 512x512 photo (checked by eye on the PNG).
    assert 160 < x1 < 200 and 245 < x2 < 285 and 50 < y1 < 95 and 150 < y2 < 195


def test_face_preset_finds_no_face_in_the_scikit_learn_photos(face_detector):
    for photo in load_sample_images().images:  # a temple and a flower, 640x427
        assert detect_image(face_detector, photo, min_score=0.5) == []


def test_letterbox_maps_boxes_back_to_the_original_pixels(face_detector):
    wide = np.zeros((256, 1024, 3), np.uint8)
    wide[:, 512:768] = np.asarray(Image.fromarray(skdata.astronaut()).resize((256, 256)))
    [face] = detect_image(face_detector, wide, min_score=0.5)
    x1, y1, x2, y2 = face["box"]
    # Same face at half scale, shifted right by 512 pixels.
    assert 512 + 80 < x1 < 512 + 100 and 512 + 122 < x2 < 512 + 142 and 25 < y1 < 48 and 75 < y2 < 98


def test_detect_cli_prints_json_writes_pngs_and_counts_broken_files(tmp_path, capsys):
    images = tmp_path / "in"
    images.mkdir()
    Image.fromarray(skdata.astronaut()).save(images / "astronaut.png")
    Image.fromarray(load_sample_images().images[0]).save(images / "china.jpg")
    (images / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    code = detect_main([str(images), "--out", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert code == 1  # one unreadable file
    assert "broken.jpg" in captured.err
    lines = [json.loads(line) for line in captured.out.splitlines() if line.startswith("{")]
    assert [Path(r["image"]).name for r in lines] == ["astronaut.png", "china.jpg"]
    assert len(lines[0]["detections"]) == 1 and lines[1]["detections"] == []
    assert (tmp_path / "out" / "astronaut.png").is_file()
    with pytest.raises(SystemExit) as exit_info:  # a usage error: exit code 2, nothing run
        detect_main([str(images), "--preset", presets.IMAGENET, "--out", str(tmp_path / "o2")])
    assert exit_info.value.code == 2 and "not a detector" in capsys.readouterr().err


def _write_tfjs(directory: Path, weights: list[tuple[str, np.ndarray, dict | None]]) -> Path:
    blobs, specs = [], []
    for name, value, quant in weights:
        spec = {"name": name, "shape": list(value.shape), "dtype": str(value.dtype)}
        if quant:
            spec["quantization"] = quant
            spec["dtype"] = "float32"
        blobs.append(value.tobytes())
        specs.append(spec)
    joined = b"".join(blobs)
    (directory / "shard1.bin").write_bytes(joined[:7])
    (directory / "shard2.bin").write_bytes(joined[7:])
    manifest = directory / "model-weights_manifest.json"
    manifest.write_text(json.dumps([{"paths": ["shard1.bin", "shard2.bin"], "weights": specs}]))
    return manifest


def test_tfjs_reader_dequantizes_uint8_and_reads_float32_exactly(tmp_path):
    q = np.array([[0, 1], [128, 255]], np.uint8)
    f = np.array([1.5, -2.25, 3.0], np.float32)
    i = np.array([7], np.int32)
    manifest = _write_tfjs(tmp_path, [
        ("a/quantized", q, {"dtype": "uint8", "scale": 0.5, "min": -1.0}),
        ("b/float", f, None),
        ("c/int", i, None),
    ])
    out = read_tfjs(manifest)
    np.testing.assert_array_equal(out["a/quantized"], [[-1.0, -0.5], [63.0, 126.5]])
    assert out["a/quantized"].dtype == np.float32
    np.testing.assert_array_equal(out["b/float"], f)
    assert out["c/int"].tolist() == [7]
    (tmp_path / "shard2.bin").write_bytes(b"\x00")  # truncated shard
    with pytest.raises(ValueError, match="truncated"):
        read_tfjs(manifest)


def test_tfjs_names_map_to_the_od_api_checkpoint_with_folded_offsets():
    tensors = {
        "MobilenetV1/Conv2d_0_pointwise/weights": np.ones((3, 3, 3, 32), np.float32),
        "MobilenetV1/Conv2d_0_pointwise/convolution_bn_offset": np.full(32, 0.5, np.float32),
        "MobilenetV1/Conv2d_1_depthwise/BatchNorm/gamma": np.ones(32, np.float32),
        "Prediction/Conv2d_0_pointwise/weights": np.ones((1, 1, 1024, 256), np.float32),
        "Prediction/Conv2d_1_pointwise/weights": np.ones((3, 3, 256, 512), np.float32),
        "Prediction/BoxPredictor_0/ClassPredictor/biases": np.zeros(9, np.float32),
        "Postprocessor/stack/1": np.array(5118, np.int32),
    }
    out = tfjs_od_api_ssd_to_checkpoint(tensors)
    prefix = "FeatureExtractor/MobilenetV1"
    assert f"{prefix}/Conv2d_0/weights" in out
    np.testing.assert_array_equal(out[f"{prefix}/Conv2d_0/BatchNorm/beta"], 0.5)
    np.testing.assert_allclose(out[f"{prefix}/Conv2d_0/BatchNorm/moving_variance"], 1 - 1e-3)
    assert f"{prefix}/Conv2d_1_depthwise/BatchNorm/gamma" in out
    assert f"{prefix}/Conv2d_13_pointwise_1_Conv2d_2_1x1_256/weights" in out
    assert f"{prefix}/Conv2d_13_pointwise_2_Conv2d_2_3x3_s2_512/weights" in out
    assert "BoxPredictor_0/ClassPredictor/biases" in out
    assert not any("Postprocessor" in k for k in out)


def test_detection_preset_initialises_a_new_detector_but_its_class_head():
    model = ssd_mobilenet_v1(num_classes=5, weights=presets.FACE_SSD, image_size=300)
    face = SSD.from_preset(presets.FACE_SSD)
    assert model.anchor_generator.order == "2017"  # the predictor's channel order
    for name in ("conv_pw_13", "Conv2d_13_pointwise_2_Conv2d_5_3x3_s2_128",
                 "BoxPredictor_3_BoxEncodingPredictor"):
        for a, b in zip(model.get_layer(name).get_weights() if name.startswith("Box")
                        else _find(model, name).get_weights(), _find(face, name).get_weights()):
            np.testing.assert_array_equal(a, b)
    assert model.get_layer("BoxPredictor_0_ClassPredictor").get_weights()[0].shape[-1] == 3 * 6


def _find(model, name):
    return next(layer for layer in iter_weighted_layers(model) if layer.name == name)


def test_presets_cli_lists_task_size_classes_source_and_licence():
    done = subprocess.run([sys.executable, "-m", "mobilenet_zoo.presets", "--json"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = {r["name"]: r for r in json.loads(done.stdout)}
    assert rows[presets.IMAGENET]["task"] == "MobileNetClassifier"
    assert rows[presets.IMAGENET]["metric"].startswith("top-1 70.9% / top-5 89.9%")
    face = rows[presets.FACE_SSD]
    assert (face["task"], face["input_size"], face["classes"]) == ("SSD", 512, 2)
    assert "MIT" in face["license"] and "face-api" in face["source"]


def test_user_cache_registers_converted_presets(tmp_path, monkeypatch):
    monkeypatch.setenv(presets.ENV_CACHE_DIR, str(tmp_path / "cache"))
    backbone = MobileNetBackbone(alpha=0.25, input_shape=(96, 96, 3))
    save_by_name(backbone, tmp_path / "mine.weights.h5")
    presets.register_preset("my_backbone", tmp_path / "mine.weights.h5",
                            {"alpha": 0.25, "input_size": 96, "license": "mine"})
    assert "my_backbone" in presets.list_presets()
    loaded = MobileNetBackbone.from_preset("my_backbone")
    np.testing.assert_array_equal(loaded.get_layer("conv_pw_13").get_weights()[0],
                                  backbone.get_layer("conv_pw_13").get_weights()[0])
    with pytest.raises(ValueError, match="shipped preset"):
        presets.register_preset(presets.IMAGENET, tmp_path / "mine.weights.h5",
                                {"alpha": 0.25, "input_size": 96})


@pytest.mark.integration
def test_wheel_carries_the_presets_into_a_fresh_install(tmp_path):
    """pip wheel, install it into a folder outside the source tree, load presets there."""
    wheels, site = tmp_path / "wheels", tmp_path / "site"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(wheels), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-3000:]
    [wheel] = list(wheels.glob("mobilenet_zoo-*.whl"))
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
        capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr[-3000:]
    script = (
        "import mobilenet_zoo, numpy as np\n"
        "from mobilenet_zoo import MobileNetClassifier, SSD, presets\n"
        f"assert mobilenet_zoo.__file__.startswith({str(site)!r}), mobilenet_zoo.__file__\n"
        f"assert str(presets.weights_dir()).startswith({str(site)!r}), presets.weights_dir()\n"
        "m = MobileNetClassifier.from_preset(presets.IMAGENET)\n"
        "d = SSD.from_preset(presets.FACE_SSD)\n"
        "print('ok', m.count_params(), d.count_params())\n"
    )
    env = {k: v for k, v in os.environ.items() if k != presets.ENV_WEIGHTS_DIR}
    env["PYTHONPATH"] = str(site)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=600, cwd=tmp_path, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.split()[-3:] == ["ok", "4253864", "5558183"]
