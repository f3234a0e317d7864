"""The classifier checks its labels itself (on JAX a label >= num_classes trained on a
loss of 0.0 without a word; ``tests/backends`` runs the same check on JAX and PyTorch)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from mobilenet_zoo import MobileNetBackbone, MobileNetClassifier


def _classifier():
    model = MobileNetClassifier(MobileNetBackbone(alpha=0.25, input_shape=(32, 32, 3)), num_classes=3)
    model.compile(keras.optimizers.SGD(1e-3), loss="sparse_categorical_crossentropy")
    return model


@pytest.mark.parametrize("labels", [[0, 1, 2, 3], [0, -1, 1, 2]])
def test_a_label_outside_num_classes_stops_fit_naming_the_range(labels):
    x = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    with pytest.raises(Exception, match=r"num_classes=3\): a label is outside \[0, 3\)"):
        _classifier().fit(x, np.array(labels), epochs=1, verbose=0)


def test_labels_in_range_and_one_hot_labels_train():
    x = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    model = _classifier()
    assert np.isfinite(model.fit(x, np.array([0, 1, 2, 1]), verbose=0).history["loss"][-1])
    model.compile(keras.optimizers.SGD(1e-3), loss="categorical_crossentropy")
    one_hot = keras.utils.to_categorical([0, 1, 2, 1], 3)
    assert model.fit(x, one_hot, verbose=0).history["loss"][-1] > 0


def test_a_binary_classifier_with_one_sigmoid_output_takes_labels_0_and_1():
    model = MobileNetClassifier(MobileNetBackbone(alpha=0.25, input_shape=(32, 32, 3)), num_classes=1,
                                classifier_activation="sigmoid")
    model.compile(keras.optimizers.SGD(1e-3), loss="binary_crossentropy")
    x = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    assert np.isfinite(model.fit(x, np.array([0, 1, 1, 0]), verbose=0).history["loss"][-1])
    with pytest.raises(Exception, match=r"a label is outside \[0, 2\)"):
        model.fit(x, np.array([0, 1, 2, 0]), verbose=0)
