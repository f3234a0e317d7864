"""Pascal VOC AP50 as the VOC devkit computes it (``VOCevaldet.m`` and ``VOCap.m``, VOC2012
devkit s.4.3), beside pycocotools' AP for data labelled as VOC.

Per class, detections of all images sorted by score: each one is matched to the ground-truth
box of its image it overlaps most, a true positive at IoU >= 0.5 (the devkit's
``ovmax>=VOCopts.minoverlap``; py-faster-rcnn's ``voc_eval.py`` has ``>``) if that box was not
found before, else a false positive (a second detection); one whose best box is ``difficult``
counts neither way, and difficult boxes are not among the positives to find. AP is the area under
the precision envelope at every recall point (VOC2010 onwards), or the mean of its 11 values
at recall 0, 0.1, ..., 1 (``use_07_metric``, VOC2007).

Boxes are ``[x, y, width, height]`` in continuous pixel coordinates (the COCO dicts of
``detection.coco_eval.collect``). The devkit adds 1 to widths because its coordinates are
1-based inclusive pixel indices; the readers turn those into continuous coordinates
(``xmin - 1`` .. ``xmax``), where the plain IoU is the devkit's. Difficult boxes reach here as
COCO ``iscrowd`` (``layouts.voc``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: The overlap a detection needs to be a true positive (VOC devkit ``VOCevaldet.m``: >= 0.5).
IOU_THRESHOLD = 0.5


@dataclass
class VOCEvaluation:
    """``ap50``: the mean over classes with at least one non-difficult box; ``per_class``: each
    class's AP50 by name (-1.0: no box to find)."""

    ap50: float
    per_class: dict[str, float]


def voc_ap(recall: np.ndarray, precision: np.ndarray, use_07_metric: bool = False) -> float:
    """The area under the precision envelope (VOC2010+), or the 11-point mean (VOC2007)."""
    recall, precision = np.asarray(recall, np.float64), np.asarray(precision, np.float64)
    if use_07_metric:
        return float(np.mean([precision[recall >= t].max() if (recall >= t).any() else 0.0
                              for t in np.linspace(0.0, 1.0, 11)]))
    r = np.concatenate([[0.0], recall, [1.0]])
    p = np.concatenate([[0.0], precision, [0.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]  # precision envelope: the best at this recall or more
    steps = np.nonzero(r[1:] != r[:-1])[0]
    return float(np.sum((r[steps + 1] - r[steps]) * p[steps + 1]))


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one ``[x, y, w, h]`` box with each of ``boxes``."""
    x0, y0 = np.maximum(box[0], boxes[:, 0]), np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[0] + box[2], boxes[:, 0] + boxes[:, 2])
    y1 = np.minimum(box[1] + box[3], boxes[:, 1] + boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    return inter / np.maximum(box[2] * box[3] + boxes[:, 2] * boxes[:, 3] - inter, 1e-12)


def voc_evaluation(ground_truth: dict[str, Any], detections: Sequence[dict[str, Any]],
                   use_07_metric: bool = False) -> VOCEvaluation:
    """VOC AP50 of ``detections`` (COCO result dicts) against ``ground_truth`` (a COCO dict;
    ``iscrowd`` 1 = VOC difficult), per class and their mean."""
    truth: dict[tuple[int, int], list[dict]] = defaultdict(list)
    for a in ground_truth["annotations"]:
        truth[(a["image_id"], a["category_id"])].append(a)
    found: dict[int, list[dict]] = defaultdict(list)
    for d in detections:
        found[d["category_id"]].append(d)
    per_class: dict[str, float] = {}
    for category in ground_truth["categories"]:
        cid = category["id"]
        positives = sum(not a.get("iscrowd", 0) for (_, c), boxes in truth.items() if c == cid
                        for a in boxes)
        if positives == 0:
            per_class[category["name"]] = -1.0
            continue
        matched = {key: np.zeros(len(boxes), bool) for key, boxes in truth.items() if key[1] == cid}
        hits: list[float] = []
        for d in sorted(found[cid], key=lambda d: -d["score"]):  # stable: ties keep their order
            boxes = truth.get((d["image_id"], cid), [])
            if not boxes:
                hits.append(0.0)
                continue
            overlaps = _iou(np.asarray(d["bbox"], np.float64), np.asarray([a["bbox"] for a in boxes],
                                                                          np.float64))
            best = int(np.argmax(overlaps))
            if overlaps[best] < IOU_THRESHOLD:
                hits.append(0.0)
            elif boxes[best].get("iscrowd", 0):
                continue  # difficult: neither a hit nor a false alarm
            elif matched[(d["image_id"], cid)][best]:
                hits.append(0.0)  # a second detection of a found box
            else:
                matched[(d["image_id"], cid)][best] = True
                hits.append(1.0)
        tp = np.cumsum(hits)
        fp = np.cumsum(1.0 - np.asarray(hits))
        recall = tp / positives
        precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
        per_class[category["name"]] = voc_ap(recall, precision, use_07_metric) if hits else 0.0
    present = [v for v in per_class.values() if v >= 0]
    return VOCEvaluation(float(np.mean(present)) if present else 0.0, per_class)
