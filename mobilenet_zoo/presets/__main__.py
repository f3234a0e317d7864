"""``mobilenet-zoo presets``: list the presets, or ``fetch`` one."""

from mobilenet_zoo.cli.presets import main

raise SystemExit(main())
