"""``python -m mobilenet_zoo.classify IMAGE...``: ImageNet top-5, offline."""

from __future__ import annotations

import argparse
import sys

from mobilenet_zoo.imagenet import DEFAULT_PRESET, classify
from mobilenet_zoo.images import ImageError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mobilenet_zoo.classify",
        description="Print the top ImageNet classes of each image (shipped weights, no download).",
    )
    parser.add_argument("images", nargs="+", help="image files (JPEG, PNG, ...)")
    parser.add_argument("--top", type=int, default=5)
    parser.add_argument("--preset", default=DEFAULT_PRESET)
    args = parser.parse_args(argv)
    failed = 0
    for path in args.images:
        try:
            top = classify(path, args.top, args.preset)
        except ImageError as err:  # unreadable: say which, go on with the others
            print(f"skipped: {err}", file=sys.stderr, flush=True)
            failed += 1
            continue
        print(path)
        for rank, (synset, name, score) in enumerate(top, 1):
            print(f"  {rank}. {name:30s} {score:.4f}  ({synset})")
    return min(failed, 255)  # exit code: how many files could not be read


if __name__ == "__main__":
    raise SystemExit(main())
