"""The task contract: every task model saves, loads, serves and builds from presets alike."""

import argparse
import ast
import importlib
import inspect
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

import mobilenet_zoo
from mobilenet_zoo import (
    SSD,
    DeepLabV3,
    DetectionPreprocessor,
    FasterRCNN,
    MobileNetBackbone,
    MobileNetClassifier,
    Task,
    export,
    paper,
    presets,
)
from mobilenet_zoo.detection import ArgMaxMatcher, DetectionDecoder
from mobilenet_zoo.export import TFLiteRunner, to_tflite

ROOT = Path(__file__).resolve().parents[2]
RECIPES = ["face_attributes", "facenet_distill", "imagenet", "planet", "segmentation",
           "ssd_coco", "faster_rcnn_coco", "stanford_dogs", "transfer"]


def _ssd(**kwargs):
    return SSD(MobileNetBackbone(alpha=0.25, min_depth=16), num_classes=3, image_size=128, **kwargs)


def _task_models():
    return {
        "classifier": MobileNetClassifier(MobileNetBackbone(alpha=0.25, input_shape=(64, 64, 3)),
                                          num_classes=4, include_preprocessing=True),
        "ssd": _ssd(bounding_box_format="xyxy"),
        "faster_rcnn": FasterRCNN(MobileNetBackbone(alpha=0.25, min_depth=16), num_classes=3,
                                  image_size=128, bounding_box_format="xyxy", max_proposals=20),
        "deeplab": DeepLabV3(MobileNetBackbone(alpha=0.25, input_shape=(None, None, 3),
                                               output_stride=16), 3, use_decoder=True),
    }


def test_every_task_model_derives_from_task_and_owns_a_preprocessor():
    for name, model in _task_models().items():
        assert isinstance(model, Task), name
        assert model.preprocessor is not None and model.backbone is not None, name
        config = model.get_config()
        assert {"name", "trainable", "backbone", "preprocessor"} <= set(config), name


def test_load_model_opens_every_task_file_after_import_mobilenet_zoo_alone(tmp_path):
    """A fresh interpreter that imports only mobilenet_zoo opens every file with
    ``mobilenet_zoo.load_model``; after that, ``keras.saving.load_model`` does too."""
    x = np.random.default_rng(0).uniform(0, 255, (1, 64, 64, 3)).astype("float32")
    expected = {}
    for name, model in _task_models().items():
        model.save(tmp_path / f"{name}.keras")
        detector = name in ("ssd", "faster_rcnn")
        out = model.predict(x if not detector else np.zeros((1, 128, 128, 3), "float32"), verbose=0)
        expected[name] = out["scores"] if detector else out
        np.save(tmp_path / f"{name}.npy", expected[name])
    script = (
        "import sys, numpy as np, mobilenet_zoo\n"
        "d = sys.argv[1]\n"
        "for name in ('classifier', 'ssd', 'faster_rcnn', 'deeplab'):\n"
        "    m = mobilenet_zoo.load_model(f'{d}/{name}.keras')\n"
        "    import keras; assert type(keras.saving.load_model(f'{d}/{name}.keras')) is type(m)\n"
        "    x = np.random.default_rng(0).uniform(0, 255, (1, 64, 64, 3)).astype('float32')\n"
        "    det = name in ('ssd', 'faster_rcnn')\n"
        "    out = m.predict(x if not det else np.zeros((1, 128, 128, 3), 'float32'), verbose=0)\n"
        "    out = out['scores'] if det else out\n"
        "    np.testing.assert_allclose(out, np.load(f'{d}/{name}.npy'), atol=1e-5)\n"
        "    print(name, type(m).__name__, type(m.preprocessor).__name__)\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "ssd SSD DetectionPreprocessor" in done.stdout
    assert "faster_rcnn FasterRCNN DetectionPreprocessor" in done.stdout
    assert "deeplab DeepLabV3 SegmentationPreprocessor" in done.stdout
    assert "classifier MobileNetClassifier ImageClassifierPreprocessor" in done.stdout


@keras.saving.register_keras_serializable(package="test_task_contract")
class StricterMatcher(ArgMaxMatcher):
    def __init__(self, margin: float = 0.1, **kwargs):
        super().__init__(**kwargs)
        self.margin = margin

    def get_config(self):
        return {**super().get_config(), "margin": self.margin}


@keras.saving.register_keras_serializable(package="test_task_contract")
class TopFiveDecoder(DetectionDecoder):
    def __init__(self, **kwargs):
        kwargs["max_detections"] = 5
        super().__init__(**kwargs)


def test_custom_matcher_and_decoder_subclasses_round_trip_as_themselves(tmp_path):
    model = _ssd(matcher=StricterMatcher(margin=0.3, matched_threshold=0.6),
                 decoder=TopFiveDecoder(score_threshold=0.2))
    model.save(tmp_path / "ssd.keras")
    loaded = keras.saving.load_model(tmp_path / "ssd.keras")
    assert type(loaded.matcher) is StricterMatcher
    assert (loaded.matcher.margin, loaded.matcher.matched_threshold) == (0.3, 0.6)
    assert type(loaded.decoder) is TopFiveDecoder
    assert loaded.decoder.score_threshold == 0.2
    dets = loaded.predict(np.zeros((1, 128, 128, 3), "float32"), verbose=0)
    assert dets["boxes"].shape == (1, 5, 4)


def test_predict_and_export_share_one_decoder():
    """The exported graph is model.postprocess(tflite_ops=True): same detections as predict."""
    model = _ssd(decoder=DetectionDecoder(score_threshold=0.05, max_detections=20),
                 class_prior=0.2)
    rng = np.random.default_rng(1)
    raw = {"boxes": tf.constant(rng.normal(0, 1, (2, len(model.anchors), 4)), tf.float32),
           "classes": tf.constant(rng.normal(-1, 2, (2, len(model.anchors), 4)), tf.float32)}
    batched = model.postprocess(raw)
    looped = model.postprocess(raw, tflite_ops=True)
    np.testing.assert_array_equal(np.asarray(looped["num_detections"]), np.asarray(batched["num_detections"]))
    np.testing.assert_array_equal(np.asarray(looped["classes"]), np.asarray(batched["classes"]))
    np.testing.assert_allclose(np.asarray(looped["scores"]), np.asarray(batched["scores"]), atol=1e-6)
    np.testing.assert_allclose(np.asarray(looped["boxes"]), np.asarray(batched["boxes"]), atol=1e-5)
    # ...and the TFLite file runs that same graph.
    x = rng.uniform(0, 255, (1, 128, 128, 3)).astype("float32")
    lite = TFLiteRunner(to_tflite(model))(x)
    keras_dets = model.predict(x, verbose=0)
    assert int(lite["num_detections"][0]) == int(keras_dets["num_detections"][0])
    np.testing.assert_allclose(lite["scores"], keras_dets["scores"], atol=1e-4)
    # One implementation: the exporter holds no NMS or box decoding of its own.
    source = inspect.getsource(export)
    assert "NonMaxSuppression" not in source and "box_coder" not in source


def test_saved_model_export_returns_predict_results(tmp_path):
    model = _ssd(bounding_box_format="xyxy")
    path = export.export_saved_model(model, tmp_path / "ssd_savedmodel")
    loaded = tf.saved_model.load(path)
    x = np.random.default_rng(2).uniform(0, 255, (1, 128, 128, 3)).astype("float32")
    out = loaded.serve(tf.constant(x))
    # The served graph is the model's own serving path (ties between equal scores of an
    # untrained model make only the exact same NMS kernel comparable box by box).
    ref = model.postprocess(model(x, training=False), tflite_ops=True)
    np.testing.assert_allclose(out["boxes"].numpy(), np.asarray(ref["boxes"]), atol=1e-3)
    np.testing.assert_array_equal(out["classes"].numpy(), np.asarray(ref["classes"]))
    predicted = model.predict(x, verbose=0)
    assert int(out["num_detections"][0]) == int(predicted["num_detections"][0])


def test_preprocessor_owns_size_and_box_format():
    model = _ssd(bounding_box_format="xyxy")
    assert model.preprocessor.image_size == (128, 128) == model.image_size
    assert model.preprocessor.bounding_box_format == "xyxy"
    boxes = np.array([[[0.0, 32.0, 64.0, 128.0]]], np.float32)  # xyxy pixels
    np.testing.assert_allclose(np.asarray(model.preprocessor.to_model_boxes(boxes)),
                               [[[0.25, 0.0, 1.0, 0.5]]])
    with pytest.raises(ValueError, match="image_size"):
        _ssd(preprocessor=DetectionPreprocessor(300))
    with pytest.raises(ValueError, match="bounding_box_format"):
        DetectionPreprocessor(128, "corners")


def test_heads_check_the_backbone_contract():
    with pytest.raises(ValueError, match="stride 32"):
        SSD(MobileNetBackbone(alpha=0.25, output_stride=16), num_classes=2)
    with pytest.raises(ValueError, match="MobileNetBackbone"):
        SSD(keras.Sequential([keras.Input((128, 128, 3)), keras.layers.Conv2D(8, 3)]), num_classes=2)
    with pytest.raises(ValueError, match="MobileNetBackbone"):
        MobileNetClassifier(keras.Sequential([keras.Input((64, 64, 3)), keras.layers.Conv2D(8, 3)]))
    backbone = MobileNetBackbone(alpha=0.5, output_stride=16)
    assert backbone.feature_strides == {"P1": 2, "P2": 4, "P3": 8, "P4": 16, "P5": 16}
    assert backbone.feature_channels["P5"] == 512


def test_from_preset_loads_the_backbone_for_a_new_head_and_everything_for_its_own_task():
    reference = MobileNetBackbone.from_preset(presets.IMAGENET)
    ssd = SSD.from_preset(presets.IMAGENET, num_classes=3, image_size=128)
    assert ssd.backbone.min_depth == 16  # the TF OD API feature extractor's setting
    np.testing.assert_array_equal(ssd.backbone.get_layer("conv_pw_13").get_weights()[0],
                                  reference.get_layer("conv_pw_13").get_weights()[0])
    classifier = MobileNetClassifier.from_preset(presets.IMAGENET, include_preprocessing=True)
    assert classifier.num_classes == 1000
    head = classifier.get_layer("conv_preds").get_weights()[0]
    assert np.abs(head).max() > 0.5  # trained logits, not a fresh initialisation
    new_head = MobileNetClassifier.from_preset(presets.IMAGENET, num_classes=5)
    assert new_head.output_shape == (None, 5)


def test_with_image_size_rebuilds_a_task_with_its_weights():
    model = _ssd()
    bigger = model.with_image_size(160)
    assert bigger.image_size == (160, 160) and len(bigger.anchors) > len(model.anchors)
    for a, b in zip(model.get_weights(), bigger.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_paper_tables_are_data_only():
    paper_src = (ROOT / "mobilenet_zoo" / "paper.py").read_text()
    imported = {
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(ast.parse(paper_src)) if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    }
    assert imported <= {"__future__", "typing"}, imported
    assert len(paper.PAPER_TABLES) == 5 and paper.TABLE_13["Faster-RCNN 300 MobileNet"]["billion_mult_adds"] == 25.2


@pytest.mark.parametrize("name", RECIPES)
def test_every_recipe_has_the_shared_flags(name, monkeypatch):
    recipe = importlib.import_module(f"recipes.{name}")
    seen: set[str] = set()

    def capture(self, args=None, namespace=None):
        seen.update(o for action in self._actions for o in action.option_strings)
        raise SystemExit(0)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", capture)
    with pytest.raises(SystemExit):
        recipe.parse_args([])
    for flag in ("--smoke", "--resume", "--strategy", "--out", "--alpha", "--image-size"):
        assert flag in seen, (name, flag)
    assert "--init" not in seen and "--resolution" not in seen and "--input-size" not in seen


@pytest.mark.parametrize("name", RECIPES + ["tradeoff"])
def test_every_recipe_names_the_learning_rate_learning_rate(name, capsys):
    """One name per idea: ``--learning-rate`` (``--lr``, the older name, a hidden alias)."""
    recipe = importlib.import_module(f"recipes.{name}")
    args = recipe.parse_args(["--learning-rate", "0.125"])
    assert args.learning_rate == 0.125 and not hasattr(args, "lr")
    if name not in ("imagenet", "stanford_dogs", "tradeoff"):  # config flags: no older name
        assert recipe.parse_args(["--lr", "0.25"]).learning_rate == 0.25
    with pytest.raises(SystemExit):
        recipe.parse_args(["--help"])
    assert "--learning-rate" in capsys.readouterr().out


def test_transfer_recipe_smoke_runs(tmp_path):
    from recipes import transfer
    results = transfer.main(["--smoke", "--out", str(tmp_path), "--verbose", "0"])
    assert 0 <= results["final_val_accuracy"] <= 1
    assert (tmp_path / "head" / "backup").is_dir() and (tmp_path / "fine_tune" / "backup").is_dir()
    assert keras.saving.load_model(tmp_path / "model.keras").output_shape == (None, 2)


def test_package_exports_the_task_api():
    for name in ("Task", "SSD", "ssd_mobilenet_v1", "FasterRCNN", "faster_rcnn_mobilenet_v1", "DeepLabV3", "MobileNetClassifier",
                 "DetectionPreprocessor", "SegmentationPreprocessor", "ImageClassifierPreprocessor"):
        assert hasattr(mobilenet_zoo, name), name


def test_cli_and_recipe_start_quietly():
    """No page of TensorFlow C++ start-up lines before our own output."""
    for cmd in (["mobilenet-zoo", "presets"], [sys.executable, "-m", "mobilenet_zoo.presets"],
                [sys.executable, str(ROOT / "recipes" / "transfer.py"), "--help"]):
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd=ROOT)
        assert done.returncode == 0, done.stderr[-2000:]
        assert "I0000" not in done.stderr and "absl::InitializeLog" not in done.stderr, done.stderr
        assert "RuntimeWarning" not in done.stderr
