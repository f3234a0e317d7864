"""``python -m mobilenet_zoo.convert``."""

from mobilenet_zoo.convert import main

raise SystemExit(main())
