"""Recipe flags, importable before TensorFlow: each recipe builds its parser from
these, so ``python recipes/X.py --help`` and usage errors answer at once
(``mobilenet_zoo.training`` re-exports them; nothing here imports TF or Keras).
"""

from __future__ import annotations

import argparse

from mobilenet_zoo.cli import progress_verbose

STRATEGIES = ("default", "mirrored", "multiworker", "tpu")


def add_model_flags(
    parser: argparse.ArgumentParser, image_size: int, weights: str | None = "imagenet",
    alpha: float = 1.0,
) -> None:
    """``--alpha``, ``--image-size`` and (unless ``weights`` is None) ``--weights``:
    one flag name per idea in every recipe; resolve ``--weights`` with
    ``mobilenet_zoo.presets.resolve_weights``."""
    g = parser.add_argument_group("model")
    g.add_argument("--alpha", type=float, default=alpha, help="backbone width multiplier (paper s.3.3)")
    g.add_argument("--image-size", type=int, default=image_size, help="input side in pixels")
    if weights is not None:
        g.add_argument("--weights", default=weights,
                       help="backbone init: imagenet (shipped preset, alpha 1.0), scratch, a preset "
                            "name or a weights file")


SMOKE_SUFFIX = "-smoke"
KEEP_CHECKPOINTS = ("last-best", "last", "all", "none")
#: Flags that say how to run, not what is trained: left out of a run's identity.
RUN_CONTROL_FLAGS = ("out", "resume", "strategy", "tpu", "verbose", "keep_checkpoints")


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
    """Flags every recipe has (documented in ``--help``); pass ``callbacks_for(args)``
    to ``fit`` to honour ``--resume`` and ``--keep-checkpoints``."""
    g = parser.add_argument_group("run")
    g.add_argument("--out", default=_DefaultOut(out_default),
                   help="output directory (checkpoints, logs, results)")
    g.add_argument("--resume", action="store_true",
                   help="continue an interrupted run from the backup in --out (model, optimizer, epoch); "
                        "refused when --out holds a run of another configuration or data")
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
            g.add_argument(flag, type=lambda s: s.lower() in ("1", "true", "yes"), default=default,
                           help=helptext, metavar="BOOL")
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
