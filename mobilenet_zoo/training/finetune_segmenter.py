"""``python -m mobilenet_zoo.finetune segmenter DATA`` (issue 29): images + PNG masks to a
DeepLabV3 the phone runs.

The folder is read and every image / mask pair checked (``data.layouts.masks``: VOC
``SegmentationClass`` or ``images/`` + ``masks/``, 255 = ignore), a DeepLabV3 built on the
preset's backbone at output stride 16 (an ImageNet preset: a new ASPP and classifier, as
DeepLabV3 s.4 starts from ImageNet; a DeepLabV3 preset of the user's: kept whole, the class
layer renewed for another number of classes), trained with the recipes' loop
(``training.run.fit``: progress, ``--resume``, checkpoints), then saved, exported for phones and measured side by side: mean IoU and pixel
accuracy of ``model.keras`` and of each ``.tflite`` file through LiteRT
(``training.report.score_segmenter``), with predicted masks drawn on validation photos.
"""

from __future__ import annotations

import keras
import numpy as np

from mobilenet_zoo.data.layouts import LabelError
from mobilenet_zoo.data.layouts.readers import read_masks
from mobilenet_zoo.export import TFLiteRunner
from mobilenet_zoo.files import atomic_write
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
    begin_run,
    epochs_text,
    export_files,
    finish_run,
    preset_size,
    train_quantization_aware,
)
from mobilenet_zoo.training.run import DataChoice, fit
from mobilenet_zoo.training.schedule import TrainFlags

#: The side a segmenter is fine-tuned at unless ``image_size`` says: the preset's, at most 224
#: (measured on the sample masks, 2 CPU cores: an epoch of 240 photos 65-90 s at 224, 47-63 s
#: at 160, where the mean IoU came out 52.8 against 44.4; docs/finetune.md section 8).
DEFAULT_SEGMENTER_SIZE = 224


def run_segmenter(options: FinetuneOptions, run_options: RunOptions, given: TrainFlags) -> Finetuned:
    """Fine-tunes a DeepLabV3 on an images + masks folder; see the module docstring."""
    choice = _mask_folders(options.data_dir, options.skip_bad_labels)
    choice, context, names, plan = begin_run(options, run_options, given, choice,
                                             FINETUNE_SEGMENTER_SCHEDULES)
    size = options.image_size or min(DEFAULT_SEGMENTER_SIZE, preset_size(options.preset))
    with context.scope():
        model = _deeplab(options.preset, size, len(names))
        model.backbone.freeze_until(None if plan.freeze_until in (None, "none") else plan.freeze_until)
        model.compile(keras.optimizers.Adam(plan.learning_rate), segmentation_loss())
    print(f"model: DeepLabV3 {size}x{size} (output stride {model.backbone.output_stride}) from "
          f"{options.preset}, {len(names)} classes "
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
                      {"image_size": size, "output_stride": model.backbone.output_stride, "training": training,
                       "train_seconds": fitted.train_seconds, "final_loss": fitted.final_loss, **qat_facts},
                      {"overlays": reporting.OVERLAYS})


def _deeplab(preset: str, size: int, num_classes: int) -> DeepLabV3:
    """A DeepLabV3 for ``num_classes`` at ``size`` (``DeepLabV3.from_preset``): an ImageNet or
    backbone preset gives the backbone at output stride 16 and a new head; a DeepLabV3 preset
    loads whole at its own stride, its class layer renewed when the number of classes differs
    (kept when it is the same, as for detection presets)."""
    return DeepLabV3.from_preset(preset, input_shape=(size, size, 3), num_classes=num_classes,
                                 preprocessor=SegmentationPreprocessor(size, num_classes))


def _mask_folders(data_dir: str, skip_bad_labels: bool) -> DataChoice:
    """The user's images and masks, every pair checked before anything trains."""
    try:
        train = read_masks(data_dir, "train", skip_bad_labels=skip_bad_labels)
        val = read_masks(data_dir, "val", skip_bad_labels=skip_bad_labels)
    except LabelError as err:  # it lists every bad pair and says what to do
        raise SystemExit(f"error: {err}") from None
    except (ValueError, FileNotFoundError) as err:
        raise SystemExit(f"error: {data_dir}: {err} Nothing was run.") from None
    for split, source in (("training", train), ("validation", val)):
        if not source.num_examples:
            dropped = " (--skip-bad-labels left out every one)" if skip_bad_labels else ""
            raise SystemExit(f"error: {data_dir}: no {split} image with its mask{dropped}. Add image + "
                             "mask pairs to that split (images/<split>/ + masks/<split>/, or the "
                             "ImageSets/Segmentation list), or remove the val/ folders or val.txt to "
                             "set aside 10% by hashed file name. Nothing was run.")
    if len(train.class_names) < 2:
        raise SystemExit(f"error: {data_dir}: the masks hold one class ({train.class_names[0]}): a "
                         "segmenter needs background and at least one more. Mark your objects in the "
                         "masks (1, 2, ...) and name them in labels.txt. Nothing was run.")
    if len(val.class_names) > len(train.class_names):
        raise SystemExit(f"error: {data_dir}: the validation masks hold class {len(val.class_names) - 1}, "
                         f"the training masks only 0-{len(train.class_names) - 1}: name the classes in "
                         "labels.txt (one a line, background first). Nothing was run.")
    val.class_names = train.class_names
    for note in dict.fromkeys((*train.notes, *val.notes)):  # a note of both splits once
        print(f"data: {note}", flush=True)
    return DataChoice("full", f"image + mask folders {data_dir} ({train.num_examples} train, "
                      f"{val.num_examples} val images, classes {', '.join(train.class_names)})", train, val)
