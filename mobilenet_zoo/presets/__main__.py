"""``python -m mobilenet_zoo.presets``: list the presets, or ``fetch`` one."""

from mobilenet_zoo.presets.cli import main

raise SystemExit(main())
