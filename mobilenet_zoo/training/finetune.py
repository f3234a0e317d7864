"""Fine-tuning a preset on the user's labelled photos (issue 29; paper s.4, "fine-grained
recognition" and the detection experiments start from ImageNet or detection weights).

``run_detector`` is ``python -m mobilenet_zoo.finetune detector DATA``: the folder read and its
labels checked (COCO JSON, Pascal VOC or YOLO: ``data.layouts``), an SSD built from the preset
(a detection preset keeps its backbone, extra layers and box predictor and re-initialises the
class predictor for the data's classes: the TF OD API's ``fine_tune_checkpoint_type:
"detection"``, formerly ``from_detection_checkpoint: true``; an ImageNet preset initialises the
backbone), trained with the recipes' loop (progress, ``--resume``, checkpoints), then saved,
exported for phones and measured side by side (``training.report``).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from mobilenet_zoo.detection.ssd import SSD
from mobilenet_zoo.detection.visualize import draw_detections
from mobilenet_zoo.export import TFLiteRunner, to_tflite
from mobilenet_zoo.hub.presets import get_preset
from mobilenet_zoo.training import report as reporting
from mobilenet_zoo.training.config import FINETUNE_SCHEDULES, FinetuneOptions, RunOptions
from mobilenet_zoo.training.detection import labelled_folder
from mobilenet_zoo.training.run import RunContext, fit
from mobilenet_zoo.training.schedule import TrainFlags, resolve

#: The side a detection preset is fine-tuned at unless ``image_size`` says (a larger preset,
#: the 512-pixel face SSD, is 2.6x slower per step at its own size on a CPU).
DEFAULT_DETECTOR_SIZE = 320
#: The phone file of each ``quantize`` (``model.tflite`` is always the float32 one).
QUANTIZED_FILES = {"dynamic": "model_dynamic.tflite", "float16": "model_float16.tflite",
                   "int8": "model_int8.tflite"}


@dataclass
class Finetuned:
    """What a fine-tune returns: the trained Keras model, the report (``report.json``'s
    content) and the run folder."""

    model: keras.Model
    report: dict[str, Any]
    out_dir: str

    def file(self, name: str) -> str:
        return os.path.join(self.out_dir, name)


def run_detector(options: FinetuneOptions, run_options: RunOptions, given: TrainFlags) -> Finetuned:
    """Fine-tunes an SSD on ``options.data_dir``; see the module docstring."""
    context = RunContext.start(run_options)
    choice = labelled_folder(options.data_dir, None if options.format == "auto" else options.format,
                              options.skip_bad_labels)
    if context.smoke:
        choice = dataclasses.replace(choice, kind="mock")
    print(choice.line, flush=True)
    context.set_seed()
    names = list(choice.train.class_names)
    plan = resolve(FINETUNE_SCHEDULES.of(choice.kind), given, choice.train.num_examples)
    size = options.image_size or min(DEFAULT_DETECTOR_SIZE, _preset_size(options.preset))
    with context.scope():
        model = SSD.from_preset(options.preset, num_classes=len(names), class_names=names,
                                image_size=size, resize_mode=options.resize_mode)
        model.backbone.freeze_until(None if plan.freeze_until == "none" else plan.freeze_until)
        model.compile(keras.optimizers.RMSprop(plan.learning_rate, rho=0.9, momentum=0.9, epsilon=1.0))
    print(f"model: SSD {size}x{size} ({options.resize_mode}) from {options.preset}, {len(names)} classes "
          f"({', '.join(names)}); backbone frozen to {plan.freeze_until}", flush=True)
    fitted = fit(context, model, choice, plan)
    max_batches = options.eval_batches or (1 if context.smoke else None)
    context.save_model(model)
    files = _export(context, model, choice, plan, options.quantize)
    scored = [reporting.score_detector("Keras (float32)", context.path("model.keras"),
                                       model.predict_on_batch, fitted.val, model, choice.val, max_batches)]
    for label, name in files:
        scored.append(reporting.score_detector(label, context.path(name), TFLiteRunner(context.path(name)),
                                               fitted.val, model, choice.val, max_batches))
    batch = np.asarray(next(iter(fitted.val))[0])[:8]
    dets = model.predict_on_batch(batch)
    draw_detections(batch, {k: np.asarray(v) for k, v in dets.items()}, names,
                    model.bounding_box_format, context.path(reporting.DETECTIONS))
    reporting.pr_curves(scored, names, context.path(reporting.PR_CURVES))
    phone = files[-1][1]
    summary = {"task": "detector", "out": context.out_dir, "data": choice.description,
               "preset": options.preset, "image_size": size, "resize_mode": options.resize_mode,
               "training": f"{plan.epochs} epoch{'s' * (plan.epochs != 1)} of batch {plan.batch_size}, learning rate "
                           f"{plan.learning_rate}, backbone frozen to {plan.freeze_until}, "
                           f"{fitted.train_seconds:.0f} s",
               "train_seconds": fitted.train_seconds, "final_loss": fitted.final_loss,
               "phone_file": phone, "args": context.flags}
    report = reporting.write_report(context.out_dir, summary, scored, names,
                                    reporting.mediapipe_snippet(phone, options.resize_mode))
    for s in scored:
        m = s.evaluation.metrics
        print(f"{s.name:<24} {s.file:<22} AP {100 * m['AP']:5.1f}  AP50 {100 * m['AP50']:5.1f}  "
              f"{s.latency_ms:6.1f} ms/image  {s.size_mb:5.1f} MB", flush=True)
    print(f"report: {context.path(reporting.REPORT_MD)}", flush=True)
    return Finetuned(model, report, context.out_dir)


def _preset_size(preset: str) -> int:
    meta = get_preset(preset)
    size = (meta.get("task_config") or {}).get("image_size") or meta.get("input_size") or 300
    return int(size[0] if isinstance(size, (list, tuple)) else size)


def _export(context: RunContext, model: SSD, choice: Any, plan: Any, quantize: str) -> list[tuple[str, str]]:
    """``model.tflite`` (float32) and the ``quantize`` file, each with MediaPipe metadata and
    the post-processing op the export CLI writes; int8 calibrated on training images
    through the model's own pipeline, with uint8 camera pixels in. Returns (label, file)."""
    common = {"postprocess": "detection_postprocess_fast"}  # the export CLI's choice for SSDs
    to_tflite(model, context.path("model.tflite"), **common)
    files = [("TFLite float32", "model.tflite")]
    if quantize == "none":
        return files
    extra: dict[str, Any] = {}
    if quantize == "int8":
        extra = {"representative_data": model.preprocessor.pipeline(choice.train, plan.batch_size),
                 "uint8_io": True}
    to_tflite(model, context.path(QUANTIZED_FILES[quantize]), quantize=quantize, **common, **extra)
    files.append((f"TFLite {quantize}" + (" (post-training)" if quantize == "int8" else ""),
                  QUANTIZED_FILES[quantize]))
    return files
