"""Faster R-CNN on keras.ops: the ROI crop against TF's kernel, and the detector on JAX and PyTorch
(same weights as TF -> TF's detections; a few training steps -> finite loss, changed weights)."""

from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from mobilenet_zoo.detection import roi

ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------- crop_and_resize
def _random_crop_inputs(seed, batch=2, size=(19, 23), channels=8, n=40):
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(batch, *size, channels)).astype(np.float32)
    y0 = rng.uniform(-0.3, 1.0, (n, 2))  # corners up to 0.3 outside the image, on both sides
    boxes = np.concatenate([y0, y0 + rng.uniform(0.01, 0.7, (n, 2))], -1).astype(np.float32)
    boxes[:5] = boxes[:5, [2, 3, 0, 1]]  # flipped boxes: tf samples them upside down
    boxes[5] = [0.0, 0.0, 1.0, 1.0]  # the whole map, edges exactly on the border
    boxes[6] = [-0.5, -0.5, 1.5, 1.5]  # larger than the map: zeros around it
    index = rng.integers(0, batch, n).astype(np.int32)
    return features, boxes, index


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("crop", [(14, 14), (7, 5), (1, 1), (1, 4)])
def test_keras_ops_crop_and_resize_equals_tf(seed, crop):
    features, boxes, index = _random_crop_inputs(seed)
    ref = tf.image.crop_and_resize(features, boxes, index, crop).numpy()
    ours = keras.ops.convert_to_numpy(roi.crop_and_resize_builtin(features, boxes, index, crop))
    assert ours.shape == ref.shape == (40, *crop, 8)
    np.testing.assert_allclose(ours, ref, atol=1e-5)
    if max(crop) > 1:  # box 6's outside samples are there, and zero on both
        assert (ref[6] == 0).any()
    # The dispatcher (TF's kernel on this backend) gives the same.
    np.testing.assert_allclose(keras.ops.convert_to_numpy(roi.crop_and_resize(features, boxes, index, crop)),
                               ref, atol=1e-6)


def test_roi_crop_layer_flattens_per_image_boxes():
    features, boxes, _ = _random_crop_inputs(3, n=12)
    per_image = boxes.reshape(2, 6, 4)
    out = roi.ROICrop(crop_size=4)(features, per_image)
    ref = tf.image.crop_and_resize(features, boxes, [0] * 6 + [1] * 6, (4, 4))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(out), ref.numpy(), atol=1e-6)


def test_second_stage_targets_with_fewer_candidates_than_samples_pad_with_unsampled_slots():
    from mobilenet_zoo.detection import ArgMaxMatcher, FasterRCNNBoxCoder, rpn

    proposals = np.array([[[0.1, 0.1, 0.4, 0.4], [0.5, 0.5, 0.9, 0.9], [0, 0, 0, 0]]], np.float32)
    gt = np.array([[[0.1, 0.1, 0.4, 0.4]]], np.float32)
    boxes, labels, _, weights, positive = roi.second_stage_targets(
        proposals, np.array([2]), gt, np.array([[0]]), ArgMaxMatcher(0.5, 0.5, False), FasterRCNNBoxCoder(),
        rpn.BalancedSampler(8, 0.25), seed=3)
    assert boxes.shape == (1, 8, 4)
    # 2 valid proposals + the ground truth: 2 positives (proposal 0, the gt), 1 negative.
    assert keras.ops.convert_to_numpy(weights).sum() == 3
    assert keras.ops.convert_to_numpy(positive).sum() == 2
    assert set(keras.ops.convert_to_numpy(labels)[0].tolist()) == {0, 1}


# ---------------------------------------------------------------- JAX and PyTorch
# Faster R-CNN on JAX and PyTorch against TF's detections, training and saving:
# tests/backends/test_backends.py (one harness for the four task models).
