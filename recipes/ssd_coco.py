"""SSD-MobileNet on COCO (paper Table 13), with the TF Object Detection API's setup.

    python recipes/ssd_coco.py                                   # COCO if on disk, else embedded
    python recipes/ssd_coco.py --data-dir ~/tensorflow_datasets  # TFDS coco/2017
    python recipes/ssd_coco.py --dataset voc --data-dir DIR      # TFDS voc/2007
    python recipes/ssd_coco.py --smoke                           # mock COCO, a few steps

Trains with model.fit (progress bar, TensorBoard, a checkpoint per epoch,
--resume), evaluates with pycocotools, saves model.keras and model.tflite (with
decoding and NMS) and a PNG of detections on validation images in --out.
"""

from __future__ import annotations

# isort: off
import mobilenet_zoo  # noqa: F401  first: quiets TensorFlow's C++ start-up lines
# isort: on
import argparse
import os
import time

import keras
import numpy as np

from mobilenet_zoo import presets, training
from mobilenet_zoo.data.tfds_utils import default_data_dir, tfds_prepared
from mobilenet_zoo.detection import (
    FocalLoss,
    SSDLoss,
    embedded,
    evaluate_coco,
    ssd_mobilenet_v1,
)
from mobilenet_zoo.detection import data as ddata
from mobilenet_zoo.detection.coco_eval import format_table
from mobilenet_zoo.detection.visualize import draw_detections
from mobilenet_zoo.export import TFLiteRunner, to_tflite
from mobilenet_zoo.paper import TABLE_13

PAPER_TABLE_13 = {"SSD 300 MobileNet": TABLE_13["SSD 300 MobileNet"]}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    d = p.add_argument_group("data")
    d.add_argument("--dataset", choices=["auto", "coco", "voc", "embedded"], default="auto",
                   help="auto: TFDS coco/2017 when prepared under --data-dir, else the embedded set")
    d.add_argument("--data-dir", default=None, help="TFDS data dir (default $TFDS_DATA_DIR or ~/tensorflow_datasets)")
    d.add_argument("--train-split", default=None, help="TFDS split (coco: train, voc: train+validation)")
    d.add_argument("--eval-split", default=None, help="TFDS split (coco: validation, voc: test)")
    d.add_argument("--embedded-train", type=int, default=600, help="images in the embedded train split")
    d.add_argument("--embedded-val", type=int, default=100, help="images in the embedded val split")
    m = p.add_argument_group("model (TF OD API ssd_mobilenet_v1_coco defaults)")
    m.add_argument("--loss", choices=["hard_mining", "focal"], default="hard_mining")
    m.add_argument("--class-prior", type=float, default=0.01,
                   help="initial class probability (RetinaNet init; 0 = zero bias as TF OD API)")
    o = p.add_argument_group("optimizer (config: RMSProp 0.004, momentum 0.9, decay 0.9, eps 1.0)")
    o.add_argument("--batch-size", type=int, default=24, help="global batch size")
    o.add_argument("--lr", type=float, default=0.004, help="initial learning rate")
    o.add_argument("--momentum", type=float, default=0.9)
    o.add_argument("--rms-decay", type=float, default=0.9, help="RMSProp decay (rho)")
    o.add_argument("--rms-epsilon", type=float, default=1.0)
    o.add_argument("--lr-decay-factor", type=float, default=0.95)
    o.add_argument("--lr-decay-steps", type=int, default=800720, help="steps between lr decays")
    o.add_argument("--weight-decay", type=float, default=4e-5, help="L2 (slim convention)")
    o.add_argument("--epochs", type=int, default=None, help="default: 11 embedded, 100 COCO")
    o.add_argument("--steps-per-epoch", type=int, default=None, help="default: one pass over the data")
    o.add_argument("--freeze-until", choices=["none", "P1", "P2", "P3", "P4"], default=None,
                   help="freeze the pretrained backbone up to this pyramid level (default: P3 on the "
                        "embedded set with pretrained weights, 1.75x faster steps; none otherwise)")
    e = p.add_argument_group("evaluation and export")
    e.add_argument("--eval-batches", type=int, default=None, help="evaluate on this many batches only")
    e.add_argument("--no-tflite", action="store_true", help="skip the TFLite export")
    e.add_argument("--quantize", choices=["none", "dynamic", "float16"], default="none")
    training.add_model_flags(p, image_size=300)  # 300: 1917 anchors (Table 13)
    training.add_common_flags(p, "runs/ssd_coco")
    return p.parse_args(argv)


def choose_data(args):
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


def build_model(args, class_names, strategy, freeze="none"):
    num_classes = len(class_names)
    with strategy.scope():
        loss = FocalLoss() if args.loss == "focal" else SSDLoss()
        model = ssd_mobilenet_v1(num_classes, alpha=args.alpha, image_size=args.image_size,
                                 weights=presets.resolve_weights(args.weights), detection_loss=loss,
                                 weight_decay=args.weight_decay, class_prior=args.class_prior or None,
                                 class_names=class_names)
        model.backbone.freeze_until(None if freeze == "none" else freeze)  # before compile
        schedule = keras.optimizers.schedules.ExponentialDecay(
            args.lr, args.lr_decay_steps, args.lr_decay_factor, staircase=True)
        model.compile(keras.optimizers.RMSprop(
            schedule, rho=args.rms_decay, momentum=args.momentum, epsilon=args.rms_epsilon))
    return model


def main(argv=None) -> dict:
    args = parse_args(argv)
    # The strategy first: multi-worker collectives must be configured before any TF op runs.
    strategy = training.get_strategy(args.strategy, args.tpu)
    args.out = training.output_dir(args.out, strategy)  # only the chief writes to --out
    train_src, val_src, line = choose_data(args)
    print(line, flush=True)
    keras.utils.set_random_seed(args.seed)
    is_embedded = "embedded" in line
    epochs = args.epochs or (1 if args.smoke else 11 if is_embedded else 100)
    batch = 2 if args.smoke else args.batch_size
    # A fixed number of steps over a repeated dataset keeps one iterator for the
    # whole run: no shuffle-buffer refill (600 decodes) at the start of each epoch.
    steps = args.steps_per_epoch or (2 if args.smoke else
                                     max(1, (train_src.num_examples or 0) // batch) or None)
    freeze = args.freeze_until or ("P3" if is_embedded and args.weights != "scratch" else "none")
    model = build_model(args, train_src.class_names, strategy, freeze)
    # The embedded set is small: decode it once (cache) instead of every epoch.
    train_ds = model.preprocessor.pipeline(train_src, batch, training=True, seed=args.seed,
                                           cache=is_embedded)
    if steps:
        train_ds = train_ds.repeat()
    val_ds = model.preprocessor.pipeline(val_src, 2 if args.smoke else 25)
    os.makedirs(args.out, exist_ok=True)
    start = time.time()
    history = model.fit(train_ds, epochs=epochs, steps_per_epoch=steps, verbose=args.verbose,
                        callbacks=training.standard_callbacks(args.out, args.resume))
    train_seconds = time.time() - start
    metrics = evaluate_coco(model, val_ds, val_src.category_ids, val_src.class_names,
                            max_batches=args.eval_batches or (1 if args.smoke else None))
    print(f"COCO metrics ({val_src.description}):\n{format_table(metrics)}", flush=True)
    training.save_model(model, os.path.join(args.out, "model.keras"))
    images, _ = next(iter(val_ds))
    dets = model.predict_on_batch(images)
    png = draw_detections(np.asarray(images)[:8], {k: np.asarray(v)[:8] for k, v in dets.items()},
                          val_src.class_names, model.bounding_box_format,
                          os.path.join(args.out, "detections.png"))
    results = {
        "data": line, "epochs": epochs, "frozen_until": freeze, "train_seconds": round(train_seconds, 1),
        "final_loss": float(history.history["loss"][-1]) if history.history.get("loss") else None,
        "coco_metrics": metrics, "paper": PAPER_TABLE_13, "detections_png": png,
        "args": vars(args),
    }
    if not args.no_tflite:
        quantize = None if args.quantize == "none" else args.quantize
        path = os.path.join(args.out, "model.tflite")
        to_tflite(model, path, quantize=quantize)
        lite = TFLiteRunner(path)(np.asarray(images)[:1])
        results["tflite"] = {"path": path, "num_detections_first_image": int(lite["num_detections"][0])}
        print(f"TFLite: {path} ({os.path.getsize(path) / 1e6:.1f} MB)")
    print(f"results: {training.write_results(args.out, results)}")
    return results


if __name__ == "__main__":
    main()
