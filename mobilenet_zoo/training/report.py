"""A fine-tune run's report (issue 29): the same validation set through every model the user
gets, the Keras model and the exported ``.tflite`` files run by LiteRT, side by side.

``score_detector`` measures one model (pycocotools AP, AP50, AP75 and per-class AP, through
``detection.coco_eval``; the latency of one image), ``score_classifier`` a classifier (top-1,
top-5), ``score_segmenter`` a segmenter (mean IoU, pixel accuracy); ``write_report`` writes ``report.json``
(the numbers) and ``report.md`` (a table, a precision-recall curve per class, detections on
validation photos and the MediaPipe Tasks snippet for the phone file). VOC ``difficult``
objects are ground truth marked crowd, which COCOeval neither counts as misses nor as false
positives, as the VOC devkit ignores them.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mobilenet_zoo.detection.coco_eval import (
    RECALL_LEVELS,
    coco_evaluation,
    collect,
)
from mobilenet_zoo.detection.voc_eval import voc_evaluation
from mobilenet_zoo.files import atomic_write
from mobilenet_zoo.segmentation.metrics import confusion_matrix as segmentation_confusion
from mobilenet_zoo.segmentation.metrics import segmentation_scores

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
PR_CURVES = "pr_curves.png"
DETECTIONS = "detections.png"
CONFUSION = "confusion.png"
OVERLAYS = "overlays.png"


@dataclass
class Scored:
    """One model measured on the validation set."""

    name: str  #: for people: "Keras (float32)", "TFLite int8"...
    file: str  #: its file name in the run folder
    #: detectors: pycocotools' 12 (+ VOC_AP50 on VOC data); classifiers: top1, top5; segmenters:
    #: mIoU, pixel_accuracy
    metrics: dict[str, float]
    per_class: dict[str, dict[str, float]]  #: detectors: AP, AP50, AP75; classifiers: accuracy; IoU
    latency_ms: float  #: median time for one image (batch 1), this machine
    size_mb: float
    images: int = 0  #: validation photos scored
    curves: dict[str, list[float]] = field(default_factory=dict)  #: detectors: PR at IoU 0.5
    confusion: list[list[int]] | None = None  #: classifiers: [true][predicted] counts

    def as_json(self) -> dict[str, Any]:
        out = {"name": self.name, "file": self.file, "size_mb": round(self.size_mb, 2),
               "latency_ms": round(self.latency_ms, 2), "images": self.images, "metrics": self.metrics,
               "per_class": self.per_class}
        if self.confusion is not None:
            out["confusion"] = self.confusion
        return out


def median_latency_ms(predict: Callable[[np.ndarray], Any], image: np.ndarray, repeats: int = 10) -> float:
    """Median wall time of ``predict(image[None])`` over ``repeats`` calls, after two warm-ups."""
    batch = np.asarray(image)[None]
    for _ in range(2):
        predict(batch)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        predict(batch)
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def score_detector(name: str, path: str, predict: Callable[[Any], dict], val: Any, model: Any,
                   source: Any, max_batches: int | None = None) -> Scored:
    """``predict`` (a Keras ``predict_on_batch`` or a ``TFLiteRunner``) over the validation
    batches ``val`` (``model.preprocessor.pipeline``: model-size images, boxes in
    ``model.bounding_box_format``), scored in each photo's own pixels by pycocotools, and by
    the VOC devkit's rule too (``VOC_AP50``, ``detection.voc_eval``) when ``source`` is VOC."""
    def run(images):
        out = {k: np.asarray(v) for k, v in predict(np.asarray(images)).items()}
        out["classes"] = out["classes"].astype(np.int64)  # the TFLite op gives float class ids
        return out

    ground_truth, detections = collect(run, val, model.bounding_box_format, model.image_size,
                                       source.category_ids, source.class_names, max_batches)
    evaluation = coco_evaluation(ground_truth, detections)
    metrics, per_class = evaluation.metrics, evaluation.per_class
    if getattr(source, "format", None) == "voc":  # the VOC devkit's AP50 beside pycocotools'
        voc = voc_evaluation(ground_truth, detections)
        metrics = {**metrics, "VOC_AP50": voc.ap50}
        per_class = {c: {**v, "VOC_AP50": voc.per_class.get(c, -1.0)} for c, v in per_class.items()}
    first = np.asarray(next(iter(val))[0])[0]
    return Scored(name, os.path.basename(path), metrics, per_class,
                  median_latency_ms(run, first), _size_mb(path), len(ground_truth["images"]),
                  curves=evaluation.pr_curves)


def score_classifier(name: str, path: str, predict: Callable[[Any], Any], val: Any,
                     class_names: Sequence[str], max_batches: int | None = None) -> Scored:
    """``predict`` (Keras ``predict_on_batch`` or a ``TFLiteRunner``: class scores) over the
    ``(images, labels)`` batches ``val``: top-1, top-5 (top-k of all classes when fewer than
    5), accuracy per class and the confusion matrix."""
    run = _one_output(predict)
    n = len(class_names)
    confusion = np.zeros((n, n), np.int64)
    top5 = total = 0
    for b, (images, labels) in enumerate(val):
        if max_batches is not None and b >= max_batches:
            break
        # float64 first: a uint8 file's scores would wrap around when negated for the sort
        scores = run(images).astype(np.float64).reshape(len(labels), -1)
        labels = np.asarray(labels).astype(np.int64)
        best = np.argsort(-scores, axis=-1)
        np.add.at(confusion, (labels, best[:, 0]), 1)
        top5 += int((best[:, :5] == labels[:, None]).any(-1).sum())
        total += len(labels)
    per_class = {c: {"accuracy": float(confusion[i, i] / row) if (row := confusion[i].sum()) else -1.0,
                     "images": int(confusion[i].sum())} for i, c in enumerate(class_names)}
    metrics = {"top1": float(np.trace(confusion) / max(total, 1)), "top5": float(top5 / max(total, 1))}
    first = np.asarray(next(iter(val))[0])[0]
    return Scored(name, os.path.basename(path), metrics, per_class, median_latency_ms(run, first),
                  _size_mb(path), total, confusion=confusion.tolist())


def score_segmenter(name: str, path: str, predict: Callable[[Any], Any], val: Any,
                    class_names: Sequence[str], max_batches: int | None = None) -> Scored:
    """``predict`` (Keras ``predict_on_batch`` or a ``TFLiteRunner``: per-pixel class scores)
    over the ``(images, masks)`` batches ``val`` (``model.preprocessor.pipeline``: photos
    stretched to the input, masks by nearest neighbour, 255 ignored): mean IoU over the
    classes in the masks or the predictions (DeepLab's measure, TF's ``mean_iou``), pixel
    accuracy, IoU per class (-1.0: a class in neither; both -1.0 when no pixel is labelled)."""
    run = _one_output(predict)
    n = len(class_names)
    confusion = np.zeros((n, n), np.int64)
    images_seen = 0
    for b, (images, masks) in enumerate(val):
        if max_batches is not None and b >= max_batches:
            break
        # float32 first: a uint8 file's scores keep their order (one scale for every class)
        predicted = np.argmax(run(images).astype(np.float32), axis=-1)
        confusion += segmentation_confusion(masks, predicted, n)
        images_seen += len(predicted)
    scores = segmentation_scores(confusion)
    per_class = {c: {"IoU": -1.0 if iou is None else iou, "pixels": int(confusion[i].sum())}
                 for i, (c, iou) in enumerate(zip(class_names, scores["per_class_iou"]))}
    labelled = confusion.sum() > 0  # every pixel 255 (ignored): nothing measured, n/a not 0
    metrics = {"mIoU": scores["mean_iou"] if labelled else -1.0,
               "pixel_accuracy": scores["pixel_accuracy"] if labelled else -1.0}
    first = np.asarray(next(iter(val))[0])[0]
    return Scored(name, os.path.basename(path), metrics, per_class, median_latency_ms(run, first),
                  _size_mb(path), images_seen, confusion=confusion.tolist())


def _one_output(predict: Callable[[Any], Any]) -> Callable[[Any], np.ndarray]:
    """``predict`` as a function of images giving its one output as an array (a
    ``TFLiteRunner`` gives a dict of one named output, Keras the array)."""
    def run(images):
        out = predict(np.asarray(images))
        return np.asarray(next(iter(out.values())) if isinstance(out, dict) else out)
    return run


def _size_mb(path: str) -> float:
    return os.path.getsize(path) / 1e6 if os.path.isfile(path) else _folder_size(path)


def _folder_size(path: str) -> float:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs) / 1e6


def pr_curves(scored: Sequence[Scored], class_names: Sequence[str], path: str) -> str:
    """One precision-recall plot per class at IoU 0.5, a line per model (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib import pyplot as plt

    columns = min(4, len(class_names))
    rows = -(-len(class_names) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 3.0 * rows), squeeze=False)
    for ax, name in zip(axes.flat, class_names):
        for s in scored:
            ap50 = s.per_class.get(name, {}).get("AP50", -1.0)
            ax.plot(RECALL_LEVELS, s.curves.get(name, [0.0] * len(RECALL_LEVELS)),
                    label=f"{s.name} ({ap50:.2f})" if ap50 >= 0 else s.name)
        ax.set(title=name, xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02))
        ax.legend(fontsize=6, loc="lower left")
    for ax in list(axes.flat)[len(class_names):]:
        ax.axis("off")
    fig.suptitle("Precision-recall at IoU 0.5 (AP50 in brackets), validation set")
    fig.tight_layout()
    return _save(fig, path)


def _save(fig: Any, path: str) -> str:
    """The figure as a PNG at ``path`` (whole or not at all), then closed."""
    from matplotlib import pyplot as plt

    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    finally:
        plt.close(fig)
    return path


def confusion_matrix(confusion: Sequence[Sequence[int]], class_names: Sequence[str], title: str,
                     path: str) -> str:
    """The confusion matrix (rows: true class, columns: predicted) as a picture."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib import pyplot as plt

    counts = np.asarray(confusion)
    side = max(3.0, 0.5 * len(class_names) + 1.5)
    fig, ax = plt.subplots(figsize=(side + 1, side))
    image = ax.imshow(counts, cmap="Blues")
    ax.set(xticks=range(len(class_names)), yticks=range(len(class_names)), xlabel="predicted",
           ylabel="true", title=title)
    ax.set_xticklabels(class_names, rotation=45, ha="right", fontsize=8)
    ax.set_yticklabels(class_names, fontsize=8)
    if len(class_names) <= 20:
        for (i, j), v in np.ndenumerate(counts):
            ax.text(j, i, str(v), ha="center", va="center", fontsize=7,
                    color="white" if v > counts.max() / 2 else "black")
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    return _save(fig, path)


#: The MediaPipe Tasks API that runs each task's file, and how it prints a result.
_MEDIAPIPE = {
    "detector": ("ObjectDetector", "score_threshold=0.3", "detect",
                 "    for d in result.detections:\n"
                 "        print(d.categories[0].category_name, d.categories[0].score, d.bounding_box)\n"),
    "classifier": ("ImageClassifier", "max_results=3", "classify",
                   "    for c in result.classifications[0].categories:\n"
                   "        print(c.category_name, c.score)\n"),
    "segmenter": ("ImageSegmenter", "output_category_mask=True", "segment",
                  "    # the photo's size, a class index per pixel; copied: the view dies with `result`\n"
                  "    mask = result.category_mask.numpy_view().copy()\n"
                  "    print(model.labels, mask.shape)\n"),
}


def mediapipe_snippet(tflite_file: str, resize_mode: str = "stretch", task: str = "detector") -> str:
    """The MediaPipe Tasks code that runs ``tflite_file`` (its metadata carries the labels, the
    input normalisation and, for a detector, the post-processing op: no other file needed)."""
    api, option, call, show = _MEDIAPIPE[task]
    note = ("" if resize_mode == "stretch" else
            "# This model was trained padded to a square; ObjectDetector stretches the photo\n"
            "# (docs/deploy.md, 'Resize mode'): crop photos to a square first, or fine-tune\n"
            "# with --resize-mode stretch.\n")
    return (f"{note}import mediapipe as mp\n"
            "from mediapipe.tasks.python import BaseOptions, vision\n\n"
            f"options = vision.{api}Options(base_options=BaseOptions(model_asset_path=\"{tflite_file}\"),\n"
            f"                                {option})\n"
            f"with vision.{api}.create_from_options(options) as model:\n"
            f"    result = model.{call}(mp.Image.create_from_file(\"photo.jpg\"))\n"
            f"{show}")


def write_report(out_dir: str, summary: dict[str, Any], scored: Sequence[Scored],
                 class_names: Sequence[str], snippet: str, pictures: dict[str, str]) -> dict[str, Any]:
    """``report.json`` and ``report.md`` in ``out_dir`` (each written whole or not at all);
    ``pictures`` (``{what: file name}``) are expected there. Returns the report."""
    report = {**summary, "classes": list(class_names), "models": [s.as_json() for s in scored],
              "pictures": dict(pictures), "mediapipe": snippet}
    _write_text(os.path.join(out_dir, REPORT_JSON), json.dumps(report, indent=2) + "\n")
    _write_text(os.path.join(out_dir, REPORT_MD), _markdown(report, scored, class_names))
    return report


def _write_text(path: str, text: str) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    atomic_write(path, write)


#: Per task: (headline metrics, what they are, the per-class number, the per-class count).
_TABLES = {
    "detector": (("AP", "AP50", "AP75"), "COCO AP (IoU 0.50:0.95), AP50 and AP75 by pycocotools",
                 "AP50", ("boxes", "ground_truth")),
    "classifier": (("top1", "top5"), "Top-1 and top-5 accuracy (top-5: n/a with 5 classes or "
                   "fewer)", "accuracy", ("images", "images")),
    "segmenter": (("mIoU", "pixel_accuracy"), "Mean IoU over the classes (DeepLab's measure) and "
                  "pixel accuracy at the model's input size, 255 = ignored", "IoU",
                  ("pixels", "pixels")),
}
#: Column titles for people (the report.json keys stay as they are).
_HEADERS = {"pixel_accuracy": "pixel accuracy", "VOC_AP50": "VOC AP50", "top1": "top-1", "top5": "top-5"}
_PICTURES = {"pr_curves": "Precision-recall curves", "detections": "Detections on validation photos "
             "(Keras model)", "confusion": "Confusion matrix (Keras model; rows: true class)",
             "overlays": "Predicted masks on validation photos (Keras model; the true masks below "
                         "each)"}


def _markdown(report: dict[str, Any], scored: Sequence[Scored], class_names: Sequence[str]) -> str:
    def pct(v: float) -> str:
        return "n/a" if v < 0 else f"{100 * v:.1f}"

    keys, what, per, (count_title, count_key) = _TABLES[report.get("task", "detector")]
    if scored and "VOC_AP50" in scored[0].metrics:  # data labelled as Pascal VOC
        keys, what = (*keys, "VOC_AP50"), what + "; VOC_AP50: the VOC devkit's AP at IoU 0.5 (difficult boxes ignored)"
    lines = [f"# Fine-tuned {report.get('task', 'model')}: {report.get('out', '')}", "",
             f"Data: {report.get('data', '')}", "",
             f"Started from `{report.get('preset', '')}`; {report.get('training', '')}", "",
             "## Every model on the same validation photos", "",
             f"{what}, in percent, on {scored[0].images if scored else 0} validation photos; latency: "
             "median for one image on the machine that ran the report. `model.keras` also holds "
             "the optimizer's state (to train on).",
             "", "| model | file | MB | ms / image | " + " | ".join(_HEADERS.get(k, k) for k in keys) + " |",
             "|---|---|---:|---:|" + "---:|" * len(keys)]
    def shown(s: Scored, k: str) -> str:  # top-5 of 5 classes or fewer says nothing
        return "n/a" if k == "top5" and len(class_names) <= 5 else pct(s.metrics[k])

    for s in scored:
        lines.append(f"| {s.name} | `{s.file}` | {s.size_mb:.1f} | {s.latency_ms:.1f} | "
                     + " | ".join(shown(s, k) for k in keys) + " |")
    lines += ["", f"## {per} per class", "",
              f"| class | {count_title} | " + " | ".join(s.name for s in scored) + " |",
              "|---|---:|" + "---:|" * len(scored)]
    for name in class_names:
        count = scored[0].per_class.get(name, {}).get(count_key, 0) if scored else 0
        cells = [pct(s.per_class.get(name, {}).get(per, -1.0)) for s in scored]
        lines.append(f"| {name} | {count} | " + " | ".join(cells) + " |")
    for key, file in report["pictures"].items():
        lines += ["", f"## {_PICTURES[key]}", "", f"![{key}]({file})"]
    lines += ["", "## On the phone: MediaPipe Tasks", "", "```python", report["mediapipe"].rstrip(),
              "```", ""]
    return "\n".join(lines)
