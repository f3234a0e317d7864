"""``python -m mobilenet_zoo.finetune segmenter DATA`` (issue 29): images + PNG masks to a
DeepLabV3 the phone runs.

The folder is read and every image / mask pair checked (``data.layouts.masks``: VOC
``SegmentationClass`` or ``images/`` + ``masks/``, 255 = ignore), a DeepLabV3 built on the
preset's backbone at output stride 16 (an ImageNet preset: a new ASPP and classifier, as
DeepLabV3 s.4 starts from ImageNet; a DeepLabV3 preset of the user's: kept, the class layer
renewed), trained with the recipes' loop (``training.run.fit``: progress, ``--resume``,
checkpoints), then saved, exported for phones and measured side by side: mean IoU and pixel
accuracy of ``model.keras`` and of each ``.tflite`` file through LiteRT
(``training.report.score_segmenter``), with predicted masks drawn on validation photos.
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np

from mobilenet_zoo.backbone import MobileNetBackbone
from mobilenet_zoo.data.layouts import LabelError
from mobilenet_zoo.data.layouts.readers import read_masks
from mobilenet_zoo.export import TFLiteRunner
from mobilenet_zoo.files import atomic_write
from mobilenet_zoo.hub.presets import check_preset_fits, get_preset
from mobilenet_zoo.segmentation import DeepLabV3, SegmentationPreprocessor, segmentation_loss
from mobilenet_zoo.segmentation.visualize import save_overlays
from mobilenet_zoo.training import report as reporting
from mobilenet_zoo.training.config import (
    FINETUNE_SEGMENTER_SCHEDULES,
    QAT_LEARNING_RATE_FACTOR,
    FinetuneOptions,
    RunOptions,
)
from mobilenet_zoo.training.finetune import (
    Finetuned,
    epochs_text,
    export_files,
    finish_run,
    fit_batch,
    preset_size,
    start_run,
    train_quantization_aware,
)
from mobilenet_zoo.training.run import DataChoice, fit
from mobilenet_zoo.training.schedule import TrainFlags, resolve

#: The side a segmenter is fine-tuned at unless ``image_size`` says: the ImageNet presets' own
#: at most (a DeepLabV3 at output stride 16 costs ~4x a classifier's step).
DEFAULT_SEGMENTER_SIZE = 224


def run_segmenter(options: FinetuneOptions, run_options: RunOptions, given: TrainFlags) -> Finetuned:
    """Fine-tunes a DeepLabV3 on an images + masks folder; see the module docstring."""
    choice = _mask_folders(options.data_dir, options.skip_bad_labels)
    if run_options.smoke:
        choice = dataclasses.replace(choice, kind="mock")
    context = start_run(run_options, options, choice)
    context.set_seed()
    names = list(choice.train.class_names)
    plan = fit_batch(resolve(FINETUNE_SEGMENTER_SCHEDULES.of(choice.kind), given, choice.train.num_examples),
                     choice.train.num_examples)
    size = options.image_size or min(DEFAULT_SEGMENTER_SIZE, preset_size(options.preset))
    with context.scope():
        model = _deeplab(options.preset, size, len(names))
        model.backbone.freeze_until(None if plan.freeze_until in (None, "none") else plan.freeze_until)
        model.compile(keras.optimizers.Adam(plan.learning_rate), segmentation_loss())
    print(f"model: DeepLabV3 {size}x{size} (output stride 16) from {options.preset}, {len(names)} classes "
          f"({', '.join(names)}); backbone frozen to {plan.freeze_until or 'none'}", flush=True)
    fitted = fit(context, model, choice, plan)
    context.save_model(model)
    train = model.preprocessor.pipeline(choice.train, plan.batch_size, training=True, seed=context.seed)
    common = {"metadata": {"labels": names}}
    files = export_files(context, model, train, options.quantize, common)
    qat_facts = {}
    if options.qat:
        optimizer = keras.optimizers.Adam(plan.learning_rate * QAT_LEARNING_RATE_FACTOR)
        qat_facts = train_quantization_aware(context, options, "segmenter", model, train, optimizer,
                                             segmentation_loss(), common, files)
    max_batches = options.eval_batches or (1 if context.smoke else None)
    scored = [reporting.score_segmenter("Keras (float32)", context.path("model.keras"),
                                        model.predict_on_batch, fitted.val, names, max_batches)]
    scored += [reporting.score_segmenter(label, context.path(name), TFLiteRunner(context.path(name)),
                                         fitted.val, names, max_batches) for label, name in files]
    images, masks = (np.asarray(t) for t in next(iter(fitted.val)))
    predicted = np.argmax(model.predict_on_batch(images[:8]), axis=-1)
    atomic_write(context.path(reporting.OVERLAYS),
                 lambda tmp: save_overlays(images[:8], predicted, tmp, masks[:8]))
    training = (f"{epochs_text(plan.epochs)} of batch {plan.batch_size}, Adam at learning rate "
                f"{plan.learning_rate}, backbone frozen to {plan.freeze_until or 'none'}, "
                f"{fitted.train_seconds:.0f} s")
    return finish_run(context, options, "segmenter", model, choice, names, scored, files,
                      {"image_size": size, "output_stride": 16, "training": training,
                       "train_seconds": fitted.train_seconds, "final_loss": fitted.final_loss, **qat_facts},
                      {"overlays": reporting.OVERLAYS})


def _deeplab(preset: str, size: int, num_classes: int) -> DeepLabV3:
    """A DeepLabV3 for ``num_classes`` at ``size``: the preset's backbone (output stride 16)
    with a new head, or a DeepLabV3 preset whole but its class layer."""
    preprocessor = SegmentationPreprocessor(size, num_classes)
    if check_preset_fits(get_preset(preset), DeepLabV3) == "whole":
        return DeepLabV3.from_preset(preset, input_shape=(size, size, 3), num_classes=num_classes,
                                     preprocessor=preprocessor)
    backbone = MobileNetBackbone.from_preset(preset, (size, size, 3), **DeepLabV3.backbone_defaults)
    return DeepLabV3(backbone, num_classes, preprocessor=preprocessor)


def _mask_folders(data_dir: str, skip_bad_labels: bool) -> DataChoice:
    """The user's images and masks, every pair checked before anything trains."""
    try:
        train = read_masks(data_dir, "train", skip_bad_labels=skip_bad_labels)
        val = read_masks(data_dir, "val", skip_bad_labels=skip_bad_labels)
    except LabelError as err:
        raise SystemExit(f"error: {err}\nNothing was trained: fix the masks, or pass --skip-bad-labels "
                         "to leave those images out.") from None
    except (ValueError, FileNotFoundError) as err:
        raise SystemExit(f"error: {data_dir}: {err} Nothing was run.") from None
    if not train.num_examples or not val.num_examples:
        empty = "training" if not train.num_examples else "validation"
        raise SystemExit(f"error: {data_dir}: no {empty} image with its mask. Nothing was run.")
    if len(val.class_names) > len(train.class_names):
        raise SystemExit(f"error: {data_dir}: the validation masks hold class {len(val.class_names) - 1}, "
                         f"the training masks only 0-{len(train.class_names) - 1}: name the classes in "
                         "labels.txt (one a line, background first). Nothing was run.")
    val.class_names = train.class_names
    for note in (*train.notes, *val.notes):
        print(f"data: {note}", flush=True)
    return DataChoice("full", f"image + mask folders {data_dir} ({train.num_examples} train, "
                      f"{val.num_examples} val images, classes {', '.join(train.class_names)})", train, val)
