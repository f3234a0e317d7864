"""SSD-MobileNet on COCO (paper Table 13), with the TF Object Detection API's setup.

    python recipes/ssd_coco.py                                   # COCO if on disk, else embedded
    python recipes/ssd_coco.py --data-dir ~/tensorflow_datasets  # TFDS coco/2017
    python recipes/ssd_coco.py --dataset voc --data-dir DIR      # TFDS voc/2007
    python recipes/ssd_coco.py --smoke                           # mock COCO, a few steps

Trains with model.fit (progress bar, TensorBoard, last/best checkpoints,
--resume), evaluates with pycocotools, saves model.keras and model.tflite (with
decoding and NMS) and a PNG of detections on validation images in --out.
"""

from __future__ import annotations

MOBILENET_ZOO_PARSE_FIRST = True  # flags parsed before TensorFlow loads (mobilenet_zoo/__init__.py)

import argparse
import os
import time

from mobilenet_zoo import flags


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    flags.add_detection_data_flags(p)
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
    flags.add_detection_eval_flags(p)
    flags.add_model_flags(p, image_size=300)  # 300: 1917 anchors (Table 13)
    flags.add_common_flags(p, "runs/ssd_coco")
    return p.parse_args(argv)


if __name__ == "__main__":
    parse_args()  # --help and usage errors answer here, before TensorFlow loads

from mobilenet_zoo import cli

cli.load_package()  # TensorFlow (its C++ start-up lines quiet) and every class

import keras

from mobilenet_zoo import presets, training
from mobilenet_zoo.detection import FocalLoss, SSDLoss, recipe, ssd_mobilenet_v1
from mobilenet_zoo.paper import TABLE_13

PAPER_TABLE_13 = {"SSD 300 MobileNet": TABLE_13["SSD 300 MobileNet"]}


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
    train_src, val_src, line = recipe.choose_data(args)
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
                        callbacks=training.callbacks_for(args))
    train_seconds = time.time() - start
    return recipe.finish(model, args, val_src, val_ds, {
        "data": line.removeprefix("data: "), "epochs": epochs, "frozen_until": freeze, "train_seconds": round(train_seconds, 1),
        "final_loss": float(history.history["loss"][-1]) if history.history.get("loss") else None,
        "paper": PAPER_TABLE_13,
    })


if __name__ == "__main__":
    main()
