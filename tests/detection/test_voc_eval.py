"""The VOC devkit's AP50 (mobilenet_zoo.detection.voc_eval), pinned on a case worked by hand
with the devkit's rules (VOCevaldet.m): duplicates are false positives, difficult boxes count
neither way, AP is the area under the precision envelope (VOC2007: the 11-point mean)."""

from __future__ import annotations

import pytest

from mobilenet_zoo.detection.voc_eval import voc_ap, voc_evaluation

GROUND_TRUTH = {
    "images": [{"id": 1, "height": 100, "width": 100}, {"id": 2, "height": 100, "width": 100}],
    "annotations": [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "iscrowd": 0},
        {"id": 2, "image_id": 1, "category_id": 1, "bbox": [20, 20, 10, 10], "iscrowd": 1},  # difficult
        {"id": 3, "image_id": 2, "category_id": 1, "bbox": [0, 0, 10, 10], "iscrowd": 0},
        {"id": 4, "image_id": 2, "category_id": 3, "bbox": [0, 0, 10, 10], "iscrowd": 1},  # difficult only
    ],
    "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}, {"id": 3, "name": "owl"}],
}
DETECTIONS = [
    {"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.9},    # hit
    {"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.8},    # the same box again
    {"image_id": 1, "category_id": 1, "bbox": [20, 20, 10, 10], "score": 0.7},  # difficult: skipped
    {"image_id": 2, "category_id": 1, "bbox": [50, 50, 10, 10], "score": 0.6},  # nothing there
    {"image_id": 2, "category_id": 1, "bbox": [1, 0, 10, 10], "score": 0.5},    # IoU 90/110: hit
    {"image_id": 2, "category_id": 3, "bbox": [0, 0, 10, 10], "score": 0.9},    # difficult owl
]


def test_duplicates_are_false_positives_and_difficult_boxes_count_neither_way():
    # cat: hits 1 0 0 1 (the difficult detection skipped) of 2 boxes: recall .5 .5 .5 1,
    # precision 1 .5 .33 .5; the envelope is 1 up to recall .5, then .5: AP .5 + .25.
    e = voc_evaluation(GROUND_TRUTH, DETECTIONS)
    assert e.per_class == {"cat": pytest.approx(0.75), "dog": -1.0, "owl": -1.0}
    assert e.ap50 == pytest.approx(0.75)  # classes with no box to find are left out of the mean
    # VOC2007: precision 1 at recall 0, .1, ..., .5 and .5 at .6, ..., 1.
    assert voc_evaluation(GROUND_TRUTH, DETECTIONS, use_07_metric=True).per_class["cat"] == \
        pytest.approx((6 * 1 + 5 * 0.5) / 11)


def test_a_box_found_at_iou_one_half_is_found_and_no_detection_scores_zero():
    edge = [{"image_id": 2, "category_id": 1, "bbox": [0, 0, 10, 20], "score": 0.9}]  # IoU 100/200
    outside = [{"image_id": 2, "category_id": 1, "bbox": [0, 0, 10, 20.1], "score": 0.9}]  # IoU 100/201
    only_image_2 = {**GROUND_TRUTH, "annotations": GROUND_TRUTH["annotations"][2:3]}
    assert voc_evaluation(only_image_2, edge).per_class["cat"] == pytest.approx(1.0)  # devkit: >=
    assert voc_evaluation(only_image_2, outside).per_class["cat"] == 0.0
    assert voc_evaluation(GROUND_TRUTH, []).per_class["cat"] == 0.0


def test_voc_ap_is_the_area_under_the_precision_envelope():
    assert voc_ap([0.5, 1.0], [1.0, 1.0]) == pytest.approx(1.0)
    assert voc_ap([0.25, 0.5], [1.0, 0.5]) == pytest.approx(0.25 + 0.25 * 0.5)
    assert voc_ap([0.5], [1.0], use_07_metric=True) == pytest.approx(6 / 11)
