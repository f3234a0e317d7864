"""What the batch CLIs (``detect``, ``classify``) share, importable before TensorFlow.

Nothing here imports TensorFlow or Keras, so a CLI builds its parser, answers
``--help`` and rejects a bad command line at once, then loads the models.

The promises of a batch CLI:

- exit code 0: every input done; 1: some inputs skipped (each named on stderr,
  with the reason); 2: usage error (nothing was run); 3: fatal error (the run
  stopped; outputs already written are complete);
- inputs are never modified: ``--out`` inside (or equal to) an input folder is a
  usage error, and so is any output that would land on an input file;
- no existing file is replaced unless ``--overwrite`` is given: an output whose
  name is taken by a file this run did not write gets the next free counter
  (``photo-2.png``), and the summary says so (``write_new``);
- folders are walked recursively (sorted; hidden entries, such as half-written
  temporary files, skipped); one output per image, named by its path under the
  input folder, a counter (``-2``, ``-3`` ...) where two inputs would share a name;
- one unreadable, oversized or failing image is skipped and the batch goes on;
- a preset is checked from its metadata before Keras is imported
  (``check_preset``): an unknown name, a preset of another task (a detector given
  to ``classify``), a backbone without a head or a remote preset that cannot be
  downloaded is a usage error (exit 2) naming the command that fits;
- an expected error (a download that failed, TensorFlow missing) is one line on
  stderr, exit 3; only an unexpected one prints its traceback; Ctrl-C is one line
  saying what is kept, exit 130 (``run_guarded``);
- the temporary files that a killed run left where this one writes (their writer
  process gone) are removed at start (``remove_stale_temporaries_in``, ``_of``).
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from mobilenet_zoo.files import remove_stale_temporaries
from mobilenet_zoo.hub import presets as hub_presets
from mobilenet_zoo.hub.download import ENV_OFFLINE, DownloadError, HashMismatchError, offline
from mobilenet_zoo.images import IMAGE_SUFFIXES

EXIT_OK, EXIT_SKIPPED, EXIT_USAGE, EXIT_FATAL = 0, 1, 2, 3
# 128 + SIGINT (2): the shell's code for a command stopped by Ctrl-C (bash manual,
# "Exit Status": "128+n" for a command terminated by fatal signal n).
EXIT_INTERRUPTED = 130
EXIT_CODES_HELP = ("exit codes: 0 all inputs done; 1 some inputs skipped (listed on stderr); "
                   "2 usage error (nothing was run); 3 fatal error (the run stopped); "
                   "130 interrupted (Ctrl-C)")
# PIL's default Image.MAX_IMAGE_PIXELS (PIL docs, Image.open: "DecompressionBombWarning
# ... if the number of pixels in an image is over a certain limit, MAX_IMAGE_PIXELS").
PIL_DEFAULT_MAX_PIXELS = int(1024 * 1024 * 1024 // 4 // 3)


@dataclass(frozen=True)
class Item:
    """One image to process: its path and its output name (relative, no suffix)."""

    path: str
    name: str


def add_image_flags(parser: argparse.ArgumentParser) -> None:
    """``--max-image-pixels``: PIL's decompression-bomb limit for the inputs (0 = none)."""
    parser.add_argument(
        "--max-image-pixels", type=int, default=PIL_DEFAULT_MAX_PIXELS, metavar="N",
        help="skip images with more than N pixels (default: PIL's decompression-bomb limit, "
             f"Image.MAX_IMAGE_PIXELS = {PIL_DEFAULT_MAX_PIXELS:,}); 0 = no limit")


def check_image_flags(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Usage error (exit 2) for a negative ``--max-image-pixels``."""
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


def add_overwrite_flag(parser: argparse.ArgumentParser, what: str, batch: bool = True) -> None:
    """``--overwrite``: the one way to let a CLI replace an existing file. ``what``
    names the output; ``batch``: outputs named by the CLI (a taken name gets the next
    counter without the flag), else one file named by the user (refused without it)."""
    default = ("an output whose name is taken gets the next free one, NAME-2 ..." if batch
               else "an existing file is refused, exit 2")
    parser.add_argument("--overwrite", action="store_true",
                        help=f"replace {what} where a file of that name exists (default: no "
                             f"file is replaced; {default})")


def output_paths(items: list[Item], out: str, suffix: str,
                 keep_existing: bool = False) -> dict[str, str]:
    """``{input path: output path}``, unique: ``name + suffix`` under ``out``, then
    ``name-2 + suffix`` ... where names collide (``a.jpg`` and ``a.png``). With
    ``keep_existing``, a name whose file already exists under ``out`` is passed over
    too (the run did not write it, so it is not replaced)."""
    taken, paths = set(), {}
    for item in items:
        candidate, n = item.name + suffix, 1
        while os.path.normcase(candidate) in taken or (
                keep_existing and os.path.lexists(os.path.join(out, candidate))):
            n += 1
            candidate = f"{item.name}-{n}{suffix}"
        taken.add(os.path.normcase(candidate))
        paths[item.path] = os.path.join(out, candidate)
    return paths


def write_new(path: str, write: Callable[[str], object], overwrite: bool = False) -> str:
    """``write(tmp)`` into a hidden temporary file beside ``path``, then moves it to
    ``path``, complete or not at all; returns where the file went.

    Without ``overwrite`` no existing file is replaced, even one that another process
    created after the outputs were named: the file is hard-linked to ``path`` (which
    fails if the name is taken, atomically) or, that taken, to ``NAME-2``, ``NAME-3`` ...
    With ``overwrite`` it replaces ``path`` (``os.replace``, atomic).
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    stem, suffix = os.path.splitext(path)
    tmp = os.path.join(directory, f".{os.path.basename(path)}.tmp-{os.getpid()}{suffix}")
    try:
        write(tmp)  # `write` writes tmp itself: one temporary per output, never a nested one
        with open(tmp, "rb") as f:  # on disk before its name appears (files.atomic_write)
            os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, path)
            return path
        candidate, n = path, 1
        while True:
            try:
                os.link(tmp, candidate)
                return candidate
            except FileExistsError:
                n += 1
                candidate = f"{stem}-{n}{suffix}"
            except OSError:  # a file system without hard links (FAT, some network shares)
                if os.path.lexists(candidate):
                    n += 1
                    candidate = f"{stem}-{n}{suffix}"
                    continue
                os.replace(tmp, candidate)
                return candidate
    finally:
        if os.path.lexists(tmp):
            os.remove(tmp)


def remove_stale_temporaries_in(folders: Iterable[str]) -> list[str]:
    """Removes the hidden temporary files (``.NAME.tmp-PID.EXT``, ``write_new`` and
    ``files.atomic_write``) that a killed run left in ``folders``, the folders a batch
    writes into; a live writer's file, and every file not hidden, is left alone.
    Returns the removed paths."""
    removed: list[str] = []
    for folder in sorted(set(folders)):
        removed += remove_stale_temporaries(folder, prefix=".")
    return removed


def remove_stale_temporaries_of(path: str) -> list[str]:
    """Removes the temporary files of ``path`` (``PATH.tmp-PID``, as ``to_tflite``
    writes, and ``.NAME.tmp-PID.EXT``, as ``files.atomic_write``) that a killed run left
    beside it, their writer process gone; other files in the folder are not touched."""
    base = os.path.basename(path)
    return remove_stale_temporaries(os.path.dirname(os.path.abspath(path)),
                                    prefix=(f"{base}.tmp-", f".{base}.tmp-"))


def file_in_the_way(path: str) -> str | None:
    """The existing file (not a folder) among ``path``'s parent folders, if any: a
    ``path`` under it cannot be created (``cachefile/x.tflite``)."""
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):
        up = os.path.dirname(parent)
        if up == parent:
            return None
        parent = up
    return None if os.path.isdir(parent) else parent


def renamed_note(wanted: str, written: str) -> str:
    """The summary line for an output written under another name than planned."""
    return (f"{wanted} already exists and was not written by this run: wrote {written} instead "
            "(--overwrite replaces existing files)")


def usage_exit(message: str) -> NoReturn:
    """``error: MESSAGE`` on stderr (one line), exit code 2: nothing was run."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(EXIT_USAGE)


# --- presets, checked from their metadata (no Keras) ---------------------------------
# A preset's task (``weights/manifest.json`` "task"; none, or "MobileNetBackbone", for a
# backbone without a head) -> the sub-command that runs it on photos; what the task is
# ("a detector") is hub.presets.TASK_KINDS, shared with Task.from_preset's check.
COMMAND_OF_TASK: dict[str, str] = {"MobileNetClassifier": "classify", "SSD": "detect", "FasterRCNN": "detect"}
# The tasks each sub-command takes, and what they are (export: any task model with a head).
COMMAND_TASKS: dict[str, tuple[str, ...] | None] = {
    **{command: tuple(t for t, c in COMMAND_OF_TASK.items() if c == command)
       for command in ("classify", "detect")},
    "export": None,
}
IMAGENET_CLASSES = 1000


def preset_task(meta: dict[str, Any]) -> str | None:
    """The preset's task class name; ``None`` for a backbone without a head."""
    task = meta.get("task")
    return None if task in (None, "", "MobileNetBackbone") else str(task)


def _num_classes(meta: dict[str, Any]) -> int | None:
    value = meta.get("num_classes", (meta.get("task_config") or {}).get("num_classes"))
    return int(value) if isinstance(value, (int, float)) else None


def check_preset(name: str, command: str) -> dict[str, Any]:
    """The metadata of preset ``name`` for ``mobilenet-zoo COMMAND``, read without
    Keras; a usage error (one line, exit 2) when the command cannot run it:

    - an unknown name (the closest names are suggested);
    - a preset of another task: ``classify`` takes a classifier of ImageNet's 1000
      classes, ``detect`` a detector (SSD, Faster R-CNN), ``export`` any task model;
      the message names the preset's task and the command that runs it;
    - a backbone-only preset (no task head: nothing to classify, detect or export);
    - a published preset not installed yet, where it cannot be downloaded:
      ``$MOBILENET_ZOO_OFFLINE`` is set, or the command never downloads (export).
    """
    try:
        meta = hub_presets.get_preset(name)
    except ValueError:
        names = hub_presets.list_presets()
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
        hint = f"did you mean {', '.join(close)}?" if close else "no preset has a similar name;"
        usage_exit(f"Unknown preset {name!r} (--preset): {hint} `mobilenet-zoo presets` lists "
                   f"the {len(names)} presets with their tasks.")
    task = preset_task(meta)
    wanted = COMMAND_TASKS[command]
    if task is None:
        doing = {"classify": "classify photos", "detect": "detect objects",
                 "export": "be exported (no task reads its feature maps)"}[command]
        usage_exit(
            f"{name} is a backbone-only preset (MobileNet features, no task head), so it cannot "
            f"{doing}: build a task on it in Python, e.g. MobileNetClassifier(MobileNetBackbone."
            f"from_preset({name!r}), num_classes=N), train it, save it (model.save('FILE.keras')) "
            "and run `mobilenet-zoo export --model FILE.keras --out FILE.tflite`.")
    if wanted is not None and task not in wanted:
        role = hub_presets.TASK_KINDS.get(task, f"a {task} model")
        fits = COMMAND_OF_TASK.get(task)
        classes = _num_classes(meta)
        if fits == "classify" and classes not in (None, IMAGENET_CLASSES):
            # `classify` prints ImageNet's classes only (the check below): not a fit.
            run = (f"it has {classes} classes, not ImageNet's {IMAGENET_CLASSES}, so `mobilenet-zoo "
                   f"classify` does not take it either: load it in Python ({task}.from_preset("
                   f"{name!r})) or export it (`mobilenet-zoo export --preset {name} --out "
                   "FILE.tflite`)")
        elif fits is not None:
            run = f"run `mobilenet-zoo {fits} --preset {name} ...`"
        else:
            run = (f"no command runs it on photos; export it (`mobilenet-zoo export --preset {name} "
                   f"--out FILE.tflite`) or load it in Python ({task}.from_preset({name!r}))")
        usage_exit(f"{name} is {hub_presets.article(task)} {task} preset ({role}): {run}; it is not "
                   f"{hub_presets.TASK_KINDS[wanted[0]]} ({' or '.join(wanted)}), which `mobilenet-zoo "
                   f"{command}` needs (`mobilenet-zoo presets` lists each preset's task).")
    classes = _num_classes(meta)
    if command == "classify" and classes is not None and classes != IMAGENET_CLASSES:
        usage_exit(f"{name} is a classifier of {classes} classes, but `mobilenet-zoo classify` "
                   f"prints ImageNet's {IMAGENET_CLASSES} classes: give it an ImageNet preset "
                   f"(e.g. {hub_presets.IMAGENET}), or load this one in Python "
                   f"(MobileNetClassifier.from_preset({name!r})).")
    if meta.get("location") == "remote":
        url = ((meta.get("sources") or [{}])[0]).get("url") or "its published file"
        try:
            no_network = command == "export" or offline()
        except ValueError as err:  # $MOBILENET_ZOO_OFFLINE set to a word that means neither
            usage_exit(str(err))
        if no_network and command == "export":
            usage_exit(f"preset {name} is not installed and export reads nothing from the "
                       f"network: install it first with `mobilenet-zoo presets fetch {name}` "
                       f"(downloads {url}), or `mobilenet-zoo presets fetch {name} --from FILE` "
                       "with that file downloaded elsewhere.")
        if no_network:
            usage_exit(f"preset {name} is not installed and ${ENV_OFFLINE} is set, so it cannot "
                       f"be downloaded: download {url} elsewhere and run `mobilenet-zoo presets "
                       f"fetch {name} --from FILE`, or unset {ENV_OFFLINE}.")
    return meta


def _real(path: str) -> str:
    return os.path.normcase(os.path.realpath(path))


def check_out(parser: argparse.ArgumentParser, out: str, inputs: list[str],
              outputs: Iterable[str] = ()) -> None:
    """Usage error (exit 2) if ``out`` is a file, is or lies inside an input folder,
    or if any output path is an input file."""
    if os.path.exists(out) and not os.path.isdir(out):
        parser.error(f"--out {out} is an existing file; --out takes a folder (created if missing)")
    blocker = file_in_the_way(out)
    if blocker is not None:
        parser.error(f"--out {out} cannot be created: {blocker} is a file, not a folder; "
                     "choose an --out outside it")
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


def report(skipped: list[tuple[str, str]], total: int, notes: list[str] = (),
           renamed: int = 0) -> int:
    """Prints the notes and the skipped inputs on stderr, then, last, how many outputs
    got a new name because theirs was taken (``renamed``); returns the exit code."""
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    if skipped:
        print(f"skipped {len(skipped)} of {total} input(s):", file=sys.stderr)
        for path, why in skipped:
            print(f"  {path}: {why}", file=sys.stderr)
    if renamed:
        print(f"{renamed} output(s) written under a new name (NAME-2 ...) because the name was "
              "taken by a file this run did not write; pass --overwrite to replace them",
              file=sys.stderr)
    return EXIT_SKIPPED if skipped else EXIT_OK


# Errors raised where Keras or TensorFlow is loaded, by (module, class): they count once
# their module is imported (importing it here would load Keras; before, none is raised).
_LATE_EXPECTED = (("mobilenet_zoo.tensorflow_support", "TensorFlowRequiredError"),
                  ("mobilenet_zoo.presets.install", "ConversionCheckError"),
                  ("mobilenet_zoo.presets.install", "PublishedFileError"))


def expected_errors() -> tuple[type[BaseException], ...]:
    """Errors whose message says what happened and what to do (a failed download, a
    bad published file, TensorFlow missing): a CLI prints that one line, no traceback,
    and exits 3."""
    late = (getattr(sys.modules.get(module), name, None) for module, name in _LATE_EXPECTED)
    return (DownloadError, HashMismatchError, *(cls for cls in late if isinstance(cls, type)))


def run_guarded(body: Callable[[], int], kept: str = "nothing was written") -> int:
    """``body()``; an expected error (``expected_errors``: a failed download, TensorFlow
    missing) is fatal in one line, an unexpected exception with its traceback; both exit 3.
    Ctrl-C (``KeyboardInterrupt``) is one line, ``interrupted; KEPT`` (what the run leaves),
    no traceback, exit 130; ``body``'s ``finally`` blocks (which remove its temporary
    files) have run by then."""
    try:
        return body()
    except KeyboardInterrupt:
        print(f"interrupted; {kept}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except SystemExit:
        raise
    except expected_errors() as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_FATAL
    except Exception as err:  # noqa: BLE001  the promise: a fatal error exits 3, with its traceback
        import traceback

        traceback.print_exc()
        print(f"fatal: {type(err).__name__}: {err}", file=sys.stderr)
        return EXIT_FATAL
