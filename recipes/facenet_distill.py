"""FaceNet distillation (paper Table 14): a MobileNet student reproduces a face-embedding
teacher by squared L2 on embeddings, trained on unlabeled faces.

    python recipes/facenet_distill.py --teacher facenet.keras --data-dir DIR --alpha 1.0 --image-size 160
    python recipes/facenet_distill.py --smoke                   # mock lfw, stand-in teacher

Evaluation: face verification on TFDS lfw pairs built deterministically (half same
person, half different), accuracy and true-accept rate at false-accept 1e-3 / 1e-4.
"""

from __future__ import annotations

from mobilenet_zoo.training import flags

TABLE_14 = {(1.0, 160): 79.4, (1.0, 128): 78.3, (0.75, 128): 75.2}  # 1e-4 accuracy, %


def parse_args(argv=None):
    p = flags.recipe_parser(__doc__)
    p.add_argument("--data-dir", default=None, help="TFDS data dir holding lfw")
    p.add_argument("--teacher", default=None,
                   help="a saved Keras face-embedding model (pixels in [0, 255] -> embedding)")
    p.add_argument("--embedding-dim", type=int, default=128, help="must match the teacher's")
    p.add_argument("--normalize", action="store_true", help="L2-normalise embeddings before the loss")
    p.add_argument("--pairs", type=int, default=6000, help="verification pairs (half same, half different)")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=64)
    flags.add_learning_rate_flag(p, 1e-3, "Adam learning rate")
    flags.add_model_flags(p, image_size=160, weights=None)  # student (Table 14 rows)
    flags.add_common_flags(p, "runs/facenet_distill")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    # --help and usage errors answered above; now TensorFlow (quietly) or a TF-free backend.
    from mobilenet_zoo.backend import prepare_backend

    prepare_backend()
    import keras
    import numpy as np
    import tensorflow as tf

    from mobilenet_zoo import presets
    from mobilenet_zoo.data.tfds_utils import load_split
    from mobilenet_zoo.distillation import EmbeddingDistillation, make_distiller
    from mobilenet_zoo.distillation.models import mobilenet_head_model
    from mobilenet_zoo.distillation.verification import make_pairs, verification_metrics
    from mobilenet_zoo.models import load_model
    from mobilenet_zoo.training import run as training

    if args.smoke:
        args.epochs, args.batch_size, args.image_size, args.pairs = 1, 4, 64, 20
    run = training.RunContext.start(training.run_options(args))
    choice = training.tfds_data("lfw", args.data_dir, run.smoke, lambda split, data_dir, check: load_split(
        "lfw", split, data_dir, check=check), splits=("train", None), mock_examples=24)
    ds = choice.train
    print(choice.line, flush=True)
    if args.teacher is None and not args.smoke:
        raise SystemExit("error: --teacher PATH (a Keras face-embedding model) is required; "
                         "--smoke uses a stand-in teacher to check the plumbing.")
    run.set_seed()
    size = 64 if args.smoke else 160
    images = ds.map(lambda ex: tf.image.resize(tf.cast(ex["image"], tf.float32), (size, size)),
                    num_parallel_calls=tf.data.AUTOTUNE)
    with run.scope():
        if args.teacher:
            teacher = load_model(args.teacher, compile=False)  # every class of the package known
        else:  # stand-in: ImageNet features + projection; NOT a face model
            teacher = mobilenet_head_model(args.embedding_dim, 1.0, size, l2_normalize=True,
                                           weights=presets.IMAGENET, name="stand_in_teacher")
        student = mobilenet_head_model(args.embedding_dim, args.alpha, args.image_size,
                                       l2_normalize=args.normalize)
        distiller = make_distiller(teacher, student, EmbeddingDistillation(args.normalize),
                                   optimizer=keras.optimizers.Adam(args.learning_rate))
    batches = images.shuffle(2048, seed=run.seed).batch(args.batch_size).prefetch(2)
    distiller(next(iter(batches))[:1])  # build before BackupAndRestore
    distiller.fit(batches, epochs=args.epochs, verbose=run.verbose, callbacks=run.callbacks())
    # One evaluation pass: names and both models' embeddings together.
    evaluation = ds.map(lambda ex: (tf.image.resize(tf.cast(ex["image"], tf.float32), (size, size)),
                                    ex["label"]), num_parallel_calls=tf.data.AUTOTUNE)
    names, emb = [], {"student": [], "teacher": []}
    for x, y in evaluation.batch(args.batch_size):
        names.append(y.numpy())
        emb["student"].append(student.predict_on_batch(x))
        emb["teacher"].append(teacher.predict_on_batch(x))
    labels = np.concatenate(names)
    if args.smoke:  # mock_data names are random strings, all distinct: fake 4 identities
        labels = np.arange(len(labels)) % 4
    pairs, same = make_pairs(labels, args.pairs, seed=0)
    metrics = {name: verification_metrics(np.concatenate(e), pairs, same) for name, e in emb.items()}
    run.save_model(student, "student.keras")
    paper = None if args.smoke else TABLE_14.get((args.alpha, args.image_size))
    results = {"data": choice.description, "verification": metrics, "paper_1e-4_accuracy_percent": paper,
               "teacher": args.teacher or "stand-in (smoke)", "args": run.flags}
    s = metrics["student"]
    summary = (f"student: accuracy {s['accuracy']:.3f}, TAR@FAR=1e-3 {s['tar@far=0.001']:.3f}, "
               f"TAR@FAR=1e-4 {s['tar@far=0.0001']:.3f} on {s['num_pairs']} pairs (paper: {paper})")
    return run.write_results(results, summary)


if __name__ == "__main__":
    main()
