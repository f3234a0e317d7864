"""DeepLabV3(+) on MobileNet: train, report mIoU, export to TFLite.

    python recipes/segmentation.py                                   # embedded digit masks
    python recipes/segmentation.py --dataset pets --data-dir DIR     # TFDS oxford_iiit_pet
    python recipes/segmentation.py --dataset voc --voc-root VOCdevkit/VOC2012
    python recipes/segmentation.py --smoke                           # mock data, a few steps

Writes model.keras, model.tflite (ArgMax inside with --tflite-argmax),
overlays.png and results.json in --out.
"""

from __future__ import annotations

MOBILENET_ZOO_PARSE_FIRST = True  # flags parsed before TensorFlow loads (mobilenet_zoo/__init__.py)

import argparse
import os

from mobilenet_zoo import flags


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", choices=["embedded", "pets", "voc"], default="embedded")
    p.add_argument("--data-dir", default=None, help="TFDS data dir (pets)")
    p.add_argument("--voc-root", default=None, help="VOC2012 folder (voc)")
    p.add_argument("--embedded-classes", type=int, choices=[2, 11], default=2,
                   help="embedded set: 2 = background/digit, 11 = background + each digit")
    p.add_argument("--output-stride", type=int, default=16, choices=[8, 16, 32])
    p.add_argument("--decoder", action="store_true", help="DeepLabV3+ decoder with a low-level skip")
    p.add_argument("--separable-aspp", action="store_true", help="depthwise separable ASPP branches")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--epochs", type=int, default=None, help="default 4 (embedded), 30 otherwise")
    p.add_argument("--steps-per-epoch", type=int, default=None)
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    p.add_argument("--tflite-argmax", action="store_true", help="export class ids (ArgMax) instead of logits")
    p.add_argument("--no-tflite", action="store_true")
    flags.add_model_flags(p, image_size=160)
    flags.add_common_flags(p, "runs/segmentation")
    return p.parse_args(argv)


if __name__ == "__main__":
    parse_args()  # --help and usage errors answer here, before TensorFlow loads

from mobilenet_zoo import cli

cli.load_package()  # TensorFlow (its C++ start-up lines quiet) and every class

import keras
import numpy as np
import tensorflow as tf

from mobilenet_zoo import MobileNetBackbone, presets, training
from mobilenet_zoo.export import TFLiteRunner, to_tflite
from mobilenet_zoo.segmentation import (
    DeepLabV3,
    MeanIoU,
    PixelAccuracy,
    SegmentationPreprocessor,
    confusion_matrix,
    segmentation_loss,
    segmentation_scores,
)
from mobilenet_zoo.segmentation import data as sdata
from mobilenet_zoo.segmentation.visualize import save_overlays


def choose_data(args):
    if args.smoke:
        import tensorflow_datasets as tfds

        with tfds.testing.mock_data(num_examples=4):
            train = sdata.oxford_pets("train", check=False)
            val = sdata.oxford_pets("test", check=False)
        # mock_data's masks are random and not image-sized: resize them to match.
        def fix(ex):
            mask = tf.image.resize(ex["mask"], tf.shape(ex["image"])[:2], method="nearest")
            return {"image": ex["image"], "mask": tf.where(mask > 1, tf.constant(255, tf.uint8), mask)}
        train.dataset, val.dataset = train.dataset.map(fix), val.dataset.map(fix)
        return train, val, "data: tfds.testing.mock_data oxford_iiit_pet (--smoke)"
    if args.dataset == "pets":
        return (sdata.oxford_pets("train", args.data_dir), sdata.oxford_pets("test", args.data_dir),
                "data: TFDS oxford_iiit_pet")
    if args.dataset == "voc":
        if not args.voc_root:
            raise SystemExit("error: --dataset voc needs --voc-root (the VOC2012 folder)")
        return sdata.voc2012(args.voc_root, "train"), sdata.voc2012(args.voc_root, "val"), "data: PASCAL VOC 2012"
    binary = args.embedded_classes == 2
    train, val = sdata.embedded_digits("train", binary=binary), sdata.embedded_digits("val", binary=binary)
    return train, val, f"data: {train.description} (no --dataset given; no download)"


def main(argv=None) -> dict:
    args = parse_args(argv)
    # The strategy first: multi-worker collectives must be configured before any TF op runs.
    strategy = training.get_strategy(args.strategy, args.tpu)
    args.out = training.output_dir(args.out, strategy)  # only the chief writes to --out
    train_src, val_src, line = choose_data(args)
    print(line, flush=True)
    keras.utils.set_random_seed(args.seed)
    n = len(train_src.class_names)
    size = 64 if args.smoke else args.image_size
    batch = 2 if args.smoke else args.batch_size
    steps = args.steps_per_epoch or (2 if args.smoke else None)
    epochs = args.epochs or (1 if args.smoke else 4 if args.dataset == "embedded" else 30)
    weights = presets.backbone_weights(presets.resolve_weights(args.weights), args.alpha)
    with strategy.scope():
        backbone = MobileNetBackbone(alpha=args.alpha, output_stride=args.output_stride,
                                     input_shape=(None, None, 3), weights=weights)
        model = DeepLabV3(backbone, n, use_decoder=args.decoder, separable_aspp=args.separable_aspp,
                          preprocessor=SegmentationPreprocessor(size, n))
        model.compile(keras.optimizers.Adam(args.lr), segmentation_loss(),
                      metrics=[MeanIoU(n), PixelAccuracy()])
    train_ds = model.preprocessor.pipeline(train_src, batch, training=True, seed=args.seed)
    val_ds = model.preprocessor.pipeline(val_src, batch)
    if steps:
        train_ds = train_ds.repeat()
    os.makedirs(args.out, exist_ok=True)
    model.fit(train_ds, validation_data=val_ds, epochs=epochs, steps_per_epoch=steps,
              verbose=args.verbose, callbacks=training.callbacks_for(args))
    cm = np.zeros((n, n), np.int64)
    for images, masks in val_ds:
        cm += confusion_matrix(masks, np.argmax(model.predict_on_batch(images), -1), n)
    scores = segmentation_scores(cm)
    print(f"val mean IoU {scores['mean_iou']:.3f}, pixel accuracy {scores['pixel_accuracy']:.3f}")
    training.save_model(model, os.path.join(args.out, "model.keras"))
    images, masks = next(iter(val_ds))
    png = save_overlays(np.asarray(images), np.argmax(model.predict_on_batch(images), -1),
                        os.path.join(args.out, "overlays.png"), np.asarray(masks))
    results = {"data": line.removeprefix("data: "), "classes": train_src.class_names, "epochs": epochs,
               "val": scores, "overlays_png": png, "args": vars(args)}
    if not args.no_tflite:
        path = os.path.join(args.out, "model.tflite")
        to_tflite(model, path, image_size=size, argmax=args.tflite_argmax)
        lite = next(iter(TFLiteRunner(path)(np.asarray(images)[:1]).values()))
        keras_out = model.predict_on_batch(np.asarray(images)[:1])
        ref = np.argmax(keras_out, -1) if args.tflite_argmax else keras_out
        results["tflite"] = {"path": path, "max_abs_diff_vs_keras": float(np.abs(lite - ref).max())}
        print(f"TFLite: {path}, max |TFLite - Keras| = {results['tflite']['max_abs_diff_vs_keras']:.2e}")
    print(f"results: {training.write_results(args.out, results)}")
    return results


if __name__ == "__main__":
    main()
