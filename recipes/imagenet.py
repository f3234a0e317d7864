"""The paper's ImageNet experiments (Tables 4-9) on TFDS imagenet2012.

    python recipes/imagenet.py --table 6                 # list Table 6's rows and their commands
    python recipes/imagenet.py --alpha 0.5 --image-size 160 --data-dir ~/tensorflow_datasets
    python recipes/imagenet.py --table 6 --run-table --data-dir DIR   # run the whole sweep
    python recipes/imagenet.py --smoke                   # mock data, a few steps
    python recipes/imagenet.py --evaluate-only --weights imagenet --alpha 0.5 --image-size 160 --data-dir DIR

imagenet2012 needs a manual download (TFDS cannot fetch it): put
ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar in <data-dir>/downloads/manual/
and run `tfds build imagenet2012 --data_dir <data-dir>` once.
"""

from __future__ import annotations

import dataclasses
import os
import sys

from mobilenet_zoo.training import flags

DATASET = "imagenet2012"


def parse_args(argv=None):
    p = flags.recipe_parser(__doc__)
    p.add_argument("--data-dir", default=None, help="TFDS data dir holding imagenet2012")
    p.add_argument("--table", default=None, choices=["4", "5", "6", "7", "8", "9"],
                   help="list the rows of a paper table (with --run-table: run them)")
    p.add_argument("--run-table", action="store_true", help="run every row of --table in turn")
    p.add_argument("--evaluate-only", action="store_true",
                   help="no training: measure --weights (e.g. imagenet: the published variant of "
                        "--alpha / --image-size) on the validation split against TF-slim's top-1")
    flags.add_config_flags(p, flags.ClassificationConfig())
    flags.add_common_flags(p, "runs/imagenet")
    args = p.parse_args(argv)
    given = sys.argv[1:] if argv is None else list(argv)
    named = any(a == "--weights" or a.startswith("--weights=") for a in given)
    if args.evaluate_only and named and args.weights in ("scratch", "none"):
        p.error(f"--evaluate-only measures trained weights; --weights {args.weights} is random. "
                "Give imagenet (the published variant of --alpha / --image-size), a preset "
                "name or a weights file, or leave --weights out (imagenet).")
    return args


def row_command(row) -> str:
    return (f"python recipes/imagenet.py --alpha {row['alpha']} --image-size {row['image_size']} "
            f"--variant {row['variant']} --data-dir DIR --out runs/imagenet/{row['label'].replace(' ', '_')}")


def main(argv=None, extra_callbacks=None) -> list[dict]:
    args = parse_args(argv)
    # --help and usage errors answered above; now TensorFlow (quietly) or a TF-free backend.
    from mobilenet_zoo.backend import prepare_backend

    prepare_backend()
    from mobilenet_zoo.data.tfds_utils import default_data_dir, tfds_prepared
    from mobilenet_zoo.training import classification as trainer
    from mobilenet_zoo.training import run as training

    data_dir = args.data_dir or default_data_dir()
    rows = trainer.paper_rows(args.table) if args.table else None
    if rows and not args.run_table:
        print(f"Table {args.table} rows (paper top-1) and the command for each:")
        for row in rows:
            print(f"  {row['label']:24s} {row['paper_top1']:5.1f}%   {row_command(row)}")
        return []
    if not args.smoke and not tfds_prepared(DATASET, data_dir):
        raise SystemExit(
            f"error: TFDS {DATASET} is not prepared under {data_dir}; nothing was run.\n"
            f"ImageNet needs a manual download: put ILSVRC2012_img_train.tar and "
            f"ILSVRC2012_img_val.tar in {os.path.join(data_dir, 'downloads', 'manual')}, then run "
            f"`tfds build {DATASET} --data_dir {data_dir}` (or pass --data-dir). "
            "Use --smoke to check the plumbing on mock data."
        )
    config = training.config_from_args(trainer.ClassificationConfig, args)
    if args.evaluate_only:
        return [evaluate_only(args, config, data_dir)]
    if args.smoke:
        config = dataclasses.replace(config, alpha=min(config.alpha, 0.25), image_size=64, batch_size=4,
                                     epochs=trainer.smoke_epochs(config, trainer.ClassificationConfig()),
                                     steps_per_epoch=config.steps_per_epoch or 2)
    run = training.RunContext.start(training.run_options(args))
    run.set_seed()
    results = []
    for row in rows or [None]:
        cfg = config if row is None else dataclasses.replace(
            config, alpha=row["alpha"], image_size=row["image_size"], variant=row["variant"])
        paper = _paper_for(cfg)
        out = run.out_dir if row is None else run.path(row["label"].replace(" ", "_"))
        train, val, n_train, line = load_data(args, data_dir)
        print(line, flush=True)
        r = trainer.run_in(run, cfg, train, val, 1000, out, paper, n_train, line, extra_callbacks)
        print(f"{paper.get('label', 'this variant')}: top-1 {100 * r['measured']['top1']:.1f}% "
              f"(paper {paper.get('top1', 'n/a')}%), results in {r['results_json']}")
        results.append(r)
    return results


def evaluate_only(args, config, data_dir) -> dict:
    """Top-1 / top-5 of published weights beside TF-slim's numbers (no training)."""
    from mobilenet_zoo.training.evaluate import evaluate_pretrained

    weights = "imagenet" if config.weights in ("scratch", "none") else config.weights
    _, val, _, line = load_data(args, data_dir)
    print(line, flush=True)
    r = evaluate_pretrained(val, config.alpha, config.image_size, weights,
                            central_fraction=config.central_fraction)
    published = (f"TF-slim published top-1 {r['published_top1']}% / top-5 {r['published_top5']}%"
                 if r["published_top1"] is not None else "no published number")
    print(f"{r['preset']}: top-1 {100 * r['top1']:.1f}% / top-5 {100 * r['top5']:.1f}% "
          f"({published})")
    return r


def _paper_for(cfg) -> dict:
    from mobilenet_zoo.training import classification as trainer

    for table in ("4", "5", "6", "7", "9"):
        for row in trainer.paper_rows(table):
            if (row["alpha"], row["image_size"], row["variant"]) == (cfg.alpha, cfg.image_size, cfg.variant):
                return {"table": table, "label": row["label"], "top1": row["paper_top1"]}
    return {}


def load_data(args, data_dir):
    from mobilenet_zoo.data.tfds_utils import load_split

    if args.smoke:
        import tensorflow_datasets as tfds

        with tfds.testing.mock_data(num_examples=16):
            train = load_split(DATASET, "train", check=False, as_supervised=True)
            val = load_split(DATASET, "validation", check=False, as_supervised=True)
        return train, val, 16, "data: tfds.testing.mock_data imagenet2012 (--smoke)"
    train = load_split(DATASET, "train", data_dir, as_supervised=True, shuffle_files=True)
    val = load_split(DATASET, "validation", data_dir, as_supervised=True)
    return train, val, 1_281_167, f"data: TFDS {DATASET} from {data_dir}"


if __name__ == "__main__":
    main()
