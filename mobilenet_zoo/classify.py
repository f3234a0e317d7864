"""``python -m mobilenet_zoo.classify IMAGE...``: ImageNet top-5, offline."""

from __future__ import annotations

import argparse
import os

from mobilenet_zoo.imagenet import DEFAULT_PRESET, classify


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mobilenet_zoo.classify",
        description="Print the top ImageNet classes of each image (shipped weights, no download).",
    )
    parser.add_argument("images", nargs="+", help="image files (JPEG, PNG, ...)")
    parser.add_argument("--top", type=int, default=5)
    parser.add_argument("--preset", default=DEFAULT_PRESET)
    args = parser.parse_args(argv)
    missing = [p for p in args.images if not os.path.isfile(p)]
    if missing:
        parser.exit(2, f"error: no such file: {', '.join(missing)}\n")
    for path in args.images:
        print(path)
        for rank, (synset, name, score) in enumerate(classify(path, args.top, args.preset), 1):
            print(f"  {rank}. {name:30s} {score:.4f}  ({synset})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
