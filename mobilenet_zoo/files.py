"""Atomic file writes: a reader, or a crash, sees the old file or the complete new one."""

from __future__ import annotations

import os
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
