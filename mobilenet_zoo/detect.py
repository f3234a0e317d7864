"""``python -m mobilenet_zoo.detect``: the same as ``mobilenet-zoo detect`` (mobilenet_zoo.cli.detect)."""

from mobilenet_zoo.cli.detect import main

if __name__ == "__main__":
    raise SystemExit(main())
