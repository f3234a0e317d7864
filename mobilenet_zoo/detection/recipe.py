"""What the detection recipes share: data flags and sources, evaluation, outputs.

``recipes/ssd_coco.py`` and ``recipes/faster_rcnn_coco.py`` differ in the model
and its optimizer only; choosing the data (TFDS coco/2017 or voc/2007 under
``--data-dir``, or a COCO-format folder there; without ``--data-dir`` the embedded
digits-on-photos set when TFDS coco/2017 is not prepared, announced on the first
line; mock COCO for ``--smoke``) and writing the outputs (pycocotools metrics, ``model.keras``,
``detections.png``, ``model.tflite``, ``results.json`` with the paper's row) live here.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import numpy as np

from mobilenet_zoo import flags, training
from mobilenet_zoo.data.tfds_utils import default_data_dir, tfds_prepared
from mobilenet_zoo.detection import data as ddata
from mobilenet_zoo.detection import embedded
from mobilenet_zoo.detection.coco_eval import evaluate_coco, format_table
from mobilenet_zoo.detection.visualize import draw_detections

# Re-exported: the flags live in mobilenet_zoo.flags (no TensorFlow import).
add_data_flags = flags.add_detection_data_flags
add_eval_flags = flags.add_detection_eval_flags


# COCO-format folders ``--data-dir`` may hold, (train, eval) annotation files and image
# folders relative to it: the layout ``embedded.build`` writes, and COCO's own release
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
    return "; ".join(what)


def choose_data(args: argparse.Namespace):
    """(train source, eval source, first line saying which and why).

    An explicit ``--data-dir`` must hold a dataset the recipe reads (TFDS coco/2017 or
    voc/2007, or a COCO-format folder, ``COCO_JSON_LAYOUTS``); otherwise the error
    lists what was looked for. Without ``--data-dir``, TFDS coco/2017 under the
    default TFDS folder is used when prepared, else the embedded set, and the first
    line says so.
    """
    if args.smoke:
        import tensorflow_datasets as tfds

        with tfds.testing.mock_data(num_examples=8):
            train = ddata.tfds_coco("train", check=False)
            val = ddata.tfds_coco("validation", check=False)
        return train, val, "data: tfds.testing.mock_data coco/2017 (--smoke: random images and boxes)"
    want, given = args.dataset, args.data_dir is not None
    if want == "embedded":
        return _embedded(args, "--dataset embedded")
    data_dir = args.data_dir or default_data_dir()
    if given and not os.path.isdir(data_dir):
        raise SystemExit(f"error: --data-dir {data_dir} is not a folder. It takes a TFDS data dir "
                         "(coco/2017 or voc/2007 prepared) or a COCO-format folder "
                         f"({_looked_for(data_dir, want)}). Nothing was run.")
    if want in ("auto", "coco") and tfds_prepared("coco/2017", data_dir):
        return (ddata.tfds_coco(args.train_split or "train", data_dir),
                ddata.tfds_coco(args.eval_split or "validation", data_dir),
                f"data: TFDS coco/2017 from {data_dir}")
    if want == "voc" and (not given or tfds_prepared("voc/2007", data_dir)):
        return (ddata.tfds_voc(args.train_split or "train+validation", data_dir),
                ddata.tfds_voc(args.eval_split or "test", data_dir),
                f"data: TFDS voc/2007 from {data_dir}")
    found = find_coco_json(data_dir) if want in ("auto", "coco") and given else None
    if found:
        (train_ann, train_img), (val_ann, val_img) = found
        try:
            train, val = ddata.coco_json(train_ann, train_img), ddata.coco_json(val_ann, val_img)
        except ValueError as err:
            raise SystemExit(f"error: --data-dir {data_dir}: {err} Nothing was run.") from err
        return train, val, f"data: COCO-format annotations {train_ann} (train) and {val_ann} (eval)"
    if given or want == "coco":
        raise SystemExit(
            f"error: --data-dir {data_dir} holds no dataset this recipe reads (--dataset {want}). "
            f"Looked for: {_looked_for(data_dir, want)}. Prepare one there (`tfds build coco/2017 "
            f"--data_dir {data_dir}` on a machine with network access), point --data-dir at a COCO-"
            "format folder, or pass --dataset embedded. Nothing was run.")
    return _embedded(args, f"no --data-dir given and TFDS coco/2017 is not prepared under {data_dir}")


def _embedded(args: argparse.Namespace, why: str):
    root = embedded.build(num_train=args.embedded_train, num_val=args.embedded_val,
                          image_size=args.image_size)
    return (ddata.coco_json(root / "train" / "annotations.json"),
            ddata.coco_json(root / "val" / "annotations.json"),
            f"data: embedded digits-on-photos set at {root} (fallback: {why})")


def finish(model, args: argparse.Namespace, val_src, val_ds, results: dict[str, Any]) -> dict[str, Any]:
    """Evaluates (pycocotools), saves model.keras, detections.png and model.tflite,
    and writes results.json (``results`` plus the measurements)."""
    from mobilenet_zoo.export import TFLiteRunner, to_tflite

    metrics = evaluate_coco(model, val_ds, val_src.category_ids, val_src.class_names,
                            max_batches=args.eval_batches or (1 if args.smoke else None))
    print(f"COCO metrics ({val_src.description}):\n{format_table(metrics)}", flush=True)
    training.save_model(model, os.path.join(args.out, "model.keras"))
    images, _ = next(iter(val_ds))
    dets = model.predict_on_batch(images)
    png = draw_detections(np.asarray(images)[:8], {k: np.asarray(v)[:8] for k, v in dets.items()},
                          val_src.class_names, model.bounding_box_format,
                          os.path.join(args.out, "detections.png"))
    results = dict(results, coco_metrics=metrics, detections_png=png, args=vars(args))
    if not args.no_tflite:
        quantize = None if args.quantize == "none" else args.quantize
        path = os.path.join(args.out, "model.tflite")
        to_tflite(model, path, quantize=quantize)
        lite = TFLiteRunner(path)(np.asarray(images)[:1])
        results["tflite"] = {"path": path, "num_detections_first_image": int(lite["num_detections"][0])}
        print(f"TFLite: {path} ({os.path.getsize(path) / 1e6:.1f} MB)")
    print(f"results: {training.write_results(args.out, results)}")
    return results
