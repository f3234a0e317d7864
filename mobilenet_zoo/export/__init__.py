"""Export to the phone and to servers, in one package:

* ``tflite``: ``to_tflite``, ``export_saved_model`` and ``TFLiteRunner``, through the
  task's one serving path (``Task.serving_function``);
* ``checks``: what the exporters refuse and why (target files, post-processing,
  representative data, metadata);
* ``ssd_postprocess``: an SSD's serving function with TFLite's
  ``TFLite_Detection_PostProcess`` op (the TF OD API's ``export_tflite_ssd_graph.py``);
* ``metadata``: the TFLite Metadata (labels, normalisation, detection layout) that
  MediaPipe Tasks and phone runtimes read;
* the command line is ``mobilenet-zoo export`` (``mobilenet_zoo.cli.export``).
"""


from __future__ import annotations

from typing import TYPE_CHECKING

from mobilenet_zoo.lazy import lazy_dir, lazy_getattr

if TYPE_CHECKING:  # loaded on first use, so `python -m mobilenet_zoo.export --help` needs no Keras
    from mobilenet_zoo.export.checks import POSTPROCESS
    from mobilenet_zoo.export.tflite import QUANTIZE, TFLiteRunner, export_saved_model, to_tflite

__all__ = ["POSTPROCESS", "QUANTIZE", "TFLiteRunner", "export_saved_model", "to_tflite"]

__getattr__ = lazy_getattr(__name__, {
    "POSTPROCESS": "mobilenet_zoo.export.checks",
    **{name: "mobilenet_zoo.export.tflite"
       for name in ("QUANTIZE", "TFLiteRunner", "export_saved_model", "to_tflite")},
})
__dir__ = lazy_dir(globals())
