"""A run's identity: what makes two runs the same run, so ``--resume`` continues only that.

``check_run_identity`` records the identity (configuration and data) in the
output folder, or on ``--resume`` compares it with the recorded one and refuses
another run (``RunMismatchError``, naming each difference), changing nothing.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

import numpy as np

from mobilenet_zoo import weights_io
from mobilenet_zoo.files import remove_stale_temporaries
from mobilenet_zoo.training.checkpoints import resume_epoch
from mobilenet_zoo.training.flags import RUN_CONTROL_FLAGS


class RunMismatchError(ValueError):
    """``--resume`` on a folder that holds a run of another configuration or data."""


class EarlierRunError(ValueError):
    """A run into an ``--out`` that holds an earlier run, without ``--resume`` or ``--overwrite``."""


IDENTITY_FILE = "run_identity.json"
# What a recipe run leaves in its --out (RunContext.callbacks, save_model, write_results):
# their presence means the folder holds a run. RUN_STATE is what --overwrite clears so
# that logs, backups and checkpoints of two runs never mix.
RUN_STATE = (IDENTITY_FILE, "results.json", "log.csv", "backup", "checkpoints", "tensorboard")
RUN_MARKERS = (*RUN_STATE, "model.keras")


# The temporaries a killed run can leave in its folders (files.remove_stale_temporaries):
# hidden ones (atomic_write, checkpoints) and the exported model's.
_RUN_TEMPORARIES = (".", "model.tflite.tmp-")


def _has(path: str) -> bool:
    """A file, or a folder with something in it."""
    if os.path.isfile(path):
        return True
    if not os.path.isdir(path):
        return False
    with os.scandir(path) as entries:
        return any(True for _ in entries)


def _run_folders(out_dir: str) -> list[str]:
    """``out_dir`` and its sub-folders one level down (not hidden): recipes keep stages
    there (``transfer.py``: ``head/``, ``fine_tune/``; ``tradeoff.py``: one per point)."""
    folders = [out_dir]
    if os.path.isdir(out_dir):
        with os.scandir(out_dir) as entries:
            folders += sorted(e.path for e in entries if e.is_dir() and not e.name.startswith(".")
                              and e.name not in RUN_MARKERS)
    return folders


def earlier_run(out_dir: str) -> list[str]:
    """The paths under ``out_dir`` (relative, one sub-folder level) that show it holds a
    run; empty folders do not count."""
    found = []
    for folder in _run_folders(out_dir):
        for name in RUN_MARKERS:
            if _has(os.path.join(folder, name)):
                found.append(os.path.relpath(os.path.join(folder, name), out_dir))
    return found


def claim_out(out_dir: str, resume: bool, overwrite: bool) -> None:
    """Before a run writes anything: an ``--out`` that holds an earlier run (in it or in a
    stage's sub-folder) is continued (``--resume``), cleared of that run's state
    (``--overwrite``: backups, checkpoints, logs, identity, results; other files are
    replaced as the new run writes them), or refused with ``EarlierRunError``, changing
    nothing. A run that goes on first removes the temporary files of killed saves
    (``.model.keras.tmp-PID.keras``, writer gone); a user's own files are not touched."""
    if resume and overwrite:
        raise EarlierRunError("--resume continues the run in --out and --overwrite replaces it: "
                              "give one of them.")
    found = earlier_run(out_dir)
    if found and not (resume or overwrite):
        shown = ", ".join(found[:8]) + (f", ... ({len(found)} in all)" if len(found) > 8 else "")
        raise EarlierRunError(
            f"--out {out_dir} holds an earlier run ({shown}); nothing was changed. "
            "Pass --resume to continue it, --overwrite to replace it, or choose another --out.")
    for folder in _run_folders(out_dir):
        for sub in ("", "checkpoints", "backup"):
            remove_stale_temporaries(os.path.join(folder, sub), prefix=_RUN_TEMPORARIES)
    if not found or resume:
        return
    removed = []
    for folder in _run_folders(out_dir):
        for name in RUN_STATE:
            path = os.path.join(folder, name)
            if os.path.isdir(path):
                shutil.rmtree(path)
            elif os.path.exists(path):
                os.remove(path)
            else:
                continue
            removed.append(os.path.relpath(path, out_dir))
    if removed:
        print(f"--overwrite: removed the earlier run's {', '.join(removed)} in {out_dir}", flush=True)


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, sort_keys=True, default=lambda o: o.item() if hasattr(o, "item")
                                 else str(o)))


def _differences(recorded: Any, current: Any, prefix: str = "") -> list[str]:
    if isinstance(recorded, dict) and isinstance(current, dict):
        out = []
        for key in sorted(set(recorded) | set(current)):
            name = f"{prefix}.{key}" if prefix else str(key)
            if key not in recorded:
                out.append(f"{name}: not recorded, now {current[key]!r}")
            elif key not in current:
                out.append(f"{name}: {recorded[key]!r} there, absent now")
            else:
                out += _differences(recorded[key], current[key], name)
        return out
    return [] if recorded == current else [f"{prefix}: {recorded!r} there, {current!r} now"]


def identity_of(flags: dict[str, Any], data: str = "") -> dict[str, Any]:
    """A run's identity from its flag values (all but ``RUN_CONTROL_FLAGS``: where and
    how it runs) and ``data``, a description or fingerprint of the data it trains on."""
    kept = {k: v for k, v in sorted(flags.items()) if k not in RUN_CONTROL_FLAGS}
    return {"flags": kept, "data": data}


def data_fingerprint(*arrays) -> str:
    """sha256 of the arrays' shapes, dtypes and bytes: two runs with equal
    fingerprints saw the same examples in the same order."""
    import hashlib

    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.shape}{array.dtype}".encode())
        digest.update(array.tobytes())
    return "sha256:" + digest.hexdigest()


def check_run_identity(out_dir: str, identity: dict[str, Any], resume: bool) -> None:
    """Records ``identity`` (configuration and data fingerprint) in ``out_dir``, or,
    with ``resume``, checks it against the recorded one.

    A resume continues only the same run: another configuration or data raises
    ``RunMismatchError`` listing each difference, and so does a folder with a
    backup but no record (written by an older version or another program: it
    cannot be verified). Nothing in ``out_dir`` is changed then. Without ``resume``
    the run starts anew and its identity replaces any earlier one.
    """
    path = os.path.join(out_dir, IDENTITY_FILE)
    current = _jsonable(identity)
    if resume:
        recorded = None
        if os.path.isfile(path):
            try:
                with open(path) as f:
                    recorded = json.load(f)
            except (OSError, ValueError) as err:
                raise RunMismatchError(
                    f"--resume: {path} is unreadable ({err}), so the run in {out_dir} cannot be "
                    "verified; nothing was changed. Pass --overwrite instead of --resume to start anew "
                    "there, or choose another --out.") from err
        elif resume_epoch(out_dir) or os.path.isfile(os.path.join(out_dir, "results.json")):
            raise RunMismatchError(
                f"--resume: {out_dir} holds a run without a record of its configuration and data "
                f"({IDENTITY_FILE}; written by an older version or another program), so it cannot be "
                "verified; nothing was changed. Pass --overwrite instead of --resume to start anew "
                "there, or choose another --out.")
        if recorded is not None:
            diffs = _differences(recorded, current)
            if diffs:
                raise RunMismatchError(
                    f"--resume: {out_dir} holds a run of another configuration or data; nothing was "
                    "changed. Differences (recorded there, given now): " + "; ".join(diffs)
                    + ". Resume with the same flags and data, choose another --out, or pass "
                    "--overwrite instead of --resume to start anew there.")
            return
    text = json.dumps(current, indent=2, sort_keys=True)
    weights_io.atomic_write(path, lambda tmp: open(tmp, "w").write(text))


def read_run_identity(out_dir: str) -> dict[str, Any] | None:
    """The identity recorded in ``out_dir`` (``check_run_identity``), or None."""
    try:
        with open(os.path.join(out_dir, IDENTITY_FILE)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
