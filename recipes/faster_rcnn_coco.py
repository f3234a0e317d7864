"""Faster R-CNN MobileNet on COCO (paper Table 13), with the TF Object Detection API's setup.

    python recipes/faster_rcnn_coco.py                                    # COCO if on disk, else embedded
    python recipes/faster_rcnn_coco.py --data-dir DIR --image-size 300    # Table 13 "Faster-RCNN 300"
    python recipes/faster_rcnn_coco.py --data-dir DIR --image-size 600    # Table 13 "Faster-RCNN 600"
    python recipes/faster_rcnn_coco.py --dataset voc --data-dir DIR       # TFDS voc/2007
    python recipes/faster_rcnn_coco.py --smoke                            # mock COCO, a few steps

Same data, flags and outputs as recipes/ssd_coco.py: model.fit (TensorBoard, the
last and best epochs' checkpoints (--keep-checkpoints), --resume), pycocotools evaluation, model.keras,
model.tflite (NMS and ROI crops from TFLite builtins), detections.png and
results.json with the paper's row.
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
    m = p.add_argument_group("model (TF OD API faster_rcnn_*_coco.config defaults)")
    m.add_argument("--max-proposals", type=int, default=300, help="first-stage proposals (config: 300)")
    m.add_argument("--second-stage-batch", type=int, default=None,
                   help="proposals per image trained in the second stage (default: 64 as the config; 16 "
                        "on the embedded set, our choice: ~2.5 objects per image, and the second stage "
                        "costs 78M mult-adds per proposal)")
    o = p.add_argument_group("optimizer (config: momentum SGD 0.9, lr 3e-4, batch 1)")
    o.add_argument("--batch-size", type=int, default=None, help="global batch (default: 1 COCO, 8 embedded)")
    o.add_argument("--lr", type=float, default=None,
                   help="learning rate (default: 3e-4 COCO as the config; 0.01 on the embedded set, our "
                        "choice for a few minutes of training at batch 8)")
    o.add_argument("--momentum", type=float, default=0.9)
    o.add_argument("--weight-decay", type=float, default=0.0,
                   help="L2 (slim convention; the configs' l2_regularizer weights are 0 in the first "
                        "stage box predictor)")
    o.add_argument("--epochs", type=int, default=None, help="default: 5 embedded, 100 COCO")
    o.add_argument("--steps-per-epoch", type=int, default=None, help="default: one pass over the data")
    o.add_argument("--freeze-until", choices=["none", "P1", "P2", "P3", "P4"], default=None,
                   help="freeze the pretrained backbone up to this pyramid level (default: P3 on the "
                        "embedded set with pretrained weights; none otherwise)")
    flags.add_detection_eval_flags(p)
    flags.add_model_flags(p, image_size=300)  # Table 13: 300, or 600
    flags.add_common_flags(p, "runs/faster_rcnn_coco")
    return p.parse_args(argv)


if __name__ == "__main__":
    parse_args()  # --help and usage errors answer here, before TensorFlow loads

from mobilenet_zoo import cli

cli.load_package()  # TensorFlow (its C++ start-up lines quiet) and every class

import keras

from mobilenet_zoo import presets, training
from mobilenet_zoo.detection import faster_rcnn_mobilenet_v1, recipe
from mobilenet_zoo.paper import TABLE_13


def build_model(args, class_names, strategy, freeze: str, lr: float, second_stage_batch: int):
    with strategy.scope():
        model = faster_rcnn_mobilenet_v1(
            len(class_names), alpha=args.alpha, image_size=args.image_size,
            weights=presets.resolve_weights(args.weights), max_proposals=args.max_proposals,
            second_stage_batch=second_stage_batch, weight_decay=args.weight_decay, class_names=class_names)
        model.backbone.freeze_until(None if freeze == "none" else freeze)  # before compile
        model.compile(keras.optimizers.SGD(lr, momentum=args.momentum))
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
    epochs = args.epochs or (1 if args.smoke else 5 if is_embedded else 100)
    batch = 2 if args.smoke else args.batch_size or (8 if is_embedded else 1)
    lr = args.lr or (0.01 if is_embedded or args.smoke else 3e-4)
    steps = args.steps_per_epoch or (2 if args.smoke else
                                     max(1, (train_src.num_examples or 0) // batch) or None)
    freeze = args.freeze_until or ("P3" if is_embedded and args.weights != "scratch" else "none")
    second_stage_batch = args.second_stage_batch or (16 if is_embedded or args.smoke else 64)
    model = build_model(args, train_src.class_names, strategy, freeze, lr, second_stage_batch)
    train_ds = model.preprocessor.pipeline(train_src, batch, training=True, seed=args.seed,
                                           cache=is_embedded)
    if steps:
        train_ds = train_ds.repeat()
    val_ds = model.preprocessor.pipeline(val_src, 2 if args.smoke else 10)
    os.makedirs(args.out, exist_ok=True)
    start = time.time()
    history = model.fit(train_ds, epochs=epochs, steps_per_epoch=steps, verbose=args.verbose,
                        callbacks=training.callbacks_for(args))
    train_seconds = time.time() - start
    row = f"Faster-RCNN {600 if args.image_size >= 600 else 300} MobileNet"
    return recipe.finish(model, args, val_src, val_ds, {
        "data": line.removeprefix("data: "), "epochs": epochs, "batch_size": batch, "learning_rate": lr, "frozen_until": freeze,
        "second_stage_batch": second_stage_batch,
        "train_seconds": round(train_seconds, 1),
        "final_loss": float(history.history["loss"][-1]) if history.history.get("loss") else None,
        "paper": {row: TABLE_13[row]},
    })


if __name__ == "__main__":
    main()
