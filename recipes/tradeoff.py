"""The paper's accuracy / compute trade-off (Tables 4-7, Figures 4-5) on Fashion-MNIST.

    python recipes/tradeoff.py                      # the default sweep (about 40 min on 2 cores)
    python recipes/tradeoff.py --resume             # continue a stopped sweep (finished runs kept)
    python recipes/tradeoff.py --alphas 1.0,0.25 --sizes 64 --no-ablations --seeds 1
    python recipes/tradeoff.py --smoke              # mock data, two steps per run

Every configuration trains from scratch with one schedule (paper s.4.1-4.2) on a
fixed subset of the training split and is evaluated on the whole test split.
Outputs in --out: one folder per run (trainer outputs), results.json, tables.md
(Tables 4-7 beside the paper's ImageNet numbers) and tradeoff.png (Figures 4-5).

Data (offline): Debian's package `sudo apt install dataset-fashion-mnist`, or the
four idx files in --data-dir, or TFDS fashion_mnist prepared under --data-dir.
"""

from __future__ import annotations

import dataclasses
import os
import time

from mobilenet_zoo.training import flags

# Debian's dataset-fashion-mnist package (mobilenet_zoo.data.fashion_mnist.DEBIAN_DIR),
# used only when no --data-dir is given.
DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"

# One schedule for every run (our choice, sized for 2 CPU cores): the trainer's
# RMSprop setup with the learning rate cut to 0.3x after each epoch, BatchNorm
# statistics that follow the last few steps (TF-slim's 0.9997 needs tens of
# thousands of steps to settle; with 0.99 and this short schedule the test accuracy
# of 1.0 MobileNet-64 lagged its training accuracy by 30 points), and no crop:
# Fashion-MNIST objects fill their 28x28 frame, so a random or central crop cuts them.
SWEEP = flags.ClassificationConfig(
    weights="scratch", batch_size=64, epochs=2, bn_momentum=0.9, augment=False,
    central_fraction=1.0, epochs_per_decay=1.0, lr_decay=0.3)
PER_RUN = ("alpha", "image_size", "variant", "weights")  # set by the sweep, not flags


def parse_args(argv=None):
    p = flags.recipe_parser(__doc__)
    p.add_argument("--data-dir", default=None,
                   help="folder with the Fashion-MNIST idx files or TFDS fashion_mnist "
                        f"(default: Debian's {DEBIAN_DIR}; a --data-dir without the data is an error, "
                        "never a silent fallback)")
    p.add_argument("--alphas", default="1.0,0.75,0.5,0.25", help="width multipliers (Table 6)")
    p.add_argument("--sizes", default="64,56,48,40",
                   help="input sides mirroring 224,192,160,128 (Table 7); the largest is the base")
    p.add_argument("--no-ablations", action="store_true",
                   help="skip the full-convolution (Table 4) and shallow (Table 5) models")
    p.add_argument("--seeds", type=int, default=2, help="seeds for each --seed-points config")
    p.add_argument("--seed-points", default="1.0@64,0.5@48,0.25@40",
                   help="ALPHA@SIZE configs trained with every seed (run-to-run spread)")
    p.add_argument("--train-examples", type=int, default=12_000,
                   help="fixed training subset (same for every run); 0 = all 60,000")
    flags.add_config_flags(p, SWEEP, exclude=PER_RUN)
    flags.add_common_flags(p, "runs/tradeoff")
    args = p.parse_args(argv)
    usage = ("--alphas takes numbers and --sizes integers, comma-separated (e.g. --alphas 1.0,0.5 "
             "--sizes 64,48); --seed-points ALPHA@SIZE pairs: {}")
    try:
        args.alphas = tuple(float(a) for a in args.alphas.split(","))
        args.sizes = tuple(int(v) for v in args.sizes.split(","))
    except ValueError as err:
        p.error(usage.format(err))
    if min(args.sizes) < 32 or min(args.alphas) <= 0:
        p.error(f"--sizes must be >= 32 pixels and --alphas > 0; got {args.sizes} and {args.alphas}.")
    points = [v for v in args.seed_points.split(",") if v]
    args.seed_points = ()
    try:
        args.seed_points = tuple(flags.parse_point(v) for v in points)
    except ValueError as err:
        p.error(f"--seed-points takes ALPHA@SIZE pairs, comma-separated: {err}")
    return args


def load_data(args, seed: int = 0):
    """(train, test) tf.data of (uint8 (28, 28, 1), label), train size, description, and a
    fingerprint of the examples (each run records it; ``--resume`` checks it)."""
    import numpy as np
    import tensorflow as tf

    from mobilenet_zoo.data import fashion_mnist
    from mobilenet_zoo.training import run as training

    if args.smoke:
        import tensorflow_datasets as tfds

        with tfds.testing.mock_data(num_examples=16):
            splits = [list(tfds.load(fashion_mnist.TFDS_NAME, split=s, as_supervised=True).as_numpy_iterator())
                      for s in ("train", "test")]
        (xtr, ytr), (xte, yte) = [(np.stack([x[..., 0] for x, _ in ex]), np.array([y % 10 for _, y in ex]))
                                  for ex in splits]
        line = "data: tfds.testing.mock_data fashion_mnist (--smoke)"
    else:
        given = args.data_dir is not None
        source = fashion_mnist.find(args.data_dir, fallback=not given)
        if source is None and given:
            raise SystemExit(
                f"error: --data-dir {args.data_dir} holds no Fashion-MNIST. Looked for the four idx "
                f"files in {args.data_dir} and {os.path.join(args.data_dir, 'fashion-mnist')}, and "
                f"for TFDS fashion_mnist prepared under {args.data_dir}; Debian's {DEBIAN_DIR} is "
                f"used only without --data-dir. {fashion_mnist.HOW_TO_GET} Nothing was run.")
        if source is None:
            raise SystemExit(f"error: {fashion_mnist.HOW_TO_GET} Nothing was run.")
        xtr, ytr = fashion_mnist.load("train", source)
        xte, yte = fashion_mnist.load("test", source)
        line = f"data: {source.describe()}" + ("" if given else " (fallback: no --data-dir given)")
    if args.train_examples:
        keep = np.random.default_rng(seed).permutation(len(xtr))[: args.train_examples]
        xtr, ytr = xtr[keep], ytr[keep]
    line += f"; {len(xtr)} training examples (fixed subset), {len(xte)} test examples"

    def ds(x, y):
        return tf.data.Dataset.from_tensor_slices((x[..., None], y))

    return ds(xtr, ytr), ds(xte, yte), len(xtr), line, training.data_fingerprint(xtr, ytr, xte, yte)


def main(argv=None) -> dict:
    args = parse_args(argv)
    # --help and usage errors answered above; now TensorFlow (quietly) or a TF-free backend.
    from mobilenet_zoo.backend import prepare_backend

    prepare_backend()
    from mobilenet_zoo.training import run as training
    from mobilenet_zoo.training import tradeoff

    ctx = training.RunContext.start(training.run_options(args))
    config = dataclasses.replace(SWEEP, **{f.name: getattr(args, f.name) for f in dataclasses.fields(SWEEP)
                                           if f.name not in PER_RUN})
    alphas, sizes, seed_points = args.alphas, args.sizes, args.seed_points
    if args.smoke:
        alphas, sizes, seed_points = (0.25,), (40, 32), ((0.25, 32),)
        config = dataclasses.replace(config, batch_size=4, epochs=1, steps_per_epoch=2)
    runs = tradeoff.sweep_runs(alphas, sizes, not args.no_ablations, args.seeds, seed_points)
    train, test, n_train, line, fingerprint = load_data(args, args.seed)
    print(line, flush=True)
    print(f"{len(runs)} runs, {config.epochs} epochs of {n_train} examples each, batch {config.batch_size}",
          flush=True)
    results, start = [], time.time()
    for i, one in enumerate(runs, 1):
        identity = tradeoff.run_identity(one, config, 10, n_train, fingerprint)
        try:  # a run of another configuration or data is refused, never tabled or continued
            loaded = tradeoff.load_done(ctx.out_dir, one, identity, config.epochs) if args.resume else None
            done = loaded or tradeoff.run_one(one, config, train, test, 10, ctx.out_dir, ctx.strategy,
                                              args.resume, n_train, ctx.verbose, line, fingerprint,
                                              args.keep_checkpoints)
        except training.RunMismatchError as err:
            raise SystemExit(f"error: {err}") from err
        status = "done before (--resume)" if loaded else f"{done['train_seconds']:.0f} s"
        print(f"[{i}/{len(runs)}] {one.key}: top-1 {100 * done['measured']['top1']:.1f}%, "
              f"{done['mult_adds_m']:.2f}M mult-adds, {done['params_m']:.2f}M params ({status})",
              flush=True)
        results.append(done)
    summary = tradeoff.summarize(results)
    tables = tradeoff.render_markdown(summary)
    with open(ctx.path("tables.md"), "w") as f:
        f.write(tables)
    png = tradeoff.plot(summary, ctx.path("tradeoff.png"),
                        title=f"MobileNet trade-off on Fashion-MNIST ({n_train} training examples, "
                              f"{config.epochs} epochs) vs the paper's ImageNet")
    payload = {"data": line.removeprefix("data: "), "schedule": dataclasses.asdict(config), "runs": len(runs),
               "wall_seconds_this_invocation": round(time.time() - start, 1),
               "train_seconds_all_runs": round(sum(r.get("train_seconds", 0) for r in results), 1),
               "summary": summary}
    path = training.write_results(ctx.out_dir, payload)
    print(tables)
    print(f"results: {path}\nplot: {png}\nwall time: {payload['wall_seconds_this_invocation'] / 60:.1f} min "
          f"(training time of all runs: {payload['train_seconds_all_runs'] / 60:.1f} min)", flush=True)
    return payload


if __name__ == "__main__":
    main()
