"""fold_batch_norm: same outputs without BatchNorm, for every model of the package."""

import keras
import numpy as np
import pytest

from mobilenet_zoo import (
    SSD,
    DeepLabV3,
    MobileNetBackbone,
    MobileNetClassifier,
    fold_batch_norm,
)
from mobilenet_zoo.export import TFLiteRunner, to_tflite
from mobilenet_zoo.testing import randomize_batch_norm
from mobilenet_zoo.weights_io import iter_weighted_layers


def _batch_norms(model):
    return [la for la in iter_weighted_layers(model) if isinstance(la, keras.layers.BatchNormalization)]


def _models():
    rng = np.random.default_rng(1)
    return {
        "classifier": (MobileNetClassifier(MobileNetBackbone(alpha=0.25, input_shape=(64, 64, 3)),
                                           num_classes=7, classifier_activation=None),
                       rng.uniform(-1, 1, (2, 64, 64, 3))),
        "backbone_os16": (MobileNetBackbone(alpha=0.5, input_shape=(None, None, 3), output_stride=16),
                          rng.uniform(-1, 1, (2, 96, 80, 3))),
        "ssd": (SSD(MobileNetBackbone(alpha=0.25, min_depth=16), num_classes=3, image_size=128),
                rng.uniform(0, 255, (2, 128, 128, 3))),
        "deeplab": (DeepLabV3(MobileNetBackbone(alpha=0.25, input_shape=(None, None, 3),
                                                output_stride=16, depth_multiplier=2),
                              num_classes=3, use_decoder=True, separable_aspp=True),
                    rng.uniform(0, 255, (2, 64, 64, 3))),
    }


def _flat(out):
    return np.concatenate([np.asarray(v).ravel() for v in (out.values() if isinstance(out, dict) else [out])])


@pytest.mark.parametrize("name", ["classifier", "backbone_os16", "ssd", "deeplab"])
def test_folded_model_has_no_batch_norm_and_the_same_outputs(name):
    model, x = _models()[name]
    randomize_batch_norm(model)
    folded = fold_batch_norm(model)
    assert type(folded) is type(model)
    assert _batch_norms(model) and not _batch_norms(folded)
    assert folded.count_params() < model.count_params()  # 4 per channel -> 1 bias per channel
    x = x.astype("float32")
    ref, out = _flat(model(x, training=False)), _flat(folded(x, training=False))
    scale = np.abs(ref).max()
    assert scale > 1e-3  # random statistics: folding is not the identity
    assert np.abs(out - ref).max() <= 1e-4 * scale


def test_folded_ssd_round_trips_through_keras_and_tflite(tmp_path):
    model, x = _models()["ssd"]
    randomize_batch_norm(model)
    folded = fold_batch_norm(model)
    folded.save(tmp_path / "folded.keras")
    loaded = keras.saving.load_model(tmp_path / "folded.keras")
    assert loaded.backbone.folded_batch_norm and not _batch_norms(loaded)
    x = x[:1].astype("float32")
    np.testing.assert_allclose(_flat(loaded(x, training=False)), _flat(model(x, training=False)),
                               atol=1e-4)
    dets = model.predict(x, verbose=0)
    lite = TFLiteRunner(to_tflite(loaded))(x)
    assert int(lite["num_detections"][0]) == int(dets["num_detections"][0])
    np.testing.assert_allclose(np.sort(lite["scores"][0]), np.sort(dets["scores"][0]), atol=1e-4)


def test_folded_classifier_tflite_equals_keras():
    model, x = _models()["classifier"]
    randomize_batch_norm(model)
    folded = fold_batch_norm(model)
    x = x.astype("float32")
    lite = np.concatenate([next(iter(TFLiteRunner(to_tflite(folded, fold=False))(xi[None]).values()))
                           for xi in x])
    ref = np.asarray(model(x, training=False))
    np.testing.assert_allclose(lite, ref, atol=1e-4 * np.abs(ref).max())


def test_fold_refuses_other_models_and_is_idempotent():
    with pytest.raises(ValueError, match="MobileNetBackbone or a task model"):
        fold_batch_norm(keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3),
                                          keras.layers.BatchNormalization()]))
    folded = fold_batch_norm(MobileNetBackbone(alpha=0.25))
    assert fold_batch_norm(folded) is folded
