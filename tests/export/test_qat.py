"""Quantization-aware training (mobilenet_zoo.qat): the int8 file is written from the learned
ranges without calibration data, and computes what the quantization-aware Keras model computes."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from skimage import data as skdata

from mobilenet_zoo import MobileNetClassifier
from mobilenet_zoo.detection.ssd import SSD
from mobilenet_zoo.export import TFLiteRunner, to_tflite
from mobilenet_zoo.hub import presets
from mobilenet_zoo.qat import is_quantization_aware, quantization_aware
from mobilenet_zoo.segmentation import DeepLabV3

EGYPTIAN_CAT = 285


def _resized(images, size):
    return np.concatenate([tf.image.resize(np.asarray(i, np.float32)[None], size).numpy() for i in images])


@pytest.fixture(scope="module")
def classifier():
    """The shipped ImageNet classifier, its quantization-aware copy calibrated on four photos,
    and the copy's int8 file (uint8 pixels in)."""
    model = MobileNetClassifier.from_preset(presets.IMAGENET, include_preprocessing=True)
    photos = _resized([skdata.chelsea(), skdata.astronaut(), skdata.coffee(), skdata.rocket()],
                      (224, 224))
    qat = quantization_aware(model, [photos])
    flatbuffer = to_tflite(qat, quantize="int8", uint8_io=True)
    return model, qat, photos, flatbuffer


def test_the_int8_file_computes_what_the_quantization_aware_model_computes(classifier):
    model, qat, photos, flatbuffer = classifier
    runner = TFLiteRunner(flatbuffer)
    details = runner.interpreter.get_input_details()[0]
    assert details["dtype"] == np.uint8 and tuple(details["quantization"]) == (1.0, 0)  # camera pixels
    scale, zero = runner.interpreter.get_output_details()[0]["quantization"]
    (scores,) = runner(photos).values()  # one output, named by the converter
    lite = (np.asarray(scores, np.float32) - zero) * scale
    fake = np.asarray(qat.predict(photos, verbose=0))
    # Integer kernels round where the float simulation does not: measured 6 output steps
    # (1/255) at most, 9 of the 4,000 scores more than one step apart; the float model's
    # scores are up to 66 steps from the file's.
    steps = np.abs(lite - fake) / scale
    assert steps.max() <= 8 and (steps > 1.01).mean() < 0.01
    assert (lite.argmax(-1) == fake.argmax(-1)).all()
    assert lite[0].argmax() == EGYPTIAN_CAT == np.asarray(model.predict(photos[:1], verbose=0)).argmax()


def test_the_float_model_is_left_as_it_was(classifier):
    model, qat, photos, _ = classifier
    assert is_quantization_aware(qat) and not is_quantization_aware(model)
    assert type(qat) is MobileNetClassifier
    fresh = MobileNetClassifier.from_preset(presets.IMAGENET, include_preprocessing=True)
    np.testing.assert_allclose(model.predict(photos, verbose=0), fresh.predict(photos, verbose=0),
                               atol=1e-6)
    assert not any("quant_" in v.path for v in model.weights)


def test_ranges_are_weights_that_training_moves(classifier):
    _, qat, photos, _ = classifier
    owners = {v.path.rsplit("/", 1)[0].split("/")[-1]: v for v in qat.weights if v.path.endswith("quant_max")}
    relus = [layer.name for layer in qat.backbone.layers if layer.name.endswith("_relu")]
    assert len(relus) == 27 and set(relus) <= set(owners)  # each ReLU6: fused with its conv...
    assert not {name[: -len("_relu")] for name in relus} & set(owners)  # ...which has no range
    assert all(0 < float(owners[name].numpy()) <= 6.0 for name in relus)
    assert not owners["preprocessing"].trainable and not owners["predictions"].trainable  # fixed
    assert owners["conv_preds"].trainable  # the logits' range is learned
    copy = quantization_aware(MobileNetClassifier.from_preset(presets.IMAGENET, include_preprocessing=True),
                              [photos])
    before = {v.path: float(v.numpy()) for v in copy.trainable_weights if "quant_" in v.path}
    copy.compile(keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    copy.fit(photos, np.array([1, 2, 3, 4]), epochs=1, verbose=0)
    moved = [p for p, v in before.items()
             if abs(float(next(w for w in copy.trainable_weights if w.path == p).numpy()) - v) > 0]
    assert moved, "no range moved in training"


def test_what_cannot_be_honoured_is_refused_before_converting(classifier):
    model, qat, photos, _ = classifier
    with pytest.raises(ValueError, match="its file is int8"):
        to_tflite(qat)
    with pytest.raises(ValueError, match="representative_data"):
        to_tflite(qat, quantize="int8", representative_data=photos)
    with pytest.raises(ValueError, match="would lose its ranges"):
        to_tflite(qat, quantize="int8", image_size=160)
    with pytest.raises(ValueError, match="already quantization-aware"):
        quantization_aware(qat, [photos])
    with pytest.raises(TypeError, match="supports MobileNetClassifier, SSD and DeepLabV3"):
        quantization_aware(keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]), [photos])
    with pytest.raises(ValueError, match="not normalised images"):
        quantization_aware(model, [photos / 255.0])
    with pytest.raises(ValueError, match=r"shape \(224, 224, 3\)"):
        quantization_aware(model, [photos[0]])
    with pytest.raises(ValueError, match="fixed size"):
        quantization_aware(MobileNetClassifier.from_preset(presets.IMAGENET, include_preprocessing=True,
                                                           input_shape=(None, None, 3)), [photos])
    with pytest.raises(ValueError, match="include_preprocessing=True"):
        quantization_aware(MobileNetClassifier.from_preset(presets.IMAGENET), [photos])
    with pytest.raises(ValueError, match="gave no batches"):
        quantization_aware(model, [])


def test_a_quantization_aware_face_detector_finds_the_astronauts_face_in_int8():
    model = SSD.from_preset(presets.FACE_SSD)
    x = _resized([skdata.astronaut()], (512, 512))
    qat = quantization_aware(model, [x])
    lite = TFLiteRunner(to_tflite(qat, quantize="int8", uint8_io=True,
                                  postprocess="detection_postprocess_fast"))(x)
    want = {k: np.asarray(v) for k, v in model.predict(x, verbose=0).items()}
    assert lite["scores"][0, 0] > 0.8 and want["scores"][0, 0] > 0.9
    a, b = lite["boxes"][0, 0], want["boxes"][0, 0]
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    assert inter / union > 0.85, (a, b)


@pytest.mark.parametrize("decoder", [False, True])
def test_a_quantization_aware_deeplab_file_gives_the_class_its_keras_model_gives(decoder):
    """DeepLabV3 (ASPP, image pooling, bilinear upsampling; the fine-tune's) and V3+ (the
    decoder's concatenation and separable convs) on the ImageNet backbone: the int8 file's
    class per pixel is the quantization-aware model's."""
    model = DeepLabV3.from_preset(presets.IMAGENET, input_shape=(128, 128, 3), num_classes=3,
                                  use_decoder=decoder)
    photos = _resized([skdata.chelsea(), skdata.astronaut(), skdata.coffee(), skdata.rocket()], (128, 128))
    qat = quantization_aware(model, [photos])
    assert type(qat) is DeepLabV3
    runner = TFLiteRunner(to_tflite(qat, quantize="int8", uint8_io=True))
    scale, zero = runner.interpreter.get_output_details()[0]["quantization"]
    (scores,) = runner(photos).values()
    lite = (np.asarray(scores, np.float32) - zero) * scale
    fake = np.asarray(qat.predict(photos, verbose=0))
    steps = np.abs(lite - fake) / scale
    # Measured on this untrained head (logits within +-0.01, so one output step is large):
    # without / with the decoder 96.7% / 97.6% of the pixels agree, the logits 2.3 / 1.4 steps
    # apart in the median, 9.8 / 5.6 at the 99th percentile, 16.6 / 10.5 at most.
    assert (lite.argmax(-1) == fake.argmax(-1)).mean() > 0.95
    assert np.median(steps) < 3 and np.percentile(steps, 99) < 12 and steps.max() < 24
