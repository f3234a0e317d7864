"""Fine-grained recognition on Stanford Dogs (paper Table 10), from the ImageNet preset.

    python recipes/stanford_dogs.py --table 10            # list the rows and their commands
    python recipes/stanford_dogs.py --alpha 1.0 --image-size 224 --data-dir DIR
    python recipes/stanford_dogs.py --smoke               # mock data, a few steps

Stanford Dogs is cut out of ImageNet's training set, so the paper's setup
fine-tunes an ImageNet model; `--weights imagenet` (default) loads the published
weights of `--alpha` / `--image-size` (1.0-224 ships; the others download once),
`--weights scratch` or a weights file otherwise.
"""

from __future__ import annotations

import dataclasses

from mobilenet_zoo.training import flags

# Fine-tuning defaults (our choice): shorter, gentler than ImageNet from scratch.
FINE_TUNE = flags.ClassificationConfig(weights="imagenet", epochs=30, learning_rate=0.01,
                                         batch_size=64)
DATASET = "stanford_dogs"
NUM_CLASSES = 120
# Table 10 (top-1, million mult-adds, million params without the 1000-way classifier).
TABLE_10 = [
    {"label": "1.0 MobileNet-224", "alpha": 1.0, "image_size": 224, "paper_top1": 83.3},
    {"label": "0.75 MobileNet-224", "alpha": 0.75, "image_size": 224, "paper_top1": 81.9},
    {"label": "1.0 MobileNet-192", "alpha": 1.0, "image_size": 192, "paper_top1": 81.9},
    {"label": "0.75 MobileNet-192", "alpha": 0.75, "image_size": 192, "paper_top1": 80.5},
]


def parse_args(argv=None):
    p = flags.recipe_parser(__doc__)
    p.add_argument("--data-dir", default=None, help="TFDS data dir holding stanford_dogs")
    p.add_argument("--table", default=None, choices=["10"], help="list Table 10's rows")
    flags.add_config_flags(p, FINE_TUNE)
    flags.add_common_flags(p, "runs/stanford_dogs")
    return p.parse_args(argv)


def main(argv=None, extra_callbacks=None) -> dict | None:
    args = parse_args(argv)
    # --help and usage errors answered above; now TensorFlow (quietly) or a TF-free backend.
    from mobilenet_zoo.backend import prepare_backend

    prepare_backend()
    from mobilenet_zoo.data.tfds_utils import default_data_dir, load_split, tfds_prepared
    from mobilenet_zoo.training import classification as trainer
    from mobilenet_zoo.training import run as training

    data_dir = args.data_dir or default_data_dir()
    if args.table:
        print("Table 10 rows (paper top-1) and the command for each:")
        for row in TABLE_10:
            print(f"  {row['label']:20s} {row['paper_top1']:5.1f}%   python recipes/stanford_dogs.py "
                  f"--alpha {row['alpha']} --image-size {row['image_size']} --data-dir DIR")
        return None
    if not args.smoke and not tfds_prepared(DATASET, data_dir):
        raise SystemExit(
            f"error: TFDS {DATASET} is not prepared under {data_dir}; nothing was run. Run "
            f"`tfds build {DATASET} --data_dir {data_dir}` on a machine with network access "
            "and pass --data-dir. Use --smoke to check the plumbing on mock data."
        )
    config = training.config_from_args(trainer.ClassificationConfig, args)
    if args.smoke and config.weights == "imagenet" and config.alpha != 1.0:
        print(f"note: --smoke never downloads; alpha {config.alpha} starts from scratch (without "
              "--smoke, --weights imagenet downloads the published weights of that alpha once).")
        config = dataclasses.replace(config, weights="scratch")
    if args.smoke:
        config = dataclasses.replace(config, image_size=64, batch_size=4,
                                     epochs=trainer.smoke_epochs(config, FINE_TUNE),
                                     steps_per_epoch=config.steps_per_epoch or 2)
        import tensorflow_datasets as tfds

        with tfds.testing.mock_data(num_examples=16):
            train = load_split(DATASET, "train", check=False, as_supervised=True)
            test = load_split(DATASET, "test", check=False, as_supervised=True)
        n_train, line = 16, "data: tfds.testing.mock_data stanford_dogs (--smoke)"
    else:
        train = load_split(DATASET, "train", data_dir, as_supervised=True, shuffle_files=True)
        test = load_split(DATASET, "test", data_dir, as_supervised=True)
        n_train, line = 12_000, f"data: TFDS {DATASET} from {data_dir}"
    print(line, flush=True)
    run = training.RunContext.start(training.run_options(args))
    run.set_seed()
    paper = next(({"table": "10", **r} for r in TABLE_10
                  if (r["alpha"], r["image_size"]) == (config.alpha, config.image_size)), {})
    r = trainer.run_in(run, config, train, test, NUM_CLASSES, run.out_dir, paper, n_train, line,
                       extra_callbacks)
    print(f"test top-1 {100 * r['measured']['top1']:.1f}% (paper {paper.get('paper_top1', 'n/a')}%), "
          f"results in {r['results_json']}")
    return r


if __name__ == "__main__":
    main()
