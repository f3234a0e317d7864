"""COCO evaluation with pycocotools, the reference for COCO numbers.

``evaluate_coco(model, dataset)`` runs the detector over a batched dataset from
``detection_pipeline`` (or any dataset yielding ``(images, y)`` with the same
keys), builds the ground truth and the detections in the original image's
pixels, and returns pycocotools' 12 numbers.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np

METRIC_NAMES = (
    "AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl",
)  # fmt: skip


def coco_metrics(ground_truth: dict, detections: list[dict], verbose: bool = False) -> dict[str, float]:
    """pycocotools COCOeval (bbox) on a ground-truth dict and a detection list.

    With no detections every metric is 0 (pycocotools cannot load an empty list).
    """
    return coco_evaluation(ground_truth, detections, verbose).metrics


#: The recall levels of COCOeval's precision array (``Params.recThrs``: 0, 0.01, ..., 1).
RECALL_LEVELS = np.linspace(0.0, 1.0, 101)


@dataclass
class CocoEvaluation:
    """pycocotools' numbers for one set of detections.

    ``metrics``: the 12 summary numbers. ``per_class``: ``{class name: {"AP", "AP50",
    "AP75", "ground_truth"}}``, COCOeval's per-category average over area "all" and 100
    detections (-1 for a class without ground truth). ``pr_curves``: ``{class name:
    precision at each of RECALL_LEVELS}`` at IoU 0.5 (COCOeval's interpolated precision,
    0 beyond the largest recall reached).
    """

    metrics: dict[str, float]
    per_class: dict[str, dict[str, float]] = field(default_factory=dict)
    pr_curves: dict[str, list[float]] = field(default_factory=dict)


def coco_evaluation(ground_truth: dict, detections: list[dict], verbose: bool = False) -> CocoEvaluation:
    """``coco_metrics`` plus per-class AP and precision-recall curves (COCOeval's
    ``eval["precision"]``, shape (IoU, recall, class, area, max detections))."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    categories = ground_truth.get("categories", [])
    counts = {c["id"]: 0 for c in categories}
    for ann in ground_truth.get("annotations", []):
        if not ann.get("iscrowd"):
            counts[ann["category_id"]] = counts.get(ann["category_id"], 0) + 1
    if not detections:
        def nothing(count: int) -> dict[str, float]:  # -1: no ground truth, as COCOeval
            return {**dict.fromkeys(("AP", "AP50", "AP75"), 0.0 if count else -1.0), "ground_truth": count}

        return CocoEvaluation(
            dict.fromkeys(METRIC_NAMES, 0.0),
            {c["name"]: nothing(counts[c["id"]]) for c in categories},
            {c["name"]: [0.0] * len(RECALL_LEVELS) for c in categories})
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        gt = COCO()
        gt.dataset = ground_truth
        gt.createIndex()
        dt = gt.loadRes(detections)
        evaluator = COCOeval(gt, dt, "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    if verbose:
        print(out.getvalue())
    # pycocotools reports -1 where a size range has no ground truth.
    metrics = {name: float(v) for name, v in zip(METRIC_NAMES, evaluator.stats)}
    precision = evaluator.eval["precision"]  # (T, R, K, A, M); -1: no ground truth
    ious = list(np.round(evaluator.params.iouThrs, 2))
    per_class, curves = {}, {}
    for k, cat_id in enumerate(evaluator.params.catIds):
        name = next(c["name"] for c in categories if c["id"] == cat_id)
        p = precision[:, :, k, 0, -1]  # area "all", the most detections

        def mean(rows, p=p):
            valid = rows[rows > -1]
            return float(valid.mean()) if valid.size else -1.0

        per_class[name] = {"AP": mean(p), "AP50": mean(p[ious.index(0.5)]),
                           "AP75": mean(p[ious.index(0.75)]), "ground_truth": counts.get(cat_id, 0)}
        curves[name] = [float(max(v, 0.0)) for v in p[ious.index(0.5)]]
    return CocoEvaluation(metrics, per_class, curves)


def _to_xywh_pixels(boxes, fmt, size, orig):
    """Boxes in the model's format (for the resized input) -> original-pixel xywh."""
    h, w = size
    rel = keras.ops.convert_to_numpy(
        keras.utils.bounding_boxes.convert_format(
            np.asarray(boxes, np.float32), source=fmt, target="rel_yxyx", height=h, width=w
        )
    )
    oh, ow = float(orig[0]), float(orig[1])
    y0, x0, y1, x1 = rel[..., 0] * oh, rel[..., 1] * ow, rel[..., 2] * oh, rel[..., 3] * ow
    return np.stack([x0, y0, x1 - x0, y1 - y0], -1)


def collect(
    predict_fn: Callable[[Any], dict],
    dataset,
    bounding_box_format: str,
    image_size: Sequence[int],
    category_ids: Sequence[int],
    class_names: Sequence[str] | None = None,
    max_batches: int | None = None,
) -> tuple[dict, list[dict]]:
    """Runs ``predict_fn`` over ``dataset``; returns (ground truth dict, detections)."""
    images, annotations, detections = [], [], []
    next_id = 1
    for b, (x, y) in enumerate(dataset):
        if max_batches is not None and b >= max_batches:
            break
        dets = {k: np.asarray(v) for k, v in predict_fn(x).items()}
        y = {k: np.asarray(v) for k, v in y.items()}
        for i in range(len(y["classes"])):
            image_id = int(y["image_id"][i]) if "image_id" in y else next_id
            if image_id < 0:
                image_id = next_id
            next_id = max(next_id, image_id) + 1
            orig = y["original_size"][i] if "original_size" in y else image_size
            images.append({"id": image_id, "height": int(orig[0]), "width": int(orig[1])})
            valid = y["classes"][i] >= 0
            gt_xywh = _to_xywh_pixels(y["boxes"][i][valid], bounding_box_format, image_size, orig)
            crowd = y["is_crowd"][i][valid] if "is_crowd" in y else np.zeros(valid.sum(), int)
            for box, label, iscrowd in zip(gt_xywh, y["classes"][i][valid], crowd):
                annotations.append({
                    "id": len(annotations) + 1, "image_id": image_id,
                    "category_id": int(category_ids[int(label)]),
                    "bbox": [float(v) for v in box], "area": float(box[2] * box[3]),
                    "iscrowd": int(iscrowd),
                })
            n = int(dets["num_detections"][i])
            det_xywh = _to_xywh_pixels(dets["boxes"][i][:n], bounding_box_format, image_size, orig)
            for box, label, score in zip(det_xywh, dets["classes"][i][:n], dets["scores"][i][:n]):
                detections.append({
                    "image_id": image_id, "category_id": int(category_ids[int(label)]),
                    "bbox": [float(v) for v in box], "score": float(score),
                })
    names = class_names or [str(c) for c in category_ids]
    ground_truth = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": int(c), "name": str(n)} for c, n in zip(category_ids, names)],
    }
    return ground_truth, detections


def evaluate_coco(
    model,
    dataset,
    category_ids: Sequence[int] | None = None,
    class_names: Sequence[str] | None = None,
    max_batches: int | None = None,
    verbose: bool = False,
) -> dict[str, float]:
    """The 12 COCO numbers of ``model`` (any ``Detector``: SSD, Faster R-CNN) on ``dataset``.

    Args:
        model: the detector; its ``predict_on_batch`` returns decoded detections.
        dataset: batches of ``(images, y)`` from ``detection_pipeline``.
        category_ids: COCO category id of each contiguous label (default 1..C;
            ``data.COCO_CATEGORY_IDS`` for COCO 2017).
        class_names: names for the report.
        max_batches: evaluate only this many batches.
        verbose: print pycocotools' summary.

    Returns:
        ``{"AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100",
        "ARs", "ARm", "ARl"}`` in [0, 1] (-1 where a size range has no ground truth).
    """
    if category_ids is None:
        category_ids = list(range(1, model.num_classes + 1))
    if len(category_ids) != model.num_classes:
        raise ValueError(
            f"`category_ids` has {len(category_ids)} ids for a model with "
            f"{model.num_classes} classes."
        )
    ground_truth, detections = collect(
        model.predict_on_batch, dataset, model.bounding_box_format, model.image_size,
        category_ids, class_names, max_batches,
    )
    return coco_metrics(ground_truth, detections, verbose)


def format_table(metrics: dict[str, float]) -> str:
    """pycocotools-style lines for the 12 numbers."""
    rows = [
        ("AP", "IoU=0.50:0.95", "all", 100), ("AP50", "IoU=0.50", "all", 100),
        ("AP75", "IoU=0.75", "all", 100), ("APs", "IoU=0.50:0.95", "small", 100),
        ("APm", "IoU=0.50:0.95", "medium", 100), ("APl", "IoU=0.50:0.95", "large", 100),
        ("AR1", "IoU=0.50:0.95", "all", 1), ("AR10", "IoU=0.50:0.95", "all", 10),
        ("AR100", "IoU=0.50:0.95", "all", 100), ("ARs", "IoU=0.50:0.95", "small", 100),
        ("ARm", "IoU=0.50:0.95", "medium", 100), ("ARl", "IoU=0.50:0.95", "large", 100),
    ]  # fmt: skip
    lines = []
    for key, iou, area, dets in rows:
        kind = "Average Precision" if key.startswith("AP") else "Average Recall   "
        lines.append(
            f" {kind} ({key:>5s}) @[ {iou:<13s} | area={area:>6s} | maxDets={dets:>3d} ] = "
            f"{metrics[key]:.3f}"
        )
    return "\n".join(lines)
