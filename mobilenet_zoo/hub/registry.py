"""Where presets live and how the user cache is updated safely.

Three layers, later ones winning for the same name:

1. remote: the published family (``catalog.py``), downloaded on first use;
2. cache: ``$MOBILENET_ZOO_CACHE/presets`` (default ``~/.cache/mobilenet_zoo``):
   presets installed from remote sources or registered by the user;
3. package: the weights shipped inside the wheel (``mobilenet_zoo/weights``), or
   ``$MOBILENET_ZOO_WEIGHTS``.

The cache manifest is shared by every process of the user: each update takes an
exclusive lock, re-reads the manifest from disk, merges its entry and writes the
result atomically, so two processes registering at once both keep their entries,
and a long-lived process never writes back a stale copy.
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mobilenet_zoo.files import atomic_write
from mobilenet_zoo.hub import catalog
from mobilenet_zoo.hub.download import file_lock, sha256_of

ENV_WEIGHTS_DIR = "MOBILENET_ZOO_WEIGHTS"
ENV_CACHE_DIR = "MOBILENET_ZOO_CACHE"
_PARSED: dict[str, tuple[tuple[int, int], dict[str, dict[str, Any]]]] = {}

__all__ = ["sha256_of"]


def weights_dir() -> Path:
    """``$MOBILENET_ZOO_WEIGHTS``, else the weights inside the installed package
    (``mobilenet_zoo/weights``), else the repository's ``weights/`` (a clone)."""
    env = os.environ.get(ENV_WEIGHTS_DIR)
    if env:
        return Path(env)
    package = Path(__file__).resolve().parent.parent  # mobilenet_zoo/
    packaged = package / "weights"
    if (packaged / "manifest.json").is_file():
        return packaged
    return package.parent / "weights"


def cache_root() -> Path:
    """``$MOBILENET_ZOO_CACHE``, default ``~/.cache/mobilenet_zoo``: the root of every
    cache of the package (``presets/``, ``downloads/``, data sets)."""
    env = os.environ.get(ENV_CACHE_DIR)
    return Path(env) if env else Path.home() / ".cache" / "mobilenet_zoo"


def cache_dir() -> Path:
    """The user's presets: ``<cache root>/presets``."""
    return cache_root() / "presets"


def downloads_dir() -> Path:
    """Published archives while they download and convert: ``<cache root>/downloads``."""
    return cache_root() / "downloads"


def read_manifest(directory: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """A folder's ``manifest.json``, re-read whenever the file changed on disk."""
    path = Path(directory) / "manifest.json"
    try:
        stat = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return {}
    key, stamp = str(path), (stat.st_mtime_ns, stat.st_size)
    if key in _PARSED and _PARSED[key][0] == stamp:
        return _PARSED[key][1]
    try:
        parsed = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); restore or delete it.") from err
    if not isinstance(parsed, dict):
        raise ValueError(f"{path} must hold a JSON object of presets; restore or delete it.")
    _PARSED[key] = (stamp, parsed)
    return parsed


class CacheNotWritableError(OSError):
    """The cache root (``$MOBILENET_ZOO_CACHE``) cannot hold files; the message says
    which folder, why, and to set the variable to a writable folder."""


def writable_cache_folder(directory: str | os.PathLike) -> Path:
    """``directory`` (a folder under the cache root), created when missing.

    Raises ``CacheNotWritableError`` naming ``$MOBILENET_ZOO_CACHE``, the folder and
    what to do when it cannot be created or written (a file where a folder should
    be, a read-only file system, no permission), instead of a bare ``Errno``."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        problem = None if os.access(directory, os.W_OK | os.X_OK) else (
            "it is not writable (read-only file system or no permission)")
    except (FileExistsError, NotADirectoryError):
        blocking = next((p for p in (directory, *directory.parents) if p.exists()), directory)
        problem = f"{blocking} is a file, not a folder"
    except OSError as err:
        problem = err.strerror or str(err)
    if problem is None:
        return directory
    env = os.environ.get(ENV_CACHE_DIR)
    root = f"${ENV_CACHE_DIR}={env}" if env else (
        f"the default cache {cache_root()} (${ENV_CACHE_DIR} is not set)")
    raise CacheNotWritableError(
        f"Cannot use the cache folder {directory}: {problem}. It lies under {root}; set "
        f"${ENV_CACHE_DIR} to a writable folder, e.g. `export {ENV_CACHE_DIR}="
        f"$HOME/mobilenet_zoo_cache`.")


@contextlib.contextmanager
def locked_cache() -> Iterator[Path]:
    """The cache folder, locked against other processes for a read-merge-write."""
    directory = writable_cache_folder(cache_dir())
    with file_lock(directory / ".lock"):
        yield directory


def write_entry(name: str, entry: dict[str, Any] | None) -> None:
    """Adds (or with ``None`` removes) one cache entry, merged with what is on disk.

    Call it inside ``locked_cache()``."""
    directory = cache_dir()
    manifest = dict(read_manifest(directory))
    if entry is None:
        manifest.pop(name, None)
    else:
        manifest[name] = entry
    payload = json.dumps(manifest, indent=2, sort_keys=True)
    atomic_write(directory / "manifest.json", lambda tmp: Path(tmp).write_text(payload))


def _usable_cache() -> dict[str, dict[str, Any]]:
    """The cache manifest's well-formed entries; a broken manifest (or cache folder)
    is reported once per call and skipped, so shipped presets still load."""
    try:
        manifest = read_manifest(cache_dir())
    except (ValueError, OSError) as err:
        warnings.warn(f"The presets cache is unreadable and was ignored: {err}", stacklevel=3)
        return {}
    good = {}
    for name, entry in manifest.items():
        if isinstance(entry, dict) and isinstance(entry.get("file"), str) and "sha256" in entry:
            good[name] = entry
        else:
            warnings.warn(f"{cache_dir() / 'manifest.json'}: entry {name!r} has no `file` and "
                          "`sha256`; ignored (delete it or register the preset again).", stacklevel=3)
    return good


def all_presets() -> dict[str, dict[str, Any]]:
    """Every preset with its ``location`` (and ``directory`` once it has a file)."""
    merged: dict[str, dict[str, Any]] = {
        name: dict(meta, location="remote") for name, meta in catalog.remote_presets().items()
    }
    for name, meta in _usable_cache().items():
        merged[name] = dict(meta, directory=str(cache_dir()), location="cache")
    for name, meta in read_manifest(weights_dir()).items():
        merged[name] = dict(meta, directory=str(weights_dir()), location="package")
    return merged


def shipped_names() -> set[str]:
    return set(read_manifest(weights_dir()))
