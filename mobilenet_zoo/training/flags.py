"""Recipe flags, importable before TensorFlow: each recipe builds its parser from
these, so ``python recipes/X.py --help`` and usage errors answer at once
(``mobilenet_zoo.training`` re-exports them; nothing here imports TF or Keras).

This is the one place that reads an ``argparse.Namespace``: ``run_options``,
``train_flags``, ``detection_data`` and ``export_options`` turn parsed flags into
plain dataclasses, which is all the library receives.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from mobilenet_zoo.training.config import (  # noqa: F401  (re-exported: what the flags become)
    ClassificationConfig,
    DetectionData,
    ExportOptions,
    RunOptions,
)
from mobilenet_zoo.training.schedule import Schedules, TrainFlags

STRATEGIES = ("default", "mirrored", "multiworker", "tpu")


def progress_verbose(requested: int | None = None) -> int:
    """Keras ``verbose`` for fit/evaluate: ``requested``, else 1 (animated progress
    bar) when stdout is a terminal and 2 (one line per epoch) otherwise.

    Keras 3's ``Progbar`` redraws with ``\\r`` and backspaces whenever ``posix`` is
    in ``sys.modules`` (keras/src/utils/progbar.py, ``_dynamic_display``), i.e. also
    when stdout is a file or a pipe; those bytes would fill a log file.
    """
    if requested is not None:
        return requested
    stdout = sys.stdout
    return 1 if hasattr(stdout, "isatty") and stdout.isatty() else 2


def recipe_parser(doc: str) -> argparse.ArgumentParser:
    """A recipe's parser: its module docstring (usage examples kept as written) as the description."""
    return argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)


def add_model_flags(
    parser: argparse.ArgumentParser, image_size: int | None, weights: str | None = "imagenet",
    alpha: float = 1.0, image_size_help: str = "",
) -> None:
    """``--alpha``, ``--image-size`` and (unless ``weights`` is None) ``--weights``:
    one flag name per idea in every recipe; resolve ``--weights`` with
    ``mobilenet_zoo.presets.resolve_weights``. ``image_size`` None: the flag's
    default is None (the recipe's schedule or the model builder decides, as
    ``image_size_help`` says)."""
    g = parser.add_argument_group("model")
    g.add_argument("--alpha", type=float, default=alpha, help="backbone width multiplier (paper s.3.3)")
    g.add_argument("--image-size", type=int, default=image_size,
                   help="input side in pixels" + (f" {image_size_help}" if image_size_help else ""))
    if weights is not None:
        g.add_argument("--weights", default=weights,
                       help="backbone init: imagenet (the published weights of --alpha at "
                            "--image-size, else 224; 1.0-224 ships, others download once), "
                            "scratch, a preset name or a weights file")


SMOKE_SUFFIX = "-smoke"
KEEP_CHECKPOINTS = ("last-best", "last", "all", "none")
#: Flags that say how to run, not what is trained: left out of a run's identity.
# Flags that do not change what a run is: where it writes, how it runs, and how many
# epochs it goes to (`--resume` with a larger --epochs extends the same run, as Keras'
# `initial_epoch` does; the learning-rate schedules here decay per step, not per run length).
RUN_CONTROL_FLAGS = ("out", "resume", "overwrite", "strategy", "tpu", "verbose", "keep_checkpoints", "epochs")


class _DefaultOut(str):
    """The default ``--out``: a str that ``--smoke`` may still redirect."""


class _SmokeAction(argparse.Action):
    """``--smoke``, which also moves a default ``--out`` to ``<default>-smoke``, so mock
    results never share a folder (or a ``--resume``) with a real run. An explicit
    ``--out`` is kept, before or after ``--smoke``."""

    def __init__(self, option_strings, dest, default=False, required=False, help=None):
        super().__init__(option_strings, dest, nargs=0, default=default, required=required, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, True)
        out = getattr(namespace, "out", None)
        if isinstance(out, _DefaultOut) and not out.endswith(SMOKE_SUFFIX):
            namespace.out = _DefaultOut(out + SMOKE_SUFFIX)


def add_common_flags(parser: argparse.ArgumentParser, out_default: str) -> None:
    """Flags every recipe has (documented in ``--help``), read back by ``run_options``;
    ``training.RunContext.start(run_options(args))`` honours them all."""
    g = parser.add_argument_group("run")
    g.add_argument("--out", default=_DefaultOut(out_default),
                   help="output directory (checkpoints, logs, results)")
    g.add_argument("--resume", action="store_true",
                   help="continue an interrupted run from the backup in --out (model, optimizer, epoch); "
                        "refused when --out holds a run of another configuration or data")
    g.add_argument("--overwrite", action="store_true",
                   help="replace the earlier run in --out (its backups, checkpoints, logs and results "
                        "are removed first); without --resume or --overwrite a run into a folder "
                        "that holds a run is refused, nothing changed")
    g.add_argument("--strategy", choices=STRATEGIES, default="default",
                   help="tf.distribute strategy; the global batch is split across replicas")
    g.add_argument("--tpu", default="", help="TPU address for --strategy tpu")
    g.add_argument("--seed", type=int, default=0, help="random seed")
    g.add_argument("--smoke", action=_SmokeAction,
                   help="a few steps on tfds.testing.mock_data to check the plumbing "
                        f"(default --out: {out_default}{SMOKE_SUFFIX}, apart from real runs)")
    g.add_argument("--keep-checkpoints", choices=KEEP_CHECKPOINTS, default="last-best",
                   help="per-epoch weights kept in OUT/checkpoints: last-best (the last epoch's and "
                        "the best by val_loss, else loss), last, all (every epoch), none")
    g.add_argument("--verbose", type=int, default=progress_verbose(), choices=(0, 1, 2),
                   help="Keras verbosity: 1 progress bar, 2 one line per epoch (default: 1 on a "
                        "terminal, 2 when stdout is a file or a pipe, so logs get no progress-bar "
                        "redraws)")


YES = ("true", "yes", "1", "on")
NO = ("false", "no", "0", "off")


def yes_no(text: str) -> bool:
    """An argparse ``type`` for yes/no flags: true/false, yes/no, 1/0, on/off (any case);
    anything else (``Y``, ``flase``) is a usage error, never silently False."""
    word = str(text).strip().lower()
    if word in YES:
        return True
    if word in NO:
        return False
    raise argparse.ArgumentTypeError(
        f"expected one of {'/'.join(YES)} or {'/'.join(NO)}, got {text!r}")


# ----------------------------------------------------------------------------
# Flags mirrored from one config object
# ----------------------------------------------------------------------------
def add_config_flags(parser: argparse.ArgumentParser, config, exclude: tuple[str, ...] = ()) -> None:
    """One ``--flag`` per dataclass field (but ``exclude``), its default the field's,
    its help the field's ``metadata["help"]`` (which says where the default comes from)."""
    import dataclasses

    g = parser.add_argument_group(f"hyperparameters ({type(config).__name__})")
    for f in dataclasses.fields(config):
        if f.name in exclude:
            continue
        default = getattr(config, f.name)
        flag = "--" + f.name.replace("_", "-")
        helptext = f"{f.metadata.get('help', '')} (default: {default})"
        if isinstance(default, bool):
            g.add_argument(flag, type=yes_no, default=default, help=helptext, metavar="BOOL")
        elif "choices" in f.metadata:
            g.add_argument(flag, type=type(default), default=default, choices=f.metadata["choices"],
                           help=helptext)
        else:
            kind = type(default) if default is not None else str
            g.add_argument(flag, type=kind, default=default, help=helptext)


def config_from_args(config_cls, args: argparse.Namespace):
    """The config dataclass filled from parsed flags."""
    import dataclasses

    return config_cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(config_cls)})


# The detection recipes' data and evaluation flags (recipes/ssd_coco.py, faster_rcnn_coco.py).
def add_detection_data_flags(p: argparse.ArgumentParser) -> None:
    d = p.add_argument_group("data")
    d.add_argument("--dataset", choices=["auto", "coco", "voc", "embedded"], default="auto",
                   help="auto: TFDS coco/2017 when prepared under --data-dir, else the embedded set")
    d.add_argument("--data-dir", default=None,
                   help="TFDS data dir (default $TFDS_DATA_DIR or ~/tensorflow_datasets), or a folder "
                        "labelled as COCO JSON, Pascal VOC or YOLO (see --format)")
    d.add_argument("--train-split", default=None, help="TFDS split (coco: train, voc: train+validation)")
    d.add_argument("--eval-split", default=None, help="TFDS split (coco: validation, voc: test)")
    d.add_argument("--embedded-train", type=int, default=600, help="images in the embedded train split")
    d.add_argument("--embedded-val", type=int, default=100, help="images in the embedded val split")
    d.add_argument("--format", choices=["auto", "coco", "voc", "yolo"], default="auto",
                   help="the layout of a labelled folder in --data-dir: COCO JSON, Pascal VOC "
                        "(Annotations/, JPEGImages/, ImageSets/Main/) or YOLO (data.yaml, labels/); "
                        "auto: detected")
    d.add_argument("--skip-bad-labels", action="store_true",
                   help="drop boxes and images whose labels are wrong (outside the image, inverted, "
                        "unknown class, unreadable image) and say how many; default: list them all "
                        "and train nothing")


def add_detection_eval_flags(p: argparse.ArgumentParser) -> None:
    e = p.add_argument_group("evaluation and export")
    e.add_argument("--eval-batches", type=int, default=None, help="evaluate on this many batches only")
    e.add_argument("--no-tflite", action="store_true", help="skip the TFLite export")
    e.add_argument("--quantize", choices=["none", "dynamic", "float16"], default="none")


def detection_parser(description: str, out_default: str, schedules: Schedules, builder: str,
                     optimizer_title: str) -> tuple[argparse.ArgumentParser, Any, Any]:
    """The detection recipes' parser: data, model (``--image-size`` None: ``builder``'s),
    optimizer and schedule (``schedules``), ``--freeze-until``, evaluation and the
    common flags. Returns (parser, model group, optimizer group) for each recipe's own."""
    p = recipe_parser(description)
    add_detection_data_flags(p)
    model = p.add_argument_group(f"model (defaults: {builder}'s, the TF OD API config's)")
    optimizer = add_schedule_flags(p, schedules, optimizer_title)
    optimizer.add_argument(
        "--freeze-until", choices=["none", "P1", "P2", "P3", "P4"], default=None,
        help="freeze the pretrained backbone up to this pyramid level " + schedules.help(
            "freeze_until", "(with pretrained weights)"))
    add_detection_eval_flags(p)
    add_model_flags(p, image_size=None, image_size_help=f"(default: {builder}'s)")
    add_common_flags(p, out_default)
    return p, model, optimizer


def detection_data(args: argparse.Namespace) -> DetectionData:
    return _fill(DetectionData, args)


# ----------------------------------------------------------------------------
# The training loop's flags, with defaults from a recipe's Schedules
# ----------------------------------------------------------------------------
def add_learning_rate_flag(group, default: float | None, help: str) -> None:
    """``--learning-rate`` (every recipe's name for it), with ``--lr`` as a hidden
    alias of the same value (the name some recipes used before)."""
    group.add_argument("--learning-rate", type=float, default=default, help=help)
    group.add_argument("--lr", dest="learning_rate", type=float, default=argparse.SUPPRESS,
                       help=argparse.SUPPRESS)


def add_schedule_flags(parser: argparse.ArgumentParser, schedules: Schedules, title: str,
                       learning_rate_help: str = "learning rate") -> argparse._ArgumentGroup:
    """``--epochs``, ``--batch-size``, ``--learning-rate``, ``--steps-per-epoch``, each
    None by default: the ``Schedule`` of the data the run gets decides (the help
    lists them). Read back by ``train_flags``. Returns the group (for more flags)."""
    g = parser.add_argument_group(title)
    g.add_argument("--batch-size", type=int, default=None, help=schedules.help("batch_size", "global batch"))
    add_learning_rate_flag(g, None, schedules.help("learning_rate", learning_rate_help))
    g.add_argument("--epochs", type=int, default=None, help=schedules.help("epochs"))
    g.add_argument("--steps-per-epoch", type=int, default=None, help=schedules.help("steps_per_epoch"))
    return g


def train_flags(args: argparse.Namespace) -> TrainFlags:
    """The training-loop flags as given (absent ones None)."""
    return _fill(TrainFlags, args)


def export_options(args: argparse.Namespace) -> ExportOptions:
    quantize = getattr(args, "quantize", "none")
    return ExportOptions(eval_batches=getattr(args, "eval_batches", None),
                         tflite=not getattr(args, "no_tflite", False),
                         quantize=None if quantize in (None, "none") else quantize,
                         argmax=getattr(args, "tflite_argmax", False))


# ----------------------------------------------------------------------------
# The run's flags (add_common_flags) as one value
# ----------------------------------------------------------------------------
def run_options(args: argparse.Namespace) -> RunOptions:
    """``RunOptions`` from parsed flags (``flags``: a copy of all of them)."""
    options = _fill(RunOptions, args, skip=("flags",))
    options.flags = dict(vars(args))
    return options


def _fill(cls, args: argparse.Namespace, skip: tuple[str, ...] = ()):
    """``cls`` from the flags that name its fields (absent flags: the field's default)."""
    import dataclasses

    names = {f.name for f in dataclasses.fields(cls)} - set(skip)
    return cls(**{k: v for k, v in vars(args).items() if k in names})


# The classification recipes' hyperparameters (their flags mirror its fields; used
# by mobilenet_zoo.training.classification, which re-exports it).
def parse_point(text: str) -> tuple[float, int]:
    """``"0.5@48"`` -> (0.5, 48); a clear ValueError otherwise."""
    try:
        alpha, size = text.split("@")
        return float(alpha), int(size)
    except ValueError:
        raise ValueError(f"a seed point is ALPHA@SIZE (e.g. 0.5@48), got {text!r}.") from None
