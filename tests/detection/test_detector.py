"""The detector family: what SSD and Faster R-CNN share through ``Detector``."""

import inspect
import json
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from skimage import data as skdata

from mobilenet_zoo import MobileNetBackbone, presets
from mobilenet_zoo.cli.detect import main as detect_main
from mobilenet_zoo.detection import (
    SSD,
    ArgMaxMatcher,
    BalancedSampler,
    DetectionPreprocessor,
    Detector,
    FasterRCNN,
    faster_rcnn_mobilenet_v1,
    non_max_suppression,
)


def _detectors(**kwargs):
    backbone = MobileNetBackbone(alpha=0.25, min_depth=16)
    return {
        "SSD": SSD(backbone, num_classes=3, image_size=128, **kwargs),
        "FasterRCNN": FasterRCNN(backbone, num_classes=3, image_size=128,
                                 proposal_layer={"max_proposals": 20}, **kwargs),
    }


def _ground_truth():
    boxes = np.full((2, 3, 4), -1, np.float32)
    classes = np.full((2, 3), -1, np.int32)
    boxes[0, :2] = [[0.1, 0.1, 0.6, 0.6], [0.4, 0.5, 0.95, 0.95]]
    classes[0, :2] = [0, 2]
    return {"boxes": boxes, "classes": classes}


def test_both_detectors_share_the_ground_truth_checks_and_their_messages():
    messages = {}
    for name, model in _detectors(invalid_boxes="raise").items():
        assert isinstance(model, Detector)
        y = _ground_truth()
        boxes, classes = model.ground_truth(y)
        np.testing.assert_allclose(boxes.numpy()[0, :2], y["boxes"][0, :2])
        bad_label = {**y, "classes": np.where(y["classes"] == 2, 3, y["classes"])}
        empty_box = {**y, "boxes": y["boxes"].copy()}
        empty_box["boxes"][0, 0] = [0.5, 0.5, 0.5, 0.9]
        bad_shape = {**y, "classes": y["classes"][:, :2]}
        messages[name] = []
        for case, match in ((bad_label, "label >= num_classes"), (empty_box, "empty or out-of-image"),
                            (bad_shape, "one label per box")):
            with pytest.raises((ValueError, tf.errors.InvalidArgumentError), match=match) as info:
                model.ground_truth(case)
            messages[name].append(info.value.message if hasattr(info.value, "message") else str(info.value))
    assert messages["SSD"] == messages["FasterRCNN"]
    # The default drops (and counts) what it cannot train on.
    for model in _detectors().values():
        y = _ground_truth()
        y["boxes"][0, 1] = [np.nan, 0, 1, 1]
        _, classes = model.ground_truth(y)
        assert classes.numpy()[0].tolist() == [0, -1, -1]
        assert float(model.loss_trackers["invalid_boxes"].result()) == 1.0


@pytest.mark.parametrize("kwargs, match", [
    ({"invalid_boxes": "keep"}, "invalid_boxes"),
    ({"class_names": ["a", "b"]}, "class_names"),
    ({"preprocessor": DetectionPreprocessor(160)}, "Give both the same values"),
    ({"bounding_box_format": "xyz"}, "bounding_box_format"),
    ({"image_size": 16}, "image_size"),
])
def test_both_detectors_refuse_the_same_bad_arguments_alike(kwargs, match):
    backbone = MobileNetBackbone(alpha=0.25, min_depth=16)
    errors = []
    for cls in (SSD, FasterRCNN):
        with pytest.raises(ValueError, match=match) as info:
            cls(backbone, num_classes=3, **{"image_size": 128, **kwargs})
        errors.append(str(info.value).replace(cls.__name__, "<detector>"))
    assert errors[0] == errors[1]


def test_get_config_mirrors_init_and_round_trips():
    for model in _detectors(class_names=["a", "b", "c"]).values():
        config = model.get_config()
        params = set(inspect.signature(type(model).__init__).parameters) - {"self", "kwargs"}
        assert params <= set(config), sorted(params - set(config))
        again = type(model).from_config(config).get_config()
        assert json.dumps(again, sort_keys=True, default=str) == json.dumps(config, sort_keys=True, default=str)


@keras.saving.register_keras_serializable(package="test_detector")
class HalfSampler(BalancedSampler):
    """A swapped-in sampler: half the examples of its size."""

    def __call__(self, positive, negative, seed=None):
        return super().__call__(positive, negative, seed) & (tf.random.uniform(tf.shape(positive)) < 2.0)


def test_faster_rcnn_pieces_are_swappable_and_come_back_as_themselves(tmp_path):
    model = FasterRCNN(MobileNetBackbone(alpha=0.25, min_depth=16), num_classes=3, image_size=128,
                       rpn_sampler=HalfSampler(size=64), rpn_matcher={"matched_threshold": 0.6},
                       box_sampler={"size": 8}, proposal_layer={"max_proposals": 16, "iou_threshold": 0.5},
                       roi_crop={"crop_size": 7})
    assert (model.rpn_matcher.matched_threshold, model.rpn_matcher.unmatched_threshold) == (0.6, 0.3)
    assert (model.box_sampler.size, model.box_sampler.positive_fraction) == (8, 0.25)
    assert model.max_proposals == 16 and model.box_classifier.inputs[0].shape[1] == 7
    model.compile(keras.optimizers.SGD(0.01))
    x = np.random.default_rng(0).uniform(0, 255, (2, 128, 128, 3)).astype(np.float32)
    history = model.fit(x, _ground_truth(), epochs=1, batch_size=2, verbose=0)
    assert {"loss", "rpn_box", "rpn_objectness", "box", "class", "positives", "invalid_boxes"} <= set(
        history.history)
    evaluated = model.evaluate(x, _ground_truth(), batch_size=2, verbose=0, return_dict=True)
    assert np.isfinite(evaluated["loss"]) and evaluated["positives"] > 0  # the full graph, then the loss
    model.save(tmp_path / "frcnn.keras")
    loaded = keras.saving.load_model(tmp_path / "frcnn.keras")
    assert type(loaded.rpn_sampler) is HalfSampler and loaded.rpn_sampler.size == 64
    assert loaded.proposal_layer.iou_threshold == 0.5 and loaded.roi_crop.crop_size == 7
    assert isinstance(loaded.box_matcher, ArgMaxMatcher) and not loaded.box_matcher.force_match_for_each_row
    np.testing.assert_allclose(loaded.predict(x, verbose=0)["scores"], model.predict(x, verbose=0)["scores"],
                               atol=1e-5)


def test_old_keywords_still_work_with_a_deprecation_warning():
    backbone = MobileNetBackbone(alpha=0.25, min_depth=16)
    with pytest.warns(DeprecationWarning, match="proposal_layer"):
        model = FasterRCNN(backbone, num_classes=3, image_size=128, max_proposals=12, second_stage_batch=8)
    assert model.max_proposals == 12 and model.box_sampler.size == 8
    with pytest.raises(ValueError, match="cannot change"):
        FasterRCNN(backbone, num_classes=3, image_size=128, max_proposals=12,
                   proposal_layer=model.proposal_layer)
    raw = model(np.zeros((1, 128, 128, 3), np.float32))
    with pytest.warns(DeprecationWarning, match="tflite_ops"):
        old = model.postprocess(raw, export=True)
    new = model.postprocess(raw, tflite_ops=True)
    np.testing.assert_array_equal(np.asarray(old["classes"]), np.asarray(new["classes"]))


def test_one_builder_helper_takes_imagenet_a_preset_or_none():
    reference = MobileNetBackbone.from_preset(presets.IMAGENET).get_layer("conv_pw_13").get_weights()[0]
    model = faster_rcnn_mobilenet_v1(3, image_size=128, weights=presets.IMAGENET,
                                     proposal_layer={"max_proposals": 10})
    assert model.backbone.min_depth == 16 and model.max_proposals == 10
    np.testing.assert_array_equal(model.box_classifier.get_layer("conv_pw_13").get_weights()[0], reference)
    with pytest.raises(ValueError, match="alpha"):
        faster_rcnn_mobilenet_v1(3, alpha=0.5, image_size=128, weights=presets.IMAGENET)
    assert faster_rcnn_mobilenet_v1(3, alpha=0.25, image_size=128, weights=None).backbone.alpha == 0.25


@pytest.mark.parametrize("per_class_boxes", [False, True])
def test_the_one_nms_gives_the_same_detections_with_tflite_ops(per_class_boxes):
    rng = np.random.default_rng(0)
    y0 = rng.uniform(0, 0.7, (2, 50, 1, 2))
    shape = (2, 50, 3, 2) if per_class_boxes else (2, 50, 1, 2)
    boxes = np.concatenate([y0 + np.zeros(shape), y0 + rng.uniform(0.05, 0.3, shape)], -1)
    boxes = tf.constant(boxes if per_class_boxes else boxes[:, :, 0], tf.float32)
    scores = tf.constant(rng.uniform(0, 1, (2, 50, 3)), tf.float32)
    a = non_max_suppression(boxes, scores, 10, 20, 0.5, 0.3, clip_boxes=True)
    b = non_max_suppression(boxes, scores, 10, 20, 0.5, 0.3, clip_boxes=True, tflite_ops=True)
    np.testing.assert_array_equal(a[3].numpy(), b[3].numpy())
    for x, y in zip(a[:3], b[:3]):
        np.testing.assert_allclose(x.numpy(), y.numpy(), atol=1e-6)
    assert (a[2].numpy()[0, int(a[3][0]):] == -1).all()  # padding


def test_detect_cli_runs_a_faster_rcnn_keras_file(tmp_path, capsys):
    model = FasterRCNN(MobileNetBackbone(alpha=0.25, min_depth=16), num_classes=2, image_size=128,
                       proposal_layer={"max_proposals": 20}, class_names=["cat", "dog"])
    model.save(tmp_path / "frcnn.keras")
    Image.fromarray(skdata.chelsea()).save(tmp_path / "chelsea.png")
    code = detect_main([str(tmp_path / "chelsea.png"), "--model", str(tmp_path / "frcnn.keras"),
                        "--score", "0", "--out", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    [line] = [json.loads(row) for row in captured.out.splitlines() if row.startswith("{")]
    assert Path(line["image"]).name == "chelsea.png" and line["detections"]
    assert {d["label"] for d in line["detections"]} <= {"cat", "dog"}
    height, width = skdata.chelsea().shape[:2]
    boxes = np.array([d["box"] for d in line["detections"]])
    assert (boxes >= 0).all() and (boxes[:, [0, 2]] <= width).all() and (boxes[:, [1, 3]] <= height).all()
    assert (tmp_path / "out" / "chelsea.png").is_file()
