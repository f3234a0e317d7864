"""What the detection recipes share: data flags and sources, evaluation, outputs.

``recipes/ssd_coco.py`` and ``recipes/faster_rcnn_coco.py`` differ in the model
and its optimizer only; choosing the data (TFDS coco/2017 or voc/2007 under
``--data-dir``, else the embedded digits-on-photos set, mock COCO for
``--smoke``) and writing the outputs (pycocotools metrics, ``model.keras``,
``detections.png``, ``model.tflite``, ``results.json`` with the paper's row) live here.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import numpy as np

from mobilenet_zoo import training
from mobilenet_zoo.data.tfds_utils import default_data_dir, tfds_prepared
from mobilenet_zoo.detection import data as ddata
from mobilenet_zoo.detection import embedded
from mobilenet_zoo.detection.coco_eval import evaluate_coco, format_table
from mobilenet_zoo.detection.visualize import draw_detections


def add_data_flags(p: argparse.ArgumentParser) -> None:
    d = p.add_argument_group("data")
    d.add_argument("--dataset", choices=["auto", "coco", "voc", "embedded"], default="auto",
                   help="auto: TFDS coco/2017 when prepared under --data-dir, else the embedded set")
    d.add_argument("--data-dir", default=None, help="TFDS data dir (default $TFDS_DATA_DIR or ~/tensorflow_datasets)")
    d.add_argument("--train-split", default=None, help="TFDS split (coco: train, voc: train+validation)")
    d.add_argument("--eval-split", default=None, help="TFDS split (coco: validation, voc: test)")
    d.add_argument("--embedded-train", type=int, default=600, help="images in the embedded train split")
    d.add_argument("--embedded-val", type=int, default=100, help="images in the embedded val split")


def add_eval_flags(p: argparse.ArgumentParser) -> None:
    e = p.add_argument_group("evaluation and export")
    e.add_argument("--eval-batches", type=int, default=None, help="evaluate on this many batches only")
    e.add_argument("--no-tflite", action="store_true", help="skip the TFLite export")
    e.add_argument("--quantize", choices=["none", "dynamic", "float16"], default="none")


def choose_data(args: argparse.Namespace):
    """(train source, eval source, first line saying which and why)."""
    data_dir = args.data_dir or default_data_dir()
    if args.smoke:
        import tensorflow_datasets as tfds

        with tfds.testing.mock_data(num_examples=8):
            train = ddata.tfds_coco("train", check=False)
            val = ddata.tfds_coco("validation", check=False)
        return train, val, "data: tfds.testing.mock_data coco/2017 (--smoke: random images and boxes)"
    want = args.dataset
    if want in ("auto", "coco") and tfds_prepared("coco/2017", data_dir):
        return (ddata.tfds_coco(args.train_split or "train", data_dir),
                ddata.tfds_coco(args.eval_split or "validation", data_dir),
                f"data: TFDS coco/2017 from {data_dir}")
    if want == "voc":
        return (ddata.tfds_voc(args.train_split or "train+validation", data_dir),
                ddata.tfds_voc(args.eval_split or "test", data_dir),
                f"data: TFDS voc/2007 from {data_dir}")
    if want == "coco":
        raise SystemExit(
            f"error: TFDS coco/2017 is not prepared under {data_dir}. Run `tfds build coco/2017 "
            f"--data_dir {data_dir}` on a machine with network access, or pass --data-dir."
        )
    root = embedded.build(num_train=args.embedded_train, num_val=args.embedded_val,
                          image_size=args.image_size)
    why = "--dataset embedded" if want == "embedded" else f"TFDS coco/2017 not found under {data_dir}"
    return (ddata.coco_json(root / "train" / "annotations.json"),
            ddata.coco_json(root / "val" / "annotations.json"),
            f"data: embedded digits-on-photos set at {root} ({why})")


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
