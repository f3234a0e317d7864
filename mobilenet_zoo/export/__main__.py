"""``python -m mobilenet_zoo.export``: the same as ``mobilenet-zoo export``."""

from mobilenet_zoo.cli.export import main

raise SystemExit(main())
