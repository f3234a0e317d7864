"""A fine-tune run's report (issue 29): the same validation set through every model the user
gets, the Keras model and the exported ``.tflite`` files run by LiteRT, side by side.

``score_detector`` measures one model (pycocotools AP, AP50, AP75 and per-class AP, through
``detection.coco_eval``; the latency of one image); ``write_report`` writes ``report.json``
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
    CocoEvaluation,
    coco_evaluation,
    collect,
)
from mobilenet_zoo.files import atomic_write

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
PR_CURVES = "pr_curves.png"
DETECTIONS = "detections.png"


@dataclass
class Scored:
    """One model measured on the validation set."""

    name: str  #: for people: "Keras (float32)", "TFLite int8"...
    file: str  #: its file name in the run folder
    evaluation: CocoEvaluation
    latency_ms: float  #: median time for one image (batch 1), this machine
    size_mb: float
    notes: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "file": self.file, "size_mb": round(self.size_mb, 2),
                "latency_ms": round(self.latency_ms, 2), "metrics": self.evaluation.metrics,
                "per_class": self.evaluation.per_class, "notes": self.notes}


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
    ``model.bounding_box_format``), scored in each photo's own pixels by pycocotools."""
    def run(images):
        out = {k: np.asarray(v) for k, v in predict(np.asarray(images)).items()}
        out["classes"] = out["classes"].astype(np.int64)  # the TFLite op gives float class ids
        return out

    ground_truth, detections = collect(run, val, model.bounding_box_format, model.image_size,
                                       source.category_ids, source.class_names, max_batches)
    first = np.asarray(next(iter(val))[0])[0]
    size = os.path.getsize(path) / 1e6 if os.path.isfile(path) else _folder_size(path)
    return Scored(name, os.path.basename(path), coco_evaluation(ground_truth, detections),
                  median_latency_ms(run, first), size)


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
            ap50 = s.evaluation.per_class.get(name, {}).get("AP50", -1.0)
            ax.plot(RECALL_LEVELS, s.evaluation.pr_curves.get(name, [0.0] * len(RECALL_LEVELS)),
                    label=f"{s.name} ({ap50:.2f})" if ap50 >= 0 else s.name)
        ax.set(title=name, xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02))
        ax.legend(fontsize=6, loc="lower left")
    for ax in list(axes.flat)[len(class_names):]:
        ax.axis("off")
    fig.suptitle("Precision-recall at IoU 0.5 (AP50 in brackets), validation set")
    fig.tight_layout()
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    finally:
        plt.close(fig)
    return path


def mediapipe_snippet(tflite_file: str, resize_mode: str) -> str:
    """The MediaPipe Tasks ObjectDetector code that runs ``tflite_file`` (its metadata carries
    the labels and the post-processing op, so no other file is needed)."""
    note = ("" if resize_mode == "stretch" else
            "# This model was trained padded to a square; ObjectDetector stretches the photo\n"
            "# (docs/deploy.md, 'Resize mode'): crop photos to a square first, or fine-tune\n"
            "# with --resize-mode stretch.\n")
    return (f"{note}import mediapipe as mp\n"
            "from mediapipe.tasks.python import BaseOptions, vision\n\n"
            f"options = vision.ObjectDetectorOptions(base_options=BaseOptions(model_asset_path=\"{tflite_file}\"),\n"
            "                                       score_threshold=0.3)\n"
            "with vision.ObjectDetector.create_from_options(options) as detector:\n"
            "    result = detector.detect(mp.Image.create_from_file(\"photo.jpg\"))\n"
            "    for d in result.detections:\n"
            "        print(d.categories[0].category_name, d.categories[0].score, d.bounding_box)\n")


def write_report(out_dir: str, summary: dict[str, Any], scored: Sequence[Scored],
                 class_names: Sequence[str], snippet: str) -> dict[str, Any]:
    """``report.json`` and ``report.md`` in ``out_dir`` (each written whole or not at all);
    the pictures (``PR_CURVES``, ``DETECTIONS``) are expected there. Returns the report."""
    report = {**summary, "classes": list(class_names), "models": [s.as_json() for s in scored],
              "pictures": {"pr_curves": PR_CURVES, "detections": DETECTIONS}, "mediapipe": snippet}
    _write_text(os.path.join(out_dir, REPORT_JSON), json.dumps(report, indent=2) + "\n")
    _write_text(os.path.join(out_dir, REPORT_MD), _markdown(report, scored, class_names))
    return report


def _write_text(path: str, text: str) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    atomic_write(path, write)


def _markdown(report: dict[str, Any], scored: Sequence[Scored], class_names: Sequence[str]) -> str:
    def pct(v: float) -> str:
        return "n/a" if v < 0 else f"{100 * v:.1f}"

    lines = [f"# Fine-tuned {report.get('task', 'model')}: {report.get('out', '')}", "",
             f"Data: {report.get('data', '')}", "",
             f"Started from `{report.get('preset', '')}`; {report.get('training', '')}", "",
             "## Every model on the same validation set", "",
             "COCO AP (IoU 0.50:0.95), AP50 and AP75 by pycocotools, in percent; latency: median "
             "for one image on the machine that ran the report.", "",
             "| model | file | MB | ms / image | AP | AP50 | AP75 |", "|---|---|---:|---:|---:|---:|---:|"]
    for s in scored:
        m = s.evaluation.metrics
        lines.append(f"| {s.name} | `{s.file}` | {s.size_mb:.1f} | {s.latency_ms:.1f} | {pct(m['AP'])} | "
                     f"{pct(m['AP50'])} | {pct(m['AP75'])} |")
    lines += ["", "## AP50 per class", "",
              "| class | boxes | " + " | ".join(s.name for s in scored) + " |",
              "|---|---:|" + "---:|" * len(scored)]
    for name in class_names:
        count = scored[0].evaluation.per_class.get(name, {}).get("ground_truth", 0) if scored else 0
        cells = [pct(s.evaluation.per_class.get(name, {}).get("AP50", -1.0)) for s in scored]
        lines.append(f"| {name} | {count} | " + " | ".join(cells) + " |")
    notes = [n for s in scored for n in s.notes]
    if notes:
        lines += [""] + [f"- {n}" for n in notes]
    lines += ["", "## Precision-recall curves", "", f"![precision-recall]({PR_CURVES})", "",
              "## Detections on validation photos (Keras model)", "", f"![detections]({DETECTIONS})",
              "", "## On the phone: MediaPipe Tasks", "", "```python", report["mediapipe"].rstrip(),
              "```", ""]
    return "\n".join(lines)
