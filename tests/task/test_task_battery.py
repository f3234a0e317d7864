"""One contract battery over every task model: the classifier, SSD, Faster R-CNN and DeepLabV3
each serve the same results from Keras, a SavedModel and a TFLite file, fold, resize, build
from presets and name bad inputs. (Saving and loading in a fresh interpreter after
``import mobilenet_zoo`` alone: test_task_contract.test_load_model_opens_every_task_file_after_import_mobilenet_zoo_alone.)"""

import backend_check
import numpy as np
import pytest
import tensorflow as tf
from backend_check import DETECTORS, TASKS

from mobilenet_zoo import (
    SSD,
    DeepLabV3,
    FasterRCNN,
    MobileNetBackbone,
    MobileNetClassifier,
    fold_batch_norm,
    presets,
)
from mobilenet_zoo.export import TFLiteRunner, export_saved_model, to_tflite
from mobilenet_zoo.testing import randomize_batch_norm

# The four task models at the sizes the cross-backend harness uses too.
_build = backend_check.build


def _images(name, seed=0):
    size = 128 if name in DETECTORS else 64
    return np.random.default_rng(seed).uniform(0, 255, (1, size, size, 3)).astype("float32")


def _served(model, name, x):
    """What the exported graph computes, from the Keras model (the one serving path)."""
    out = model.postprocess(model(x, training=False), tflite_ops=True)
    if name in DETECTORS:  # the 5 best scores: an untrained head ties many equal scores, and
        # which of the tied boxes NMS keeps is float noise (box-by-box checks with a trained
        # backbone: test_faster_rcnn.py, test_detection_model.py)
        return {"scores": np.asarray(out["scores"])[:, :5]}
    return {"output": np.asarray(out)}


@pytest.fixture(scope="module", params=TASKS)
def task(request):
    model = randomize_batch_norm(_build(request.param), seed=1)
    return request.param, model


def test_keras_savedmodel_and_tflite_serve_the_same_results(task, tmp_path):
    name, model = task
    x = _images(name)
    expected = _served(model, name, x)
    loaded = tf.saved_model.load(export_saved_model(model, tmp_path / "saved"))
    saved = loaded.serve(tf.constant(x))
    lite = TFLiteRunner(to_tflite(model, tmp_path / "model.tflite"))(x)
    for key, value in expected.items():
        got_saved = saved[key] if isinstance(saved, dict) else saved
        got_lite = lite[key] if key in lite else next(iter(lite.values()))
        if name in DETECTORS:
            got_saved, got_lite = np.asarray(got_saved)[:, :5], np.asarray(got_lite)[:, :5]
        np.testing.assert_allclose(np.asarray(got_saved), value, atol=1e-4, err_msg=f"{name} {key}")
        np.testing.assert_allclose(np.asarray(got_lite), value, atol=1e-4, err_msg=f"{name} {key}")


def test_folded_model_gives_the_same_raw_outputs(task):
    name, model = task
    x = _images(name, seed=1)
    raw, folded = model(x, training=False), fold_batch_norm(model)(x, training=False)
    for a, b in zip(tf.nest.flatten(raw), tf.nest.flatten(folded)):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-4, atol=1e-4,
                                   err_msg=name)


def test_with_image_size_keeps_the_weights(task):
    name, model = task
    size = 160 if name in DETECTORS else 96
    bigger = model.with_image_size(size)
    assert bigger.image_size == (size, size)
    layer = "conv_pw_13" if name != "faster_rcnn" else "conv_pw_11"
    np.testing.assert_array_equal(bigger.backbone.get_layer(layer).get_weights()[0],
                                  model.backbone.get_layer(layer).get_weights()[0])
    bigger.predict(np.zeros((1, size, size, 3), "float32"), verbose=0)


@pytest.mark.parametrize("name", TASKS)
def test_from_preset_initialises_every_task(name):
    cls = {"classifier": MobileNetClassifier, "ssd": SSD, "faster_rcnn": FasterRCNN,
           "deeplab": DeepLabV3}[name]
    model = cls.from_preset(presets.IMAGENET, num_classes=3)
    reference = MobileNetBackbone.from_preset(presets.IMAGENET)
    np.testing.assert_array_equal(model.backbone.get_layer("conv_pw_11").get_weights()[0],
                                  reference.get_layer("conv_pw_11").get_weights()[0])


def test_images_of_the_wrong_shape_are_named(task):
    name, model = task
    if model.image_size == (None, None):
        pytest.skip("any size")
    if name in DETECTORS:  # a detector resizes any size (issue 28); a wrong channel count
        # is named, with what it takes
        with pytest.raises(ValueError, match=r"got \(1, 33, 33, 4\)\. Any height and width is resized.*3 channels"):
            model.predict(np.zeros((1, 33, 33, 4), "float32"), verbose=0)
        out = model.predict(np.zeros((1, 33, 33, 3), "float32"), verbose=0)
        assert out["boxes"].shape[0] == 1
        return
    with pytest.raises(ValueError, match=r"expects images of shape \(batch, \d+, \d+, 3\).*resize them first"):
        model.predict(np.zeros((1, 33, 33, 3), "float32"), verbose=0)


def test_faster_rcnn_refuses_the_ssd_only_postprocess_op(tmp_path):
    model = _build("faster_rcnn")
    with pytest.raises(ValueError, match="only an SSD exports through the TFLite_Detection_PostProcess"):
        to_tflite(model, tmp_path / "frcnn.tflite", postprocess="detection_postprocess")
    assert not list(tmp_path.iterdir())
