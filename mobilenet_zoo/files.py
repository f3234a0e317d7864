"""Atomic file writes: a reader, or a crash, sees the old file or the complete new one."""

from __future__ import annotations

import os
import re
from collections.abc import Callable


def atomic_write(path: str | os.PathLike, write: Callable[[str], object]) -> None:
    """``write(tmp_path)`` then fsync and rename onto ``path``: a reader (or a
    crash) sees the old file or the complete new one, never a partial file."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path)) or "."
    os.makedirs(directory, exist_ok=True)
    base = os.path.basename(path)
    tmp = os.path.join(directory, f".{base}.tmp-{os.getpid()}{os.path.splitext(base)[1]}")
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


# Exactly the shapes this package writes, the PID saying whose file it is: ``atomic_write``'s
# ``.NAME.tmp-PID.EXT``, the checkpoints' ``.tmp-PID.weights.h5`` and the exporters'
# ``NAME.tmp-PID`` (nothing after the PID). A user's ``notes.tmp-2023.txt`` is none of them.
_TEMPORARY = re.compile(r"^(?:\..+\.tmp-(\d+)(?:\.[^.]+)?|\.tmp-(\d+)\.weights\.h5|[^.].*\.tmp-(\d+))$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_temporaries(folder: str | os.PathLike,
                             prefix: str | tuple[str, ...] = "") -> list[str]:
    """Removes temporary files that a killed write left in ``folder`` (not in its
    sub-folders): those whose writer process is gone. A live writer's file is left alone.
    ``prefix``: only names starting with it (or one of them), so a folder shared with the
    user's own files is searched only for the temporaries of the file being written.
    Returns the removed paths."""
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        match = _TEMPORARY.search(name) if name.startswith(prefix) else None
        path = os.path.join(folder, name)
        pid = next((g for g in match.groups() if g), None) if match else None
        if pid and os.path.isfile(path) and not _alive(int(pid)):
            try:
                os.remove(path)
                removed.append(path)
            except OSError:
                pass
    return removed
