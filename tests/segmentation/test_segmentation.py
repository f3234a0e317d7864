
import keras
import numpy as np
import pytest
import tensorflow as tf

from mobilenet_zoo import MobileNetBackbone
from mobilenet_zoo.data import segmentation as sdata
from mobilenet_zoo.export import TFLiteRunner, to_tflite
from mobilenet_zoo.segmentation import (
    ASPP_RATES,
    DeepLabV3,
    MeanIoU,
    PixelAccuracy,
    confusion_matrix,
    segmentation_loss,
    segmentation_scores,
)


def _model(output_stride=16, **kwargs):
    backbone = MobileNetBackbone(alpha=0.25, output_stride=output_stride, input_shape=(None, None, 3))
    return DeepLabV3(backbone, num_classes=4, **kwargs)


@pytest.mark.parametrize("output_stride", [8, 16, 32])
def test_output_has_the_input_size_and_aspp_rates_follow_the_stride(output_stride):
    model = _model(output_stride)
    assert model.aspp_rates == ASPP_RATES[output_stride]
    assert model.get_layer("aspp_atrous_1").dilation_rate == (ASPP_RATES[output_stride][0],) * 2
    for shape in [(64, 64), (97, 130)]:
        out = model(np.zeros((1, *shape, 3), np.float32))
        assert out.shape == (1, *shape, 4)
    assert ASPP_RATES[8] == tuple(2 * r for r in ASPP_RATES[16]) == (12, 24, 36)


def test_decoder_and_separable_aspp_options():
    model = _model(use_decoder=True, separable_aspp=True)
    names = {la.name for la in model.layers}
    assert {"decoder_low_level", "decoder_conv_1_depthwise", "aspp_atrous_2_depthwise"} <= names
    assert model(np.zeros((2, 96, 96, 3), np.float32)).shape == (2, 96, 96, 4)
    with pytest.raises(ValueError, match="low_level_level"):
        _model(use_decoder=True, low_level_level="P9")


def test_unsupported_output_stride_is_a_clear_error():
    with pytest.raises(ValueError, match="output_stride"):
        MobileNetBackbone(output_stride=4)


def test_mean_iou_and_pixel_accuracy_match_hand_computation_ignoring_255():
    y_true = np.array([[0, 0, 1, 1], [2, 2, 255, 255]])
    y_pred = np.array([[0, 1, 1, 1], [2, 0, 0, 2]])
    # Class 0: TP 1, FP 1 (true 2 pred 0), FN 1 -> IoU 1/3; class 1: TP 2, FP 1 -> 2/3;
    # class 2: TP 1, FN 1 -> 1/2; class 3 absent. Ignored pixels do not count.
    expected_miou = (1 / 3 + 2 / 3 + 1 / 2) / 3
    cm = confusion_matrix(y_true, y_pred, 4)
    scores = segmentation_scores(cm)
    assert scores["mean_iou"] == pytest.approx(expected_miou)
    assert scores["pixel_accuracy"] == pytest.approx(4 / 6)
    assert scores["per_class_iou"][3] is None
    logits = tf.one_hot(y_pred, 4)[None]
    keras_miou = MeanIoU(4)
    keras_miou.update_state(y_true[None], logits)
    assert float(keras_miou.result()) == pytest.approx(expected_miou, abs=1e-6)
    acc = PixelAccuracy()
    acc.update_state(y_true[None], logits)
    assert float(acc.result()) == pytest.approx(4 / 6)


def test_confusion_matrix_rejects_out_of_range_labels():
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        confusion_matrix(np.array([0, 5]), np.array([0, 0]), 3)


def test_loss_ignores_the_ignore_label():
    loss = segmentation_loss()
    logits = tf.constant([[[[5.0, 0.0], [0.0, 5.0]]]])
    a = float(loss(tf.constant([[[0, 255]]]), logits))
    b = float(loss(tf.constant([[[0, 0]]]), logits))
    assert a < 0.01 < b


def _pairs(image_hw, mask_hw, mask_value=1):
    image = np.zeros((*image_hw, 3), np.uint8)
    mask = np.full((*mask_hw, 1), mask_value, np.uint8)
    return tf.data.Dataset.from_tensors({"image": image, "mask": mask})


def test_pipeline_rejects_size_mismatch_and_bad_labels():
    with pytest.raises(tf.errors.InvalidArgumentError, match="sizes differ"):
        next(iter(sdata.segmentation_pipeline(_pairs((32, 32), (16, 16)), 3, 32, 1)))
    with pytest.raises(tf.errors.InvalidArgumentError, match="ignore label"):
        next(iter(sdata.segmentation_pipeline(_pairs((32, 32), (32, 32), 7), 3, 32, 1)))
    ok = next(iter(sdata.segmentation_pipeline(_pairs((32, 40), (32, 40), 255), 3, 32, 1)))
    assert ok[1].shape == (1, 32, 32) and int(ok[1][0, 0, 0]) == 255


def test_training_augmentation_keeps_image_and_mask_aligned():
    image = np.zeros((60, 80, 3), np.uint8)
    image[:, :40] = 200  # left half bright, labelled 1
    mask = np.zeros((60, 80, 1), np.uint8)
    mask[:, :40] = 1
    ds = tf.data.Dataset.from_tensors({"image": image, "mask": mask}).repeat(6)
    for images, masks in sdata.segmentation_pipeline(ds, 2, 48, 1, training=True, seed=1):
        img, m = np.asarray(images)[0], np.asarray(masks)[0]
        labelled = m != 255
        assert ((img[..., 0] > 100) == (m == 1))[labelled].mean() > 0.97
        assert (img[~labelled] == 0).all()  # padding is ignore-labelled


def test_embedded_masks_exist_and_fit_the_classes(tmp_path, monkeypatch):
    monkeypatch.setenv("MOBILENET_ZOO_CACHE", str(tmp_path))
    src = sdata.embedded_digits("val", num_train=4, num_val=3)
    ex = next(iter(src.dataset))
    assert ex["mask"].shape[:2] == ex["image"].shape[:2]
    assert set(np.unique(ex["mask"])) <= {0, 1} and np.asarray(ex["mask"]).max() == 1
    full = next(iter(sdata.embedded_digits("val", num_train=4, num_val=3, binary=False).dataset))
    assert set(np.unique(full["mask"])) <= set(range(11)) and np.asarray(full["mask"]).max() >= 1


def test_fit_on_a_batch_and_save_round_trip(tmp_path):
    model = _model(use_decoder=True)
    model.compile(keras.optimizers.Adam(1e-3), segmentation_loss(), metrics=[MeanIoU(4), PixelAccuracy()])
    x = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype(np.float32)
    y = np.random.default_rng(1).integers(0, 4, (2, 64, 64))
    hist = model.fit(x, y, epochs=3, verbose=0)
    assert hist.history["loss"][-1] < hist.history["loss"][0]
    model.save(tmp_path / "seg.keras")
    loaded = keras.saving.load_model(tmp_path / "seg.keras")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)


def test_tflite_export_matches_keras_and_argmax_option():
    keras.utils.set_random_seed(0)
    backbone = MobileNetBackbone(weights="mobilenet_v1_1.0_224_imagenet", input_shape=(None, None, 3))
    model = DeepLabV3(backbone, num_classes=3)
    x = np.random.default_rng(0).uniform(0, 255, (1, 96, 96, 3)).astype(np.float32)
    ref = model.predict(x, verbose=0)
    lite = next(iter(TFLiteRunner(to_tflite(model, image_size=96))(x).values()))
    np.testing.assert_allclose(lite, ref, atol=1e-3)
    ids = next(iter(TFLiteRunner(to_tflite(model, image_size=96, argmax=True))(x).values()))
    assert ids.shape == (1, 96, 96) and (ids == ref.argmax(-1)).mean() > 0.999


def _recipe():
    from recipes import segmentation

    return segmentation


def test_recipe_smoke_on_mock_pets(tmp_path):
    r = _recipe().main(["--smoke", "--alpha", "0.25", "--weights", "scratch", "--out", str(tmp_path),
                        "--verbose", "0", "--tflite-argmax"])
    assert r["data"].startswith("tfds.testing.mock_data")
    for f in ("model.keras", "model.tflite", "overlays.png", "results.json"):
        assert (tmp_path / f).exists()
    assert r["tflite"]["max_abs_diff_vs_keras"] == 0


def test_recipe_runs_on_the_embedded_default(tmp_path, monkeypatch):
    monkeypatch.setenv("MOBILENET_ZOO_CACHE", str(tmp_path / "cache"))
    r = _recipe().main(["--alpha", "0.25", "--weights", "scratch", "--image-size", "64", "--epochs", "1",
                        "--steps-per-epoch", "2", "--batch-size", "2", "--out", str(tmp_path / "run"),
                        "--verbose", "0", "--no-tflite"])
    assert "embedded" in r["data"] and 0 <= r["val"]["mean_iou"] <= 1


@pytest.mark.slow
def test_short_training_on_the_embedded_masks_reaches_a_useful_miou(tmp_path):
    """DeepLabV3 on MobileNet 1.0 (ImageNet preset), 2 epochs at 128 px on digit masks."""
    r = _recipe().main(["--image-size", "128", "--epochs", "2", "--out", str(tmp_path),
                        "--verbose", "0", "--no-tflite"])
    miou = r["val"]["mean_iou"]
    print(f"embedded mIoU after 2 epochs: {miou:.3f}")
    # Measured: 0.618 and 0.578 in two runs (2-core CPU; tf.data / thread order are not
    # bitwise deterministic); predicting background everywhere gives ~0.48.
    assert miou >= 0.53
