"""Face attributes with distillation (paper Table 12): a MobileNet student learns a
teacher's 40 CelebA attribute scores, optionally from unlabeled images only.

    python recipes/face_attributes.py --data-dir DIR --alpha 0.5 --image-size 128 --unlabeled
    python recipes/face_attributes.py --teacher teacher.keras --data-dir DIR
    python recipes/face_attributes.py --smoke                   # mock celeb_a, a few steps

Without --teacher, a teacher (1.0 MobileNet-224 from the ImageNet preset) is
trained on the labels first. Metric: mean average precision over attributes.
"""

from __future__ import annotations

from mobilenet_zoo.training import flags

TABLE_12 = {  # (alpha, image_size) -> mean AP %
    (1.0, 224): 88.7, (0.5, 224): 88.1, (0.25, 224): 87.2,
    (1.0, 128): 88.1, (0.5, 128): 87.7, (0.25, 128): 86.4,
}  # fmt: skip
NUM_ATTRIBUTES = 40


def parse_args(argv=None):
    p = flags.recipe_parser(__doc__)
    p.add_argument("--data-dir", default=None, help="TFDS data dir holding celeb_a")
    p.add_argument("--teacher", default=None, help="a saved Keras model giving 40 attribute logits")
    p.add_argument("--teacher-epochs", type=int, default=5, help="epochs to train a teacher when none is given")
    p.add_argument("--unlabeled", action="store_true", help="distill from images only (no label loss)")
    p.add_argument("--label-weight", type=float, default=0.0,
                   help="weight of the label loss when labels are used (0 = pure distillation)")
    p.add_argument("--temperature", type=float, default=1.0, help="sigmoid soft-target temperature")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=64)
    flags.add_learning_rate_flag(p, 1e-3, "Adam learning rate")
    p.add_argument("--teacher-image-size", type=int, default=224, help="side the pipeline resizes images to")
    flags.add_model_flags(p, image_size=128, weights=None, alpha=0.5)  # student (Table 12 rows)
    flags.add_common_flags(p, "runs/face_attributes")
    return p.parse_args(argv)


def _split(args):
    import tensorflow as tf

    from mobilenet_zoo.data.tfds_utils import load_split

    def load(name, data_dir, check):
        def convert(ex):
            attrs = tf.stack([tf.cast(ex["attributes"][k], tf.float32) for k in sorted(ex["attributes"])])
            size = (args.teacher_image_size, args.teacher_image_size)
            return tf.image.resize(tf.cast(ex["image"], tf.float32), size), attrs

        return load_split("celeb_a", name, data_dir, check=check).map(convert, num_parallel_calls=tf.data.AUTOTUNE)

    return load


def mean_average_precision(y_true, scores) -> float:
    import numpy as np
    from sklearn.metrics import average_precision_score

    aps = [average_precision_score(y_true[:, k], scores[:, k])
           for k in range(y_true.shape[1]) if 0 < y_true[:, k].sum() < len(y_true)]
    return float(np.mean(aps)) if aps else 0.0


def main(argv=None) -> dict:
    args = parse_args(argv)
    # --help and usage errors answered above; now TensorFlow (quietly) or a TF-free backend.
    from mobilenet_zoo.backend import prepare_backend

    prepare_backend()
    import keras
    import numpy as np

    from mobilenet_zoo import presets
    from mobilenet_zoo.distillation import SigmoidDistillation, make_distiller
    from mobilenet_zoo.distillation.models import mobilenet_head_model
    from mobilenet_zoo.models import load_model
    from mobilenet_zoo.training import run as training

    if args.smoke:
        args.teacher_image_size, args.epochs, args.batch_size, args.teacher_epochs = 64, 1, 4, 1
    run = training.RunContext.start(training.run_options(args))
    choice = training.tfds_data("celeb_a", args.data_dir, run.smoke, _split(args))
    train, test = choice.train, choice.val
    print(choice.line, flush=True)
    run.set_seed()
    train_b = train.shuffle(2048, seed=run.seed).batch(args.batch_size).prefetch(2)
    test_b = test.batch(args.batch_size).prefetch(2)
    with run.scope():
        if args.teacher:
            teacher = load_model(args.teacher, compile=False)  # every class of the package known
        else:
            teacher = mobilenet_head_model(NUM_ATTRIBUTES, 1.0, 64 if args.smoke else 224,
                                           weights=presets.IMAGENET, name="teacher")
            teacher.compile(keras.optimizers.Adam(args.learning_rate),
                            keras.losses.BinaryCrossentropy(from_logits=True))
    if not args.teacher:
        print(f"training the teacher on labels for {args.teacher_epochs} epochs", flush=True)
        teacher.fit(train_b, epochs=args.teacher_epochs, verbose=run.verbose)
        run.save_model(teacher, "teacher.keras")
    with run.scope():
        student = mobilenet_head_model(NUM_ATTRIBUTES, args.alpha, 64 if args.smoke else args.image_size)
        weight = 0.0 if args.unlabeled else args.label_weight
        distiller = make_distiller(
            teacher, student, SigmoidDistillation(args.temperature),
            student_loss=keras.losses.BinaryCrossentropy(from_logits=True) if weight else None,
            student_loss_weight=weight, optimizer=keras.optimizers.Adam(args.learning_rate))
    fit_data = train_b.map(lambda x, y: x) if not weight else train_b
    distiller(next(iter(test_b))[0][:1])  # build before BackupAndRestore (Keras requires it)
    distiller.fit(fit_data, epochs=args.epochs, verbose=run.verbose, callbacks=run.callbacks())
    y_true = np.concatenate([y.numpy() for _, y in test_b])
    scores = {name: mean_average_precision(y_true, np.concatenate([m.predict_on_batch(x) for x, _ in test_b]))
              for name, m in (("student", student), ("teacher", teacher))}
    run.save_model(student, "student.keras")
    paper = None if args.smoke else TABLE_12.get((args.alpha, args.image_size))
    results = {"data": choice.description, "mean_ap": scores, "paper_mean_ap_percent": paper,
               "unlabeled": not weight, "args": run.flags}
    summary = (f"mean AP: student {100 * scores['student']:.1f}%, teacher {100 * scores['teacher']:.1f}% "
               f"(paper, this student: {paper}%)")
    return run.write_results(results, summary)


if __name__ == "__main__":
    main()
