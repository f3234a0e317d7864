"""The shared detection recipe: data, training loop and outputs of ``recipes/ssd_coco.py``
and ``recipes/faster_rcnn_coco.py``, which differ in the model, its optimizer and
their ``Schedules`` only (``DetectionRecipe``).

Choosing the data (TFDS coco/2017 or voc/2007 under ``--data-dir``, or a labelled
folder there: COCO JSON, Pascal VOC or YOLO, ``data.layouts``, labels checked before
training; without ``--data-dir`` the embedded digits-on-photos
set when TFDS coco/2017 is not prepared, announced on the first line; mock COCO
for ``--smoke``) returns a ``DataChoice`` whose ``kind`` picks the schedule; the
outputs (pycocotools metrics, ``model.keras``, ``detections.png``,
``model.tflite``, ``results.json`` with the paper's row) are
``training.finish`` with ``CocoReport``.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np

from mobilenet_zoo import presets
from mobilenet_zoo.data import detection as ddata
from mobilenet_zoo.data import digits_on_photos
from mobilenet_zoo.data.layouts import LabelError, found_formats
from mobilenet_zoo.data.layouts.readers import read_detection
from mobilenet_zoo.data.tfds_utils import default_data_dir, tfds_prepared
from mobilenet_zoo.detection.coco_eval import evaluate_coco, format_table
from mobilenet_zoo.detection.visualize import draw_detections
from mobilenet_zoo.training import flags
from mobilenet_zoo.training.config import DetectionData, ExportOptions
from mobilenet_zoo.training.run import DataChoice, RunContext, finish, fit
from mobilenet_zoo.training.schedule import Plan, Schedules, TrainFlags, resolve

# Re-exported: the flags live in mobilenet_zoo.training.flags (no TensorFlow import).
add_data_flags = flags.add_detection_data_flags
add_eval_flags = flags.add_detection_eval_flags


# COCO-format folders ``--data-dir`` may hold, (train, eval) annotation files and image
# folders relative to it: the layout ``digits_on_photos.build`` writes, and COCO's own release
# (cocodataset.org/#download: annotations/instances_{train,val}2017.json, {train,val}2017/).
COCO_JSON_LAYOUTS = (
    (("train/annotations.json", "train/images"), ("val/annotations.json", "val/images")),
    (("annotations/instances_train2017.json", "train2017"), ("annotations/instances_val2017.json", "val2017")),
)


def find_coco_json(data_dir: str) -> tuple[tuple[str, str], tuple[str, str]] | None:
    """The first ``COCO_JSON_LAYOUTS`` entry whose annotation files are in ``data_dir``
    (absolute paths), or None."""
    for train, val in COCO_JSON_LAYOUTS:
        if all(os.path.isfile(os.path.join(data_dir, ann)) for ann, _ in (train, val)):
            return tuple((os.path.join(data_dir, ann), os.path.join(data_dir, img))
                         for ann, img in (train, val))
    return None


def _looked_for(data_dir: str, want: str) -> str:
    tfds = {"voc": ["TFDS voc/2007"], "coco": ["TFDS coco/2017"]}.get(want, ["TFDS coco/2017"])
    what = [f"{name} ({data_dir}/{name}/<version>/dataset_info.json)" for name in tfds]
    if want in ("auto", "coco"):
        what += [f"COCO-format annotations {data_dir}/{train[0]} and {data_dir}/{val[0]}"
                 for train, val in COCO_JSON_LAYOUTS]
    if want == "auto":
        what.append("a labelled folder: COCO JSON, Pascal VOC (Annotations/, JPEGImages/) or YOLO "
                    "(data.yaml, labels/); --format forces one")
    return "; ".join(what)


def choose_data(data: DetectionData, image_size: int | None = None, smoke: bool = False) -> DataChoice:
    """The data a detection recipe trains on, as a ``DataChoice`` (kind ``full``,
    ``embedded`` or ``mock``; its ``line`` says which and why).

    An explicit ``data.data_dir`` must hold a dataset the recipe reads (TFDS coco/2017 or
    voc/2007, or a COCO-format folder, ``COCO_JSON_LAYOUTS``); otherwise the error
    lists what was looked for. Without it, TFDS coco/2017 under the default TFDS
    folder is used when prepared, else the embedded set (rendered at ``image_size``;
    None: ``digits_on_photos.build``'s), and the line says so.
    """
    if smoke:
        import tensorflow_datasets as tfds

        with tfds.testing.mock_data(num_examples=8):
            train = ddata.tfds_coco("train", check=False)
            val = ddata.tfds_coco("validation", check=False)
        return DataChoice("mock", "tfds.testing.mock_data coco/2017 (--smoke: random images and boxes)",
                          train, val)
    want, given = data.dataset, data.data_dir is not None
    if want == "embedded":
        return _embedded(data, image_size, "--dataset embedded")
    data_dir = data.data_dir or default_data_dir()
    if given and not os.path.isdir(data_dir):
        raise SystemExit(f"error: --data-dir {data_dir} is not a folder. It takes a TFDS data dir "
                         "(coco/2017 or voc/2007 prepared) or a COCO-format folder "
                         f"({_looked_for(data_dir, want)}). Nothing was run.")
    if want in ("auto", "coco") and tfds_prepared("coco/2017", data_dir):
        return DataChoice("full", f"TFDS coco/2017 from {data_dir}",
                          ddata.tfds_coco(data.train_split or "train", data_dir),
                          ddata.tfds_coco(data.eval_split or "validation", data_dir))
    if want == "voc" and (not given or tfds_prepared("voc/2007", data_dir)):
        return DataChoice("full", f"TFDS voc/2007 from {data_dir}",
                          ddata.tfds_voc(data.train_split or "train+validation", data_dir),
                          ddata.tfds_voc(data.eval_split or "test", data_dir))
    if given and data.format != "auto":
        return labelled_folder(data_dir, data.format, data.skip_bad_labels)
    found = find_coco_json(data_dir) if want in ("auto", "coco") and given else None
    if found:
        (train_ann, train_img), (val_ann, val_img) = found
        try:
            train, val = ddata.coco_json(train_ann, train_img), ddata.coco_json(val_ann, val_img)
        except ValueError as err:
            raise SystemExit(f"error: --data-dir {data_dir}: {err} Nothing was run.") from err
        return DataChoice("full", f"COCO-format annotations {train_ann} (train) and {val_ann} (eval)",
                          train, val)
    if given and want == "auto" and found_formats(data_dir):
        return labelled_folder(data_dir, None, data.skip_bad_labels)
    if given or want == "coco":
        raise SystemExit(
            f"error: --data-dir {data_dir} holds no dataset this recipe reads (--dataset {want}). "
            f"Looked for: {_looked_for(data_dir, want)}. Prepare one there (`tfds build coco/2017 "
            f"--data_dir {data_dir}` on a machine with network access), point --data-dir at a COCO-"
            "format folder, or pass --dataset digits_on_photos. Nothing was run.")
    return _embedded(data, image_size,
                     f"no --data-dir given and TFDS coco/2017 is not prepared under {data_dir}")


def labelled_folder(data_dir: str, fmt: str | None, skip_bad_labels: bool) -> DataChoice:
    """A folder the user labelled (COCO JSON, Pascal VOC, YOLO: ``data.layouts``), its labels
    checked before anything trains; the classes in the data's order."""
    try:
        train = read_detection(data_dir, fmt, "train", skip_bad_labels=skip_bad_labels)
        val = read_detection(data_dir, train.format, "val", skip_bad_labels=skip_bad_labels,
                             require_every_class=False)
    except LabelError as err:
        raise SystemExit(f"error: --data-dir {data_dir}: {err}\nNothing was trained: fix the "
                         "labels, or pass --skip-bad-labels to drop them.") from None
    except (ValueError, FileNotFoundError) as err:  # a layout forced with --format that is not there
        raise SystemExit(f"error: --data-dir {data_dir}: {err} Nothing was run.") from None
    if list(train.class_names) != list(val.class_names):
        raise SystemExit(f"error: --data-dir {data_dir}: the train and val splits name other classes "
                         f"({list(train.class_names)} vs {list(val.class_names)}). Nothing was run.")
    for note in dict.fromkeys((*train.notes, *val.notes)):  # a note of both splits once
        print(f"data: {note}", flush=True)
    return DataChoice("full", f"{train.format.upper()} folder {data_dir} ({train.num_examples} train, "
                      f"{val.num_examples} val images, classes {', '.join(train.class_names)})",
                      train, val)


def _embedded(data: DetectionData, image_size: int | None, why: str) -> DataChoice:
    size = {} if image_size is None else {"image_size": image_size}
    root = digits_on_photos.build(num_train=data.embedded_train, num_val=data.embedded_val, **size)
    return DataChoice("embedded", f"embedded digits-on-photos set at {root} (fallback: {why})",
                      ddata.coco_json(root / "train" / "annotations.json"),
                      ddata.coco_json(root / "val" / "annotations.json"))


@dataclass
class CocoReport:
    """``training.finish``'s detection part: pycocotools metrics on the eval source,
    ``detections.png``, and the TFLite model's detection count on one image."""

    val_source: Any
    max_batches: int | None = None
    picture: str = "detections.png"

    def evaluate(self, model, val) -> dict[str, Any]:
        src = self.val_source
        metrics = evaluate_coco(model, val, src.category_ids, src.class_names, max_batches=self.max_batches)
        print(f"COCO metrics ({src.description}):\n{format_table(metrics)}", flush=True)
        return {"coco_metrics": metrics}

    def draw(self, model, batch, path: str) -> str:
        images = np.asarray(batch[0])
        dets = model.predict_on_batch(images)
        return draw_detections(images[:8], {k: np.asarray(v)[:8] for k, v in dets.items()},
                               self.val_source.class_names, model.bounding_box_format, path)

    def tflite_kwargs(self, model, export: ExportOptions) -> dict[str, Any]:
        return {"quantize": export.quantize}

    def check_tflite(self, model, lite, images, export: ExportOptions) -> tuple[dict[str, Any], str]:
        return {"num_detections_first_image": int(lite["num_detections"][0])}, ""


def builder_default(builder: Callable, name: str) -> Any:
    """The default of argument ``name`` of ``builder`` (where each default is stated)."""
    return inspect.signature(builder).parameters[name].default


@dataclass
class DetectionRecipe:
    """What one detection recipe adds to the shared one.

    ``builder`` (``ssd_mobilenet_v1``...) gets ``num_classes``, ``alpha``,
    ``image_size``, ``weights``, ``class_names``, the plan's ``model`` kwargs and
    ``model_kwargs`` (flags given; a ``None`` value is left to the builder);
    ``optimizer(plan)`` the compile optimizer; ``paper(plan)`` the paper's row;
    ``record`` ``{results.json key: dotted model attribute}`` to keep (e.g. a batch the builder chose).
    """

    schedules: Schedules
    builder: Callable[..., keras.Model]
    optimizer: Callable[[Plan], keras.optimizers.Optimizer]
    paper: Callable[[Plan], dict]
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    record: dict[str, str] = field(default_factory=dict)


def run(recipe: DetectionRecipe, run_options: flags.RunOptions, data: DetectionData, given: TrainFlags,
        alpha: float, weights: str, export: ExportOptions) -> dict[str, Any]:
    """A detection recipe from start to finish: strategy and output folder, data,
    model (built from ``weights``, frozen to the plan's level, compiled), training
    (``--resume``), then ``training.finish`` with ``CocoReport``. Returns the results."""
    context = RunContext.start(run_options)
    image_size = given.image_size or builder_default(recipe.builder, "image_size")
    given = dataclasses.replace(given, image_size=image_size)
    choice = choose_data(data, image_size, context.smoke)
    print(choice.line, flush=True)
    context.set_seed()
    plan = resolve(recipe.schedules.of(choice.kind), given, choice.train.num_examples,
                   pretrained=weights != "scratch")
    kwargs = {k: v for k, v in recipe.model_kwargs.items() if v is not None}
    with context.scope():
        model = recipe.builder(len(choice.train.class_names), alpha=alpha, image_size=image_size,
                               weights=presets.resolve_weights(weights), class_names=choice.train.class_names,
                               **{**plan.model, **kwargs})
        model.backbone.freeze_until(None if plan.freeze_until == "none" else plan.freeze_until)  # before compile
        model.compile(recipe.optimizer(plan))
    # The embedded set is small: decode it once (cache) instead of every epoch.
    fitted = fit(context, model, choice, plan, cache=choice.kind == "embedded")
    results = {"data": choice.description, "epochs": plan.epochs, "batch_size": plan.batch_size,
               "learning_rate": plan.learning_rate, "frozen_until": plan.freeze_until,
               **{key: functools.reduce(getattr, path.split("."), model)
                  for key, path in recipe.record.items()},
               "train_seconds": fitted.train_seconds, "final_loss": fitted.final_loss,
               "paper": recipe.paper(plan)}
    report = CocoReport(choice.val, export.eval_batches or (1 if context.smoke else None))
    return finish(context, model, fitted.val, report, results, export)
