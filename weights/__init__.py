"""Shipped pretrained weights (installed as ``mobilenet_zoo/weights`` by the wheel).

See ``manifest.json`` and ``mobilenet_zoo.presets``."""
