"""Training machinery shared by the recipes: run context, strategy, callbacks, results.

Each recipe parses its own flags plus ``flags.add_common_flags`` and turns them
into values (``flags.run_options``); ``RunContext.start`` makes the
``tf.distribute`` strategy and the output folder (the chief's ``--out``), and
``RunContext.callbacks`` the standard callbacks: progress bar, TensorBoard, the
last and best epochs' checkpoints (``--keep-checkpoints``), ``--resume`` through
``AtomicBackupAndRestore`` for a run of the same identity (configuration and
data, ``check_run_identity``), a clear stop at the first non-finite loss, a CSV
log. ``fit`` and ``finish`` are the training loop and the end (evaluate, save,
draw, export, ``results.json`` beside the paper's number) of the detection and
segmentation recipes.

Modules (import the one you need; this package imports none of them, so
``mobilenet_zoo.training.flags`` builds a recipe's parser before Keras loads):
``flags`` (recipe flags and the plain values they become), ``schedule``
(per-recipe schedules), ``strategy`` (strategies, chief-only writes), ``checkpoints`` (backups,
resume, retained checkpoints), ``identity`` (what makes two runs the same),
``run`` (the run context, the loop, the finish step; it also re-exports what recipes use
from the others), and the experiments: ``classification`` (the classifier trainer),
``tradeoff``, ``transfer``, ``evaluate``, ``detection``, ``segmentation``, ``geo``; and
``finetune`` and ``finetune_segmenter`` (a preset on the user's labelled photos) with their
``report``.
"""

_SUBMODULES = ("flags", "config", "schedule", "strategy", "checkpoints", "identity", "run",
               "classification", "tradeoff", "transfer", "evaluate", "detection", "segmentation",
               "geo", "finetune", "finetune_segmenter", "report")


def __getattr__(name: str):
    """Only reached for a name this package does not define: it says where names went."""
    if name.startswith("__") or name in _SUBMODULES:  # a submodule not imported yet: the import system's
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    raise AttributeError(
        f"module {__name__!r} has no attribute {name!r}: mobilenet_zoo.training re-exports nothing; "
        f"the run context, fit / finish and what recipes use are in mobilenet_zoo.training.run "
        f"(from mobilenet_zoo.training import run as training; training.{name}), flags in "
        "mobilenet_zoo.training.flags.")
