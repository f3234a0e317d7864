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

Modules: ``strategy`` (strategies, chief-only writes), ``checkpoints`` (backups,
resume, retained checkpoints), ``identity`` (what makes two runs the same),
``run`` (the run context, the loop, the finish step).
"""

from mobilenet_zoo.flags import (  # noqa: F401  re-exported: the recipes' flags, TF-free
    KEEP_CHECKPOINTS,
    RUN_CONTROL_FLAGS,
    SMOKE_SUFFIX,
    STRATEGIES,
    ExportOptions,
    RunOptions,
    add_common_flags,
    add_config_flags,
    add_model_flags,
    config_from_args,
    run_options,
)
from mobilenet_zoo.training.checkpoints import (  # noqa: F401
    AtomicBackupAndRestore,
    Interrupted,
    RaiseAtStep,
    RetainedCheckpoint,
    resume_epoch,
    skip_done_epochs,
)
from mobilenet_zoo.training.identity import (  # noqa: F401
    IDENTITY_FILE,
    RunMismatchError,
    check_run_identity,
    data_fingerprint,
    identity_of,
    read_run_identity,
)
from mobilenet_zoo.training.run import (  # noqa: F401
    DataChoice,
    Fitted,
    RunContext,
    TaskReport,
    finish,
    fit,
    save_model,
    standard_callbacks,
    tfds_data,
    write_results,
)
from mobilenet_zoo.training.strategy import get_strategy, is_chief, output_dir  # noqa: F401
