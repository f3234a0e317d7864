import numpy as np
import pytest
import tensorflow as tf
from skimage import data as skdata

from mobilenet_zoo import MobileNetBackbone, MobileNetClassifier
from mobilenet_zoo.export import TFLiteRunner, to_tflite


@pytest.fixture(scope="module")
def classifier_and_photos():
    model = MobileNetClassifier(
        MobileNetBackbone.from_preset("mobilenet_v1_1.0_224_imagenet", input_shape=(160, 160, 3)),
        include_preprocessing=True, weights="mobilenet_v1_1.0_224_imagenet")
    photos = [skdata.chelsea(), skdata.coffee(), skdata.astronaut(), skdata.rocket()]
    x = np.concatenate([tf.image.resize(p[None].astype(np.float32), (160, 160)).numpy() for p in photos])
    return model, x


def test_float_and_quantized_classifiers_agree_with_keras(classifier_and_photos):
    model, x = classifier_and_photos
    ref = model.predict(x, verbose=0)
    float_flat = to_tflite(model)
    float_lite = TFLiteRunner(float_flat)
    got = np.concatenate([next(iter(float_lite(xi[None]).values())) for xi in x])
    np.testing.assert_allclose(got, ref, atol=1e-4)
    int8 = to_tflite(model, quantize="int8", representative_data=[xi[None] for xi in x])
    dynamic = to_tflite(model, quantize="dynamic")
    for flat in (int8, dynamic):
        runner = TFLiteRunner(flat)
        q = np.concatenate([next(iter(runner(xi[None]).values())) for xi in x])
        # Quantized: the two confident photos keep their top-1 class (cat, espresso).
        assert (q[:2].argmax(-1) == ref[:2].argmax(-1)).all()
    assert len(int8) < 0.35 * len(float_flat)


def test_dynamic_size_model_needs_input_shape_and_int8_needs_data():
    model = MobileNetBackbone(alpha=0.25, input_shape=(None, None, 3))
    with pytest.raises(ValueError, match="static input size"):
        to_tflite(model)
    assert len(to_tflite(model, image_size=64)) > 0
    with pytest.raises(ValueError, match="representative_data"):
        to_tflite(model, quantize="int8", image_size=64)
