"""Units of the SSD: anchors, coder, matcher, mining, loss, decoder (hand-checked)."""

import math

import numpy as np
import pytest
import tensorflow as tf

from mobilenet_zoo.detection import (
    ArgMaxMatcher,
    DetectionDecoder,
    FasterRCNNBoxCoder,
    FocalLoss,
    SSDAnchorGenerator,
    SSDLoss,
    feature_map_sizes,
)
from mobilenet_zoo.detection.losses import build_targets, hard_negative_mask, smooth_l1


def _box(cy, cx, h, w):
    return [cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2]


def test_anchor_counts_match_the_tf_od_api():
    gen = SSDAnchorGenerator()
    assert feature_map_sizes(300) == [(19, 19), (10, 10), (5, 5), (3, 3), (2, 2), (1, 1)]
    assert len(gen(300)) == 1917
    assert feature_map_sizes(512) == [(32, 32), (16, 16), (8, 8), (4, 4), (2, 2), (1, 1)]
    assert len(gen(512)) == 5118
    assert gen.num_anchors_per_location() == [3, 6, 6, 6, 6, 6]


def test_first_boxes_of_each_layer_have_tf_od_api_coordinates():
    anchors = SSDAnchorGenerator()(300)
    scales = [0.2 + 0.75 * i / 5 for i in range(6)] + [1.0]
    r2 = math.sqrt(2)
    c0 = 0.5 / 19
    # Lowest layer: (0.1, 1), (0.2, 2), (0.2, 1/2).
    np.testing.assert_allclose(anchors[0], _box(c0, c0, 0.1, 0.1), atol=1e-6)
    np.testing.assert_allclose(anchors[1], _box(c0, c0, 0.2 / r2, 0.2 * r2), atol=1e-6)
    np.testing.assert_allclose(anchors[2], _box(c0, c0, 0.2 * r2, 0.2 / r2), atol=1e-6)
    # Second cell of the lowest layer moves along x first (row-major y, then x).
    np.testing.assert_allclose(anchors[3], _box(c0, 1.5 / 19, 0.1, 0.1), atol=1e-6)
    start = 19 * 19 * 3
    for layer, grid in enumerate([10, 5, 3, 2, 1], start=1):
        s, s_next = scales[layer], scales[layer + 1]
        c = 0.5 / grid
        first = anchors[start : start + 6]
        np.testing.assert_allclose(first[0], _box(c, c, s, s), atol=1e-6)
        np.testing.assert_allclose(first[1], _box(c, c, s / r2, s * r2), atol=1e-6)
        r3 = math.sqrt(3)
        np.testing.assert_allclose(first[3], _box(c, c, s / r3, s * r3), atol=1e-6)
        si = math.sqrt(s * s_next)  # interpolated box, last in the current order
        np.testing.assert_allclose(first[5], _box(c, c, si, si), atol=1e-6)
        start += grid * grid * 6
    assert start == 1917


def test_2017_order_puts_the_interpolated_box_after_ratio_one():
    current = SSDAnchorGenerator().box_specs()[1]
    old = SSDAnchorGenerator(order="2017").box_specs()[1]
    s, s_next = 0.35, 0.5
    assert old[:2] == [(s, 1.0), (math.sqrt(s * s_next), 1.0)]
    assert current[-1] == (math.sqrt(s * s_next), 1.0)
    assert sorted(old) == sorted(current)


def test_anchor_generator_rejects_bad_arguments():
    with pytest.raises(ValueError, match="order"):
        SSDAnchorGenerator(order="2019")
    with pytest.raises(ValueError, match="min_scale"):
        SSDAnchorGenerator(min_scale=0.9, max_scale=0.2)


def test_box_coder_matches_hand_computation_and_round_trips():
    coder = FasterRCNNBoxCoder()
    anchors = np.array([[0.0, 0.0, 1.0, 1.0]], np.float32)
    box = np.array([[0.1, 0.2, 0.5, 0.6]], np.float32)
    codes = np.asarray(coder.encode(box, anchors))
    expected = [10 * (0.3 - 0.5), 10 * (0.4 - 0.5), 5 * math.log(0.4), 5 * math.log(0.4)]
    np.testing.assert_allclose(codes[0], expected, rtol=1e-5)
    rng = np.random.default_rng(0)
    anchors = SSDAnchorGenerator()(300)
    centers = rng.uniform(0.2, 0.8, (1917, 2))
    sizes = rng.uniform(0.05, 0.3, (1917, 2))
    boxes = np.concatenate([centers - sizes / 2, centers + sizes / 2], 1).astype(np.float32)
    np.testing.assert_allclose(np.asarray(coder.decode(coder.encode(boxes, anchors), anchors)), boxes, atol=1e-5)


def test_matcher_thresholds_forced_match_and_padding():
    anchors = np.array(
        [[0, 0, 0.5, 0.5], [0, 0, 0.4, 0.4], [0.5, 0.5, 1, 1], [0.6, 0.6, 1, 1]], np.float32
    )
    gt = np.array([[[0, 0, 0.5, 0.5], [0.55, 0.55, 1.0, 1.0], [0, 0, 1, 1]]], np.float32)
    valid = np.array([[True, True, False]])  # third row is padding
    m = np.asarray(ArgMaxMatcher().match(gt, valid, anchors))[0]
    # anchor 0: IoU 1 with gt 0; anchor 1: IoU 0.64 with gt 0; anchor 2: IoU 0.81 with gt 1;
    # anchor 3: IoU 0.79 with gt 1.
    assert m.tolist() == [0, 0, 1, 1]
    strict = np.asarray(ArgMaxMatcher(0.9, 0.7, force_match_for_each_row=False).match(gt, valid, anchors))[0]
    assert strict.tolist() == [0, -1, -2, -2]  # 0.64 < 0.7 negative; 0.79/0.81 ignored
    forced = np.asarray(ArgMaxMatcher(0.9, 0.9).match(gt, valid, anchors))[0]
    assert forced.tolist() == [0, -1, 1, -1]  # gt 1 forced onto its best anchor (2)
    empty = np.asarray(ArgMaxMatcher().match(gt, np.zeros((1, 3), bool), anchors))[0]
    assert empty.tolist() == [-1, -1, -1, -1]


def test_hard_negative_mining_keeps_three_negatives_per_positive():
    loss = tf.constant([[9.0, 5.0, 1.0, 4.0, 3.0, 2.0, 0.5]])
    positive = tf.constant([[True, False, False, False, False, False, False]])
    negative = ~positive
    mask = np.asarray(hard_negative_mask(loss, positive, negative, 3.0))[0]
    assert mask.tolist() == [False, True, False, True, True, False, False]
    none = np.asarray(hard_negative_mask(loss, ~negative & False, negative, 3.0))[0]
    assert not none.any()  # no positive, min_negatives 0: nothing mined


def test_ssd_loss_equals_hand_computation():
    # 1 positive (class 1 of 2 -> index 2), 4 negatives; 3 hardest negatives kept.
    cls_pred = np.array([[[0.0, 0.0, 2.0], [3.0, 1.0, 0.0], [0.0, 2.0, 0.0],
                          [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]], np.float32)
    box_pred = np.array([[[0.5, -2.0, 0.0, 0.1]] + [[9.0] * 4] * 4], np.float32)
    box_targets = np.zeros((1, 5, 4), np.float32)
    class_targets = np.zeros((1, 5, 3), np.float32)
    class_targets[0, 0, 2] = 1
    class_targets[0, 1:, 0] = 1
    positive = np.array([[True, False, False, False, False]])
    negative = ~positive

    def bce(logit, label):
        return max(logit, 0) - logit * label + math.log1p(math.exp(-abs(logit)))

    per_anchor = [sum(bce(z, t) for z, t in zip(cls_pred[0, a], class_targets[0, a])) for a in range(5)]
    negs = sorted(per_anchor[1:], reverse=True)[:3]
    expected_cls = per_anchor[0] + sum(negs)
    expected_box = (0.5 * 0.25) + (2.0 - 0.5) + 0 + 0.5 * 0.01
    total, parts = SSDLoss()(box_pred, cls_pred, box_targets, class_targets, positive, negative)
    np.testing.assert_allclose(float(parts["cls_loss"]), expected_cls, rtol=1e-5)
    np.testing.assert_allclose(float(parts["box_loss"]), expected_box, rtol=1e-5)
    np.testing.assert_allclose(float(total), expected_cls + expected_box, rtol=1e-5)
    assert float(parts["num_matches"]) == 1


def test_focal_loss_is_a_drop_in_replacement():
    cls_pred = tf.zeros((1, 4, 3))
    targets = tf.one_hot([[1, 0, 0, 0]], 3)
    pos = tf.constant([[True, False, False, False]])
    total, parts = FocalLoss()(tf.zeros((1, 4, 4)), cls_pred, tf.zeros((1, 4, 4)), targets, pos, ~pos)
    # p = 0.5 everywhere: each term alpha_t * 0.25 * log 2.
    per_pos = (0.25 + 2 * 0.75) * 0.25 * math.log(2)
    per_neg = (0.25 + 2 * 0.75) * 0.25 * math.log(2)
    np.testing.assert_allclose(float(total), per_pos + 3 * per_neg, rtol=1e-5)


def test_smooth_l1_is_huber_with_delta_one():
    out = np.asarray(smooth_l1(tf.constant([[0.5, 2.0, -3.0, 0.0]]), tf.zeros((1, 4))))
    np.testing.assert_allclose(out, [0.125 + 1.5 + 2.5], rtol=1e-6)


def test_targets_put_background_at_index_zero():
    anchors = tf.constant([[0, 0, 0.5, 0.5], [0.5, 0.5, 1, 1]], tf.float32)
    gt = tf.constant([[[0, 0, 0.5, 0.5], [-1, -1, -1, -1]]], tf.float32)
    matches = tf.constant([[0, -1]])
    boxes, classes, pos, neg = build_targets(
        matches, gt, tf.constant([[4, -1]]), anchors, FasterRCNNBoxCoder(), num_classes=5
    )
    assert np.argmax(np.asarray(classes)[0], -1).tolist() == [5, 0]
    np.testing.assert_allclose(np.asarray(boxes)[0], 0, atol=1e-5)
    assert np.asarray(pos).tolist() == [[True, False]] and np.asarray(neg).tolist() == [[False, True]]


def test_decoder_runs_per_class_nms():
    anchors = tf.constant(
        [[0.1, 0.1, 0.5, 0.5], [0.12, 0.1, 0.52, 0.5], [0.6, 0.6, 0.9, 0.9]], tf.float32
    )
    logits = np.full((1, 3, 3), -10.0, np.float32)  # background + 2 classes
    logits[0, 0, 1] = 3.0  # class 0, high
    logits[0, 1, 1] = 2.0  # class 0, overlaps anchor 0 (IoU 0.9): suppressed
    logits[0, 1, 2] = 1.0  # class 1 on the same box: kept (per-class NMS)
    logits[0, 2, 1] = 0.0
    dets = DetectionDecoder(score_threshold=0.1, max_detections=5)(
        tf.zeros((1, 3, 4)), logits, anchors, box_coder=FasterRCNNBoxCoder()
    )
    n = int(dets["num_detections"][0])
    assert n == 3
    assert np.asarray(dets["classes"])[0, :n].tolist() == [0, 1, 0]
    np.testing.assert_allclose(np.asarray(dets["scores"])[0, :n], [1 / (1 + math.exp(-s)) for s in (3, 1, 0)], rtol=1e-5)
    np.testing.assert_allclose(np.asarray(dets["boxes"])[0, 0], [0.1, 0.1, 0.5, 0.5], atol=1e-6)
    assert np.asarray(dets["classes"])[0, n:].tolist() == [-1, -1]
