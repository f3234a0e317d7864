"""``python -m mobilenet_zoo``: the ``mobilenet-zoo`` command."""

from mobilenet_zoo.cli import main

raise SystemExit(main())
