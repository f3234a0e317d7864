"""``python -m mobilenet_zoo.classify``: the same as ``mobilenet-zoo classify`` (mobilenet_zoo.cli.classify)."""

from mobilenet_zoo.cli.classify import main

if __name__ == "__main__":
    raise SystemExit(main())
