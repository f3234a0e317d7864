"""What the batch CLIs (``detect``, ``classify``) share, importable before TensorFlow.

Nothing here imports TensorFlow or Keras, so a CLI builds its parser, answers
``--help`` and rejects a bad command line at once, then loads the models.

The promises of a batch CLI:

- exit code 0: every input done; 1: some inputs skipped (each named on stderr,
  with the reason); 2: usage error (nothing was run); 3: fatal error (the run
  stopped; outputs already written are complete);
- inputs are never modified: ``--out`` inside (or equal to) an input folder is a
  usage error, and so is any output that would land on an input file;
- folders are walked recursively (sorted; hidden entries, such as half-written
  temporary files, skipped); one output per image, named by its path under the
  input folder, a counter (``-2``, ``-3`` ...) where two inputs would share a name;
- one unreadable, oversized or failing image is skipped and the batch goes on.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from mobilenet_zoo.images import IMAGE_SUFFIXES

EXIT_OK, EXIT_SKIPPED, EXIT_USAGE, EXIT_FATAL = 0, 1, 2, 3
EXIT_CODES_HELP = ("exit codes: 0 all inputs done; 1 some inputs skipped (listed on stderr); "
                   "2 usage error (nothing was run); 3 fatal error (the run stopped)")
# PIL's default Image.MAX_IMAGE_PIXELS (PIL docs, Image.open: "DecompressionBombWarning
# ... if the number of pixels in an image is over a certain limit, MAX_IMAGE_PIXELS").
PIL_DEFAULT_MAX_PIXELS = int(1024 * 1024 * 1024 // 4 // 3)


@dataclass(frozen=True)
class Item:
    """One image to process: its path and its output name (relative, no suffix)."""

    path: str
    name: str


def add_image_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--max-image-pixels", type=int, default=PIL_DEFAULT_MAX_PIXELS, metavar="N",
        help="skip images with more than N pixels (default: PIL's decompression-bomb limit, "
             f"Image.MAX_IMAGE_PIXELS = {PIL_DEFAULT_MAX_PIXELS:,}); 0 = no limit")


def check_image_flags(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.max_image_pixels < 0:
        parser.error(f"--max-image-pixels must be >= 0 (0 = no limit), got {args.max_image_pixels}")


def collect(inputs: Iterable[str]) -> tuple[list[Item], list[tuple[str, str]], list[str]]:
    """(images to process, skipped (path, reason), notes) for files and folders.

    A folder is walked recursively; its images are named by their path under it.
    A file given by name is tried whatever its suffix; in a folder, only files with
    an image suffix (``IMAGE_SUFFIXES``) are taken, the others counted in a note.
    """
    items, skipped, notes = [], [], []
    for given in inputs:
        if os.path.isdir(given):
            found, other = _walk(Path(given))
            items += [Item(str(p), str(p.relative_to(given).with_suffix(""))) for p in found]
            if other:
                notes.append(f"{given}: {other} file(s) without an image suffix "
                             f"({', '.join(IMAGE_SUFFIXES)}) not read")
            if not found:
                skipped.append((given, "no image files in this folder or its sub-folders"))
        elif os.path.isfile(given):
            items.append(Item(given, Path(given).stem))
        elif os.path.lexists(given):
            skipped.append((given, "not a regular file or folder"))
        else:
            skipped.append((given, "no such file or folder"))
    seen: set[str] = set()
    unique = []
    for item in items:  # `detect a.jpg a.jpg`, or a folder and a file inside it: once
        key = os.path.realpath(item.path)
        if key not in seen:
            seen.add(key)
            unique.append(item)
    return unique, skipped, notes


def _walk(root: Path) -> tuple[list[Path], int]:
    found, other = [], 0
    for folder, dirs, files in os.walk(root):  # followlinks=False: no cycles
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue
            if name.lower().endswith(IMAGE_SUFFIXES):
                found.append(Path(folder) / name)
            else:
                other += 1
    return found, other


def output_paths(items: list[Item], out: str, suffix: str) -> dict[str, str]:
    """``{input path: output path}``, unique: ``name + suffix`` under ``out``, then
    ``name-2 + suffix`` ... where names collide (``a.jpg`` and ``a.png``)."""
    taken, paths = set(), {}
    for item in items:
        candidate, n = item.name + suffix, 1
        while os.path.normcase(candidate) in taken:
            n += 1
            candidate = f"{item.name}-{n}{suffix}"
        taken.add(os.path.normcase(candidate))
        paths[item.path] = os.path.join(out, candidate)
    return paths


def _real(path: str) -> str:
    return os.path.normcase(os.path.realpath(path))


def check_out(parser: argparse.ArgumentParser, out: str, inputs: list[str],
              outputs: Iterable[str] = ()) -> None:
    """Usage error (exit 2) if ``out`` is a file, is or lies inside an input folder,
    or if any output path is an input file."""
    if os.path.exists(out) and not os.path.isdir(out):
        parser.error(f"--out {out} is an existing file; --out takes a folder (created if missing)")
    real_out = _real(out)
    for given in inputs:
        if os.path.isdir(given):
            root = _real(given)
            if real_out == root or real_out.startswith(root.rstrip(os.sep) + os.sep):
                parser.error(
                    f"--out {out} is inside the input folder {given}: the outputs would be written "
                    "among the inputs (and read as inputs by the next run). Choose a folder outside "
                    "every input folder.")
    input_files = {_real(i) for i in inputs if os.path.isfile(i)}
    for given in inputs:
        if os.path.isdir(given):
            input_files |= {_real(str(p)) for p in _walk(Path(given))[0]}
    for path in outputs:
        if _real(path) in input_files:
            parser.error(f"the output {path} would overwrite the input file of the same name; "
                         "choose another --out")


def report(skipped: list[tuple[str, str]], total: int, notes: list[str] = ()) -> int:
    """Prints the notes and the skipped inputs on stderr; returns the exit code."""
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    if not skipped:
        return EXIT_OK
    print(f"skipped {len(skipped)} of {total} input(s):", file=sys.stderr)
    for path, why in skipped:
        print(f"  {path}: {why}", file=sys.stderr)
    return EXIT_SKIPPED


def run_guarded(body: Callable[[], int]) -> int:
    """``body()``; an unexpected exception is fatal: its traceback, then exit code 3."""
    try:
        return body()
    except (SystemExit, KeyboardInterrupt):
        raise
    except Exception as err:  # noqa: BLE001  the promise: a fatal error exits 3, with its traceback
        import traceback

        traceback.print_exc()
        print(f"fatal: {type(err).__name__}: {err}", file=sys.stderr)
        return EXIT_FATAL
