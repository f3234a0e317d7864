"""``python -m mobilenet_zoo.presets``: the table of presets."""

from mobilenet_zoo.presets import main

raise SystemExit(main())
