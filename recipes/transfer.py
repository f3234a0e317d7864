"""Fine-tune a pretrained MobileNet on your images: frozen backbone, then top blocks.

    python recipes/transfer.py                                  # embedded faces vs non-faces
    python recipes/transfer.py --data path/to/folder            # one sub-folder per class
    python recipes/transfer.py --tfds oxford_flowers102 --data-dir ~/tensorflow_datasets
    python recipes/transfer.py --smoke                          # a few steps, tiny images

Writes ``<out>/model.keras`` and ``<out>/results.json``.
"""

from __future__ import annotations

import argparse

from mobilenet_zoo.training import flags


def parse_args(argv=None):
    p = flags.recipe_parser(__doc__)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--data", help="image folder with one sub-folder per class")
    src.add_argument("--tfds", help="a TFDS image classification dataset name (on disk)")
    src.add_argument(
        "--embedded", choices=["lfw_faces", "digits"], default=None,
        help="embedded real data (default lfw_faces: scikit-image faces vs non-faces)",
    )
    p.add_argument("--data-dir", default=None, help="TFDS data dir (with --tfds)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--head-epochs", type=int, default=5, help="epochs with the backbone frozen")
    p.add_argument("--fine-tune-epochs", type=int, default=3, help="epochs with top blocks unfrozen")
    p.add_argument("--unfreeze-blocks", type=int, default=2, help="top blocks to fine-tune (0-13)")
    flags.add_learning_rate_flag(p, 1e-3, "learning rate of the head stage")
    p.add_argument("--fine-tune-learning-rate", type=float, default=1e-4, help="learning rate of stage 2")
    p.add_argument("--fine-tune-lr", dest="fine_tune_learning_rate", type=float,
                   default=argparse.SUPPRESS, help=argparse.SUPPRESS)  # the name before issue 20
    p.add_argument("--val-fraction", type=float, default=0.3, help="validation share (folders, embedded)")
    # default: the shipped 1.0-224 weights (no download); `--weights imagenet` takes the
    # published weights of --alpha at --image-size (downloaded once)
    flags.add_model_flags(p, image_size=128, weights="mobilenet_v1_1.0_224_imagenet")
    flags.add_common_flags(p, "runs/transfer")
    return p.parse_args(argv)


def load_data(args):
    """Returns (train, val, class_names, description) as batched uint8-pixel datasets."""
    import keras
    import tensorflow as tf

    from mobilenet_zoo.data import embedded
    from mobilenet_zoo.data.tfds_utils import load_split
    from mobilenet_zoo.training import transfer

    size, bs = args.image_size, args.batch_size
    if args.data:
        try:
            transfer.check_image_folder(args.data)  # classes, empty folders, corrupt files
        except ValueError as err:
            raise SystemExit(f"error: --data: {err}") from err
        common = dict(
            validation_split=args.val_fraction, seed=args.seed, image_size=(size, size),
            batch_size=bs, label_mode="int",
        )
        train = keras.utils.image_dataset_from_directory(args.data, subset="training", **common)
        val = keras.utils.image_dataset_from_directory(args.data, subset="validation", **common)
        names = train.class_names
        return train.prefetch(2), val.prefetch(2), names, f"image folder {args.data}"
    if args.tfds:
        import tensorflow_datasets as tfds

        (train, val), info = load_split(
            args.tfds, ["train[:80%]", "train[80%:]"], args.data_dir, as_supervised=True,
            with_info=True,
        )
        names = info.features["label"].names

        def prep(image, label):
            return tf.image.resize(tf.cast(image, tf.float32), (size, size)), label

        train = train.shuffle(1000, seed=args.seed).map(prep, tf.data.AUTOTUNE).batch(bs)
        val = val.map(prep, tf.data.AUTOTUNE).batch(bs)
        del tfds
        return train.prefetch(2), val.prefetch(2), names, f"TFDS {args.tfds}"
    which = args.embedded or "lfw_faces"
    data = getattr(embedded, which)(args.val_fraction, args.seed)
    train = transfer.array_dataset(data.x_train, data.y_train, bs, size, True, args.seed)
    val = transfer.array_dataset(data.x_val, data.y_val, bs, size, False)
    why = "" if args.embedded else " (no --data or --tfds given)"
    return train, val, data.class_names, f"embedded {data.name}{why}"


def main(argv=None) -> dict:
    args = parse_args(argv)
    # --help and usage errors answered above; now TensorFlow (quietly) or a TF-free backend.
    from mobilenet_zoo.backend import prepare_backend

    prepare_backend()
    from mobilenet_zoo import presets
    from mobilenet_zoo.training import run as training
    from mobilenet_zoo.training import transfer

    if args.smoke:  # a few steps on small images: checks the plumbing, not accuracy
        args.image_size, args.head_epochs, args.fine_tune_epochs = 64, 1, 1
    run = training.RunContext.start(training.run_options(args))
    run.set_seed()
    train, val, names, description = load_data(args)
    if args.smoke:
        train, val = train.take(2), val.take(1)
    print(f"data: {description}, {len(names)} classes", flush=True)
    with run.scope():
        model = transfer.build_transfer_classifier(
            len(names), args.image_size, presets.resolve_weights(args.weights), args.alpha)
        result = transfer.fine_tune(
            model, train, val, args.head_epochs, args.fine_tune_epochs, args.unfreeze_blocks,
            args.learning_rate, args.fine_tune_learning_rate, verbose=run.verbose,
            callbacks=lambda stage: run.callbacks(subdir=stage),
        )
    run.save_model(model)
    results = {
        "data": description,
        "classes": list(names),
        "weights": args.weights,
        "head_val_accuracy": result.head_val_accuracy,
        "final_val_accuracy": result.final_val_accuracy,
        "trainable_layers_stage2": result.trainable_layers,
        "args": run.flags,
    }
    training.write_results(run.out_dir, results)
    print(
        f"val accuracy: {result.head_val_accuracy:.3f} after the head stage, "
        f"{result.final_val_accuracy:.3f} after fine-tuning; saved {run.path('model.keras')}"
    )
    return results


if __name__ == "__main__":
    main()
