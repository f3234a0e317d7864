"""``python -m mobilenet_zoo.convert``: the same as ``mobilenet-zoo convert``."""

from mobilenet_zoo.cli.convert import main

raise SystemExit(main())
