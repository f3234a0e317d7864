"""``mobilenet-zoo``: one command for the package's jobs.

    mobilenet-zoo presets [fetch NAME]     list the presets, or install a published one
    mobilenet-zoo detect PHOTOS...         run a detector, write annotated PNGs
    mobilenet-zoo classify PHOTOS...       ImageNet top-5 of photos
    mobilenet-zoo export --preset NAME     write a TFLite file with its metadata
    mobilenet-zoo convert SRC --out FILE   convert TF-slim / keras.applications / TF OD API weights
    mobilenet-zoo finetune detector DATA   your labelled photos -> model, phone files, report

Each sub-command module parses its flags first and imports Keras and TensorFlow
inside its command function, so ``--help`` and usage errors answer at once.
``python -m mobilenet_zoo.<command>`` runs the same code.

No command replaces a file it did not write unless ``--overwrite`` is given (a
batch output takes the next free name, a single ``--out`` is refused), and a
preset of another task is refused, naming the command that runs it
(``common.check_preset``).
"""

from __future__ import annotations

import importlib
import sys

from mobilenet_zoo.backend import BackendError, check_backend, prepare_backend

# Sub-command -> (module under mobilenet_zoo.cli, one-line summary).
COMMANDS: dict[str, tuple[str, str]] = {
    "presets": ("presets", "list the presets (shipped, cached, published), or `fetch NAME` one"),
    "detect": ("detect", "run a detector on photos: JSON lines and annotated PNGs"),
    "classify": ("classify", "ImageNet top-5 classes of photos"),
    "export": ("export", "export a preset or a .keras model to a TFLite file (with metadata)"),
    "convert": ("convert", "convert TF-slim, keras.applications or TF OD API weights"),
    "finetune": ("finetune", "fine-tune a preset on your labelled photos; export and report"),
}


def _usage() -> str:
    lines = ["usage: mobilenet-zoo [--help | --version] COMMAND [ARGS...]",
             "       (mobilenet-zoo COMMAND --help for its flags)",
             "", "MobileNet v1 (Howard et al. 2017) for Keras 3.", "", "commands:"]
    lines += [f"  {name:<10} {summary}" for name, (_, summary) in COMMANDS.items()]
    return "\n".join(lines) + "\n"


def start_backend(check_only: bool = False) -> None:
    """``backend.prepare_backend()`` for a sub-command, after its flags are parsed: a
    ``KERAS_BACKEND`` that names no backend is a usage error (one line, exit 2).
    ``check_only``: that check alone, importing nothing (a run with nothing to load)."""
    try:
        check_backend() if check_only else prepare_backend()
    except BackendError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


def main(argv: list[str] | None = None) -> int:
    """Runs ``mobilenet-zoo COMMAND ARGS``; returns the command's exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        sys.stderr.write(_usage() + "\nmobilenet-zoo: error: a command is required\n")
        return 2
    if argv[0] in ("-h", "--help"):
        sys.stdout.write(_usage())
        return 0
    if argv[0] == "--version":
        from mobilenet_zoo.version import __version__

        print(f"mobilenet-zoo {__version__}")
        return 0
    if argv[0] not in COMMANDS:
        sys.stderr.write(_usage() + f"\nmobilenet-zoo: error: unknown command {argv[0]!r}; "
                         f"choose from {', '.join(COMMANDS)}\n")
        return 2
    module = importlib.import_module(f"mobilenet_zoo.cli.{COMMANDS[argv[0]][0]}")
    return module.main(argv[1:])
