"""Fine-tuning a preset on the user's labelled photos (issue 29; paper s.4, "fine-grained
recognition" and the detection experiments start from ImageNet or detection weights).

``run_detector`` is ``python -m mobilenet_zoo.finetune detector DATA``: the folder read and its
labels checked (COCO JSON, Pascal VOC or YOLO: ``data.layouts``), an SSD built from the preset
(a detection preset keeps its backbone, extra layers and box predictor and re-initialises the
class predictor for the data's classes: the TF OD API's ``fine_tune_checkpoint_type:
"detection"``, formerly ``from_detection_checkpoint: true``; an ImageNet preset initialises the
backbone), trained with the recipes' loop (progress, ``--resume``, checkpoints), then saved,
exported for phones and measured side by side (``training.report``).

``run_classifier`` is ``... classifier DATA``: class folders (``data.layouts.folders``), a
``MobileNetClassifier`` on the preset's backbone with a new head, trained in the two stages of
``training.transfer`` (the head with the backbone frozen, then the top blocks), the same files
and report (top-1 / top-5, accuracy per class, a confusion matrix).

The segmenter is ``training.finetune_segmenter``; what the three share is here: ``begin_run``
(smoke schedule, run context, seed, plan), ``export_files``, ``train_quantization_aware`` and
``finish_run`` (the report and the lines printed).
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from mobilenet_zoo import presets
from mobilenet_zoo.classification.classifier import MobileNetClassifier
from mobilenet_zoo.data.layouts import LabelError
from mobilenet_zoo.data.layouts.folders import split_folder
from mobilenet_zoo.data.layouts.readers import read_folders
from mobilenet_zoo.data.seeds import with_example_seeds
from mobilenet_zoo.detection.ssd import SSD
from mobilenet_zoo.detection.visualize import draw_detections
from mobilenet_zoo.export import TFLiteRunner, to_tflite
from mobilenet_zoo.hub.presets import get_preset
from mobilenet_zoo.qat import quantization_aware
from mobilenet_zoo.tensorflow_support import import_tensorflow
from mobilenet_zoo.training import report as reporting
from mobilenet_zoo.training import transfer
from mobilenet_zoo.training.config import (
    FINETUNE_CLASSIFIER_SCHEDULES,
    FINETUNE_SCHEDULES,
    QAT_EPOCHS,
    QAT_LEARNING_RATE_FACTOR,
    FinetuneOptions,
    RunOptions,
)
from mobilenet_zoo.training.detection import labelled_folder
from mobilenet_zoo.training.run import DataChoice, RunContext, fit
from mobilenet_zoo.training.schedule import Schedules, TrainFlags, resolve

#: The side a detection preset is fine-tuned at unless ``image_size`` says (a larger preset,
#: the 512-pixel face SSD, is 2.6x slower per step at its own size on a CPU).
DEFAULT_DETECTOR_SIZE = 320
#: The phone file of each ``quantize`` (``model.tflite`` is always the float32 one).
#: Photos held in a classifier's shuffle buffer (resized): tf.data's bounded shuffle.
SHUFFLE_BUFFER = 1024
#: The top blocks a classifier fine-tune trains in its second stage (the Keras transfer-learning
#: guide's recipe, ``training.transfer``).
UNFREEZE_BLOCKS = 2
#: A detector's post-processing in its files: the op the export CLI writes (class-agnostic NMS,
#: what MediaPipe reads).
DETECTOR_POSTPROCESS = {"postprocess": "detection_postprocess_fast"}
QUANTIZED_FILES = {"dynamic": "model_dynamic.tflite", "float16": "model_float16.tflite",
                   "int8": "model_int8.tflite"}
#: The int8 file of the quantization-aware copy (``--qat``).
QAT_FILE = "model_qat_int8.tflite"
#: What a fine-tune writes besides the run state: ``--overwrite`` removes them first.
OUTPUT_FILES = ("model.keras", "model.tflite", *QUANTIZED_FILES.values(), QAT_FILE, reporting.REPORT_JSON,
                reporting.REPORT_MD, reporting.PR_CURVES, reporting.DETECTIONS, reporting.CONFUSION,
                reporting.OVERLAYS)


@dataclass
class Finetuned:
    """What a fine-tune returns: the trained Keras model, the report (``report.json``'s
    content) and the run folder."""

    model: keras.Model
    report: dict[str, Any]
    out_dir: str

    def file(self, name: str) -> str:
        """The path of ``name`` in the run folder (``run.file("model_int8.tflite")``)."""
        return os.path.join(self.out_dir, name)


def run_detector(options: FinetuneOptions, run_options: RunOptions, given: TrainFlags) -> Finetuned:
    """Fine-tunes an SSD on ``options.data_dir``; see the module docstring."""
    choice = labelled_folder(options.data_dir, None if options.format == "auto" else options.format,
                             options.skip_bad_labels)
    choice, context, names, plan = begin_run(options, run_options, given, choice, FINETUNE_SCHEDULES)
    size = options.image_size or min(DEFAULT_DETECTOR_SIZE, preset_size(options.preset))
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
    qat_facts = {}
    if options.qat:
        train = model.preprocessor.pipeline(choice.train, plan.batch_size, training=True, seed=context.seed)
        optimizer = keras.optimizers.RMSprop(plan.learning_rate * QAT_LEARNING_RATE_FACTOR, rho=0.9,
                                             momentum=0.9, epsilon=1.0)
        qat_facts = train_quantization_aware(context, options, "detector", model, train, optimizer, None,
                                             {**DETECTOR_POSTPROCESS, "metadata": {"labels": names}}, files)
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
    training = (f"{epochs_text(plan.epochs)} of batch {plan.batch_size}, learning "
                f"rate {plan.learning_rate}, backbone frozen to {plan.freeze_until}, "
                f"{fitted.train_seconds:.0f} s")
    return finish_run(context, options, "detector", model, choice, names, scored, files,
                      {"image_size": size, "resize_mode": options.resize_mode, "training": training,
                       "train_seconds": fitted.train_seconds, "final_loss": fitted.final_loss, **qat_facts},
                      {"pr_curves": reporting.PR_CURVES, "detections": reporting.DETECTIONS})


def run_classifier(options: FinetuneOptions, run_options: RunOptions, given: TrainFlags) -> Finetuned:
    """Fine-tunes a ``MobileNetClassifier`` on class folders; see the module docstring."""
    choice = _class_folders(options.data_dir, options.skip_bad_labels)
    choice, context, names, plan = begin_run(options, run_options, given, choice,
                                             FINETUNE_CLASSIFIER_SCHEDULES)
    size = options.image_size or preset_size(options.preset)
    train = _class_batches(choice.train, size, plan.batch_size, True, context.seed)
    val = _class_batches(choice.val, size, plan.eval_batch, False, context.seed)
    if context.smoke:
        train, val = train.take(2), val.take(1)
    with context.scope():
        model = MobileNetClassifier.from_preset(options.preset, input_shape=(size, size, 3),
                                                num_classes=len(names), include_preprocessing=True,
                                                dropout=0.2)
    head_epochs = max(1, plan.epochs // 2)
    print(f"model: MobileNetClassifier {size}x{size} from {options.preset}, {len(names)} classes "
          f"({', '.join(names)}); {epochs_text(head_epochs)} of the head, then "
          f"{epochs_text(plan.epochs - head_epochs)} with the top {UNFREEZE_BLOCKS} blocks", flush=True)
    start = time.time()
    transfer.fine_tune(model, train, val, head_epochs=head_epochs,
                       fine_tune_epochs=plan.epochs - head_epochs, unfreeze_blocks=UNFREEZE_BLOCKS,
                       learning_rate=plan.learning_rate, fine_tune_learning_rate=plan.learning_rate / 10,
                       callbacks=lambda stage: context.callbacks(subdir=stage), verbose=context.verbose)
    seconds = round(time.time() - start, 1)
    context.save_model(model)
    files = export_files(context, model, train, options.quantize, {"metadata": {"labels": names}})
    qat_facts = {}
    if options.qat:
        optimizer = keras.optimizers.Adam(plan.learning_rate * QAT_LEARNING_RATE_FACTOR)
        qat_facts = train_quantization_aware(context, options, "classifier", model, train, optimizer,
                                             keras.losses.SparseCategoricalCrossentropy(),
                                             {"metadata": {"labels": names}}, files)
    max_batches = options.eval_batches
    scored = [reporting.score_classifier("Keras (float32)", context.path("model.keras"),
                                         model.predict_on_batch, val, names, max_batches)]
    scored += [reporting.score_classifier(label, context.path(name), TFLiteRunner(context.path(name)),
                                          val, names, max_batches) for label, name in files]
    reporting.confusion_matrix(scored[0].confusion, names, "Keras model, validation set",
                               context.path(reporting.CONFUSION))
    training = (f"{epochs_text(head_epochs)} of the head at learning rate {plan.learning_rate}, then "
                f"{epochs_text(plan.epochs - head_epochs)} with the top {UNFREEZE_BLOCKS} blocks at "
                f"{plan.learning_rate / 10:g}, batch {plan.batch_size}, {seconds:.0f} s")
    return finish_run(context, options, "classifier", model, choice, names, scored, files,
                      {"image_size": size, "training": training, "train_seconds": seconds, **qat_facts},
                      {"confusion": reporting.CONFUSION})


def finish_run(context: RunContext, options: FinetuneOptions, task: str, model: keras.Model, choice: Any,
               names: list[str], scored: list, files: list[tuple[str, str]], facts: dict[str, Any],
               pictures: dict[str, str]) -> Finetuned:
    """``report.json`` / ``report.md`` and a line per file; the ``Finetuned``."""
    phone = files[-1][1]
    summary = {"task": task, "out": context.out_dir, "data": choice.description,
               "preset": options.preset, **facts, "phone_file": phone, "args": context.flags}
    snippet = reporting.mediapipe_snippet(phone, options.resize_mode, task)
    report = reporting.write_report(context.out_dir, summary, scored, names, snippet, pictures)
    for s in scored:
        numbers = "  ".join(f"{k} {100 * v:5.1f}" for k, v in s.metrics.items()
                            if k in ("AP", "AP50", "VOC_AP50", "top1", "top5", "mIoU", "pixel_accuracy"))
        print(f"{s.name:<28} {s.file:<22} {numbers}  {s.latency_ms:6.1f} ms/image  {s.size_mb:5.1f} MB",
              flush=True)
    print(f"report: {context.path(reporting.REPORT_MD)}", flush=True)
    return Finetuned(model, report, context.out_dir)


def train_quantization_aware(context: RunContext, options: FinetuneOptions, task: str, model: keras.Model,
                             train: Any, optimizer: Any, loss: Any, common: dict[str, Any],
                             files: list[tuple[str, str]]) -> dict[str, Any]:
    """``--qat``: a quantization-aware copy of the trained ``model`` (``mobilenet_zoo.qat``: its
    ranges start from the training photos), trained a few epochs at a hundredth of the learning
    rate, and its int8 file written from the learned ranges (no calibration data), uint8 camera
    pixels in. Appends the file to ``files``; returns the report's facts about it."""
    epochs = options.qat_epochs or QAT_EPOCHS[task]
    if context.smoke:
        train, epochs = train.take(2), 1
    rate = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
    print(f"quantization-aware training: {epochs_text(epochs)} at learning rate {rate:g}, BatchNorm "
          "folded, weights and activations fake-quantised as TFLite's int8 kernels", flush=True)
    start = time.time()
    with context.scope():
        qat_model = quantization_aware(model, train)
        qat_model.compile(optimizer, loss=loss)
    qat_model.fit(train, epochs=epochs, verbose=context.verbose)
    seconds = round(time.time() - start, 1)
    to_tflite(qat_model, context.path(QAT_FILE), quantize="int8", uint8_io=True, **common)
    files.append(("TFLite int8 (QAT)", QAT_FILE))
    return {"qat": {"epochs": epochs, "learning_rate": rate, "train_seconds": seconds}}


def _class_folders(data_dir: str, skip_bad_labels: bool) -> DataChoice:
    """Class folders the user made, checked before anything trains."""
    val_dir = split_folder(Path(data_dir), "val")
    if val_dir is not None and not any(f.is_file() for f in val_dir.rglob("*")):
        raise SystemExit(f"error: {val_dir} holds no images: add some to each class, or remove "
                         "val/ to set aside 10% of the training photos by hashed file name. "
                         "Nothing was run.")
    try:
        train = read_folders(data_dir, "train", skip_bad_labels=skip_bad_labels)
        val = read_folders(data_dir, "val", skip_bad_labels=skip_bad_labels)
    except LabelError as err:
        raise SystemExit(f"error: {data_dir}: {err}\nNothing was trained: fix the folders, or pass "
                         "--skip-bad-labels to leave the bad images out.") from None
    except (ValueError, FileNotFoundError) as err:
        raise SystemExit(f"error: {data_dir}: {err} Nothing was run.") from None
    for note in dict.fromkeys((*train.notes, *val.notes)):  # a note of both splits once
        print(f"data: {note}", flush=True)
    return DataChoice("full", f"class folders {data_dir} ({train.num_examples} train, {val.num_examples} "
                      f"val images, classes {', '.join(train.class_names)})", train, val)


def _class_batches(source: Any, size: int, batch_size: int, training: bool, seed: int) -> Any:
    """``(images, labels)`` batches: each photo stretched to ``size`` (as MediaPipe's
    ImageClassifier feeds the file), shuffled and flipped when ``training`` (seeded per example)."""
    tf = import_tensorflow("the classifier's tf.data pipeline")
    # Resized before the shuffle buffer, which is bounded: phone photos at full size would
    # fill the memory (the second resize, in stretch_and_flip, is then the identity).
    ds = source.dataset.map(lambda image, label: (tf.image.resize(image, (size, size)), label),
                            num_parallel_calls=tf.data.AUTOTUNE)
    if training:
        ds = ds.shuffle(min(max(1, source.num_examples), SHUFFLE_BUFFER), seed=seed,
                        reshuffle_each_iteration=True)
    ds = with_example_seeds(ds, seed)
    return ds.map(transfer.stretch_and_flip(size, training), num_parallel_calls=tf.data.AUTOTUNE).batch(
        batch_size).prefetch(tf.data.AUTOTUNE)


def begin_run(options: FinetuneOptions, run_options: RunOptions, given: TrainFlags, choice: DataChoice,
              schedules: Schedules) -> tuple[DataChoice, RunContext, list[str], Any]:
    """Every task's start, once its data is read and checked: ``--smoke`` (the ``mock``
    schedule), the run context (``start_run``), the seed, the data's class names and the
    training plan (``schedules`` with the given flags, the batch at most the photos)."""
    if run_options.smoke:
        choice = dataclasses.replace(choice, kind="mock")
    context = start_run(run_options, options, choice)
    context.set_seed()
    plan = fit_batch(resolve(schedules.of(choice.kind), given, choice.train.num_examples),
                     choice.train.num_examples)
    return choice, context, list(choice.train.class_names), plan


def start_run(run_options: RunOptions, options: FinetuneOptions, choice: DataChoice) -> RunContext:
    """The run context, once the data has been read and checked and the preset is installed:
    only then is ``--out`` claimed (``--overwrite`` clears the earlier run's state and the
    files a fine-tune writes, so none of the old run's files is left beside the new ones)."""
    presets.installed_preset(options.preset)  # a remote preset: downloaded now, or its error
    context = RunContext.start(run_options)
    if run_options.overwrite:
        for name in OUTPUT_FILES:
            if os.path.isfile(context.path(name)):
                os.remove(context.path(name))
    print(choice.line, flush=True)
    return context


def fit_batch(plan: Any, num_examples: int | None) -> Any:
    """A batch larger than the training photos would train nothing (the detector's training
    batches drop the remainder): it becomes their number, and the run says so."""
    if num_examples and plan.batch_size > num_examples:
        print(f"data: batch {plan.batch_size} is more than the {num_examples} training photos: "
              f"batch {num_examples} (--batch-size)", flush=True)
        steps = plan.steps_per_epoch and max(1, plan.steps_per_epoch * plan.batch_size // num_examples)
        return dataclasses.replace(plan, batch_size=num_examples, steps_per_epoch=steps)
    return plan


def epochs_text(n: int) -> str:
    return f"{n} epoch{'s' * (n != 1)}"


def preset_size(preset: str) -> int:
    meta = get_preset(preset)
    size = (meta.get("task_config") or {}).get("image_size") or meta.get("input_size") or 300
    return int(size[0] if isinstance(size, (list, tuple)) else size)


def _export(context: RunContext, model: SSD, choice: Any, plan: Any, quantize: str) -> list[tuple[str, str]]:
    """A detector's files: the post-processing op the export CLI writes (class-agnostic NMS,
    what MediaPipe reads); int8 calibrated on training images through its own pipeline."""
    return export_files(context, model, model.preprocessor.pipeline(choice.train, plan.batch_size),
                        quantize, DETECTOR_POSTPROCESS)


def export_files(context: RunContext, model: keras.Model, calibration: Any, quantize: str,
                 common: dict[str, Any]) -> list[tuple[str, str]]:
    """``model.tflite`` (float32) and the ``quantize`` file, each with MediaPipe metadata;
    ``"int8"``: calibrated on ``calibration`` batches, uint8 camera pixels in. Returns
    (label, file) of each."""
    to_tflite(model, context.path("model.tflite"), **common)
    files = [("TFLite float32", "model.tflite")]
    if quantize == "none":
        return files
    extra: dict[str, Any] = {}
    if quantize == "int8":
        extra = {"representative_data": calibration, "uint8_io": True}
    to_tflite(model, context.path(QUANTIZED_FILES[quantize]), quantize=quantize, **common, **extra)
    files.append((f"TFLite {quantize}" + (" (post-training)" if quantize == "int8" else ""),
                  QUANTIZED_FILES[quantize]))
    return files
