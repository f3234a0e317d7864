"""``mobilenet-zoo classify IMAGE_OR_DIR...``: ImageNet top-5, offline.

Prints each image's path and its top classes. Folders are walked recursively.
Nothing is written, inputs are only read. An unreadable, oversized
(``--max-image-pixels``) or failing image is skipped with its reason on stderr and
the run goes on. Exit codes: 0 every image done, 1 some inputs skipped (listed on
stderr), 2 usage error (nothing was run), 3 fatal error.

``--preset`` is checked from its metadata before Keras loads: it must be a
classifier of ImageNet's 1000 classes; a detector, a backbone without a head, or
a published preset that ``$MOBILENET_ZOO_OFFLINE`` keeps from downloading is a
usage error naming what to run instead.
"""

from __future__ import annotations

import argparse
import sys

from mobilenet_zoo.cli import common as cli
from mobilenet_zoo.cli import start_backend
from mobilenet_zoo.hub.presets import IMAGENET


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mobilenet-zoo classify",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=cli.EXIT_CODES_HELP,
    )
    parser.add_argument("images", nargs="+",
                        help="image files (JPEG, PNG, ...) or folders of them (walked recursively)")
    parser.add_argument("--top", type=int, default=5, help="classes per image, in [1, 1000]")
    parser.add_argument("--preset", default=IMAGENET,
                        help="an ImageNet classification preset (default: the shipped "
                             f"{IMAGENET}; list them with mobilenet-zoo presets)")
    cli.add_image_flags(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not 1 <= args.top <= 1000:
        parser.error(f"--top must be in [1, 1000] (ImageNet has 1000 classes), got {args.top}")
    cli.check_image_flags(parser, args)
    cli.check_preset(args.preset, "classify")  # from its metadata: before Keras loads
    items, skipped, notes = cli.collect(args.images)
    return cli.run_guarded(lambda: _run(args, items, skipped, notes))


def _run(args, items, skipped, notes) -> int:
    total = len(items) + len(skipped)
    start_backend(check_only=not items)  # after the cheap checks: they answer before Keras loads
    if not items:  # every input missing or without images: no model to load
        return cli.report(skipped, total, notes)
    from mobilenet_zoo.imagenet import _model, classify
    from mobilenet_zoo.images import ImageError, ImageTooLarge, load_rgb

    preset = args.preset
    try:
        _model(preset)  # loaded once here, so a bad preset is a usage error, not N skips
    except (KeyError, ValueError) as err:
        print(f"error: --preset {preset!r}: {err}", file=sys.stderr)
        return cli.EXIT_USAGE
    for item in items:
        try:
            image = load_rgb(item.path, max_pixels=args.max_image_pixels)
            top = classify(image, args.top, preset)
        except ImageTooLarge as err:
            skipped.append((item.path, f"{_reason(err, item.path)}; raise the limit with "
                                       "--max-image-pixels N (0 = none) if you trust the file"))
            continue
        except ImageError as err:  # unreadable: say which, go on with the others
            skipped.append((item.path, _reason(err, item.path)))
            continue
        except Exception as err:  # noqa: BLE001  one bad item never stops the batch
            skipped.append((item.path, f"{type(err).__name__}: {err}"))
            continue
        print(item.path)
        for rank, (synset, name, score) in enumerate(top, 1):
            print(f"  {rank}. {name:30s} {score:.4f}  ({synset})")
        sys.stdout.flush()
    return cli.report(skipped, total, notes)


def _reason(err: Exception, path: str) -> str:
    return str(err).removeprefix(path + ": ")


if __name__ == "__main__":
    raise SystemExit(main())
