"""Downloads that are verified, resumable, atomic, locked and mirrorable.

One function, ``download``, fetches a published file into the user cache:

* ``$MOBILENET_ZOO_MIRROR`` (a base URL) replaces the canonical host; the file
  name is appended, as pip's ``--index-url`` moves the index;
* ``$MOBILENET_ZOO_OFFLINE=1`` refuses every download (as ``HF_HUB_OFFLINE``);
* the bytes go to ``FILE.part``; a cut connection or a killed process leaves
  that file, and the next attempt asks for the rest (HTTP ``Range``);
* the sha256 is checked before ``FILE.part`` is renamed onto ``FILE``
  (``os.replace``, atomic): a half-written or wrong file is never used;
* an exclusive lock (``FILE.lock``) makes a second process wait for the first
  instead of writing the same file;
* every socket operation times out after ``$MOBILENET_ZOO_TIMEOUT`` seconds
  (default 10), so a dead host fails in seconds, naming the URL.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import http.client
import math
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ENV_MIRROR = "MOBILENET_ZOO_MIRROR"
ENV_OFFLINE = "MOBILENET_ZOO_OFFLINE"
ENV_TIMEOUT = "MOBILENET_ZOO_TIMEOUT"
ATTEMPTS = 3  # a cut connection is resumed up to twice within one call
CHUNK = 1 << 16


class DownloadError(OSError):
    """A file could not be fetched; the message says from where and what to do."""


class HashMismatchError(ValueError):
    """The bytes are not the published ones; nothing was kept."""


def sha256_of(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def resolve_url(url: str) -> str:
    """``url`` with its host replaced by ``$MOBILENET_ZOO_MIRROR`` when set (the file
    name is appended to the mirror's path; a query string such as a token is kept)."""
    mirror = os.environ.get(ENV_MIRROR, "").strip()
    if not mirror:
        return url
    if not mirror.startswith(("http://", "https://", "file://")):
        raise ValueError(f"${ENV_MIRROR} must be an http(s):// or file:// base URL, got {mirror!r}.")
    parts = urllib.parse.urlsplit(mirror)
    path = f"{parts.path.rstrip('/')}/{url.rsplit('/', 1)[-1]}"
    return urllib.parse.urlunsplit(parts._replace(path=path))


def offline() -> bool:
    """``$MOBILENET_ZOO_OFFLINE``: 1 / true / yes / on forbid downloads; empty, 0 / false /
    no / off allow them; anything else is an error naming the variable."""
    value = os.environ.get(ENV_OFFLINE, "").strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise ValueError(f"${ENV_OFFLINE} must be 1/true/yes/on or 0/false/no/off, got {value!r}.")


def timeout_seconds() -> float:
    """``$MOBILENET_ZOO_TIMEOUT``: seconds per socket operation (default 10)."""
    raw = os.environ.get(ENV_TIMEOUT, "").strip() or "10"
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not math.isfinite(value) or value <= 0 or value > 86400:
        raise ValueError(f"${ENV_TIMEOUT} must be a positive number of seconds (at most 86400), "
                         f"got {raw!r}.")
    return value


@contextlib.contextmanager
def file_lock(path: str | os.PathLike) -> Iterator[None]:
    """An exclusive advisory lock held across processes (``fcntl.flock``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


class _Progress:
    """A bar on a terminal; two plain lines (start, end) in a log file."""

    def __init__(self, label: str, total: int | None, start: int) -> None:
        self.label, self.total, self.done = label, total, start
        self.tty = sys.stderr.isatty()
        self.last = 0.0
        size = f"{total / 1e6:.1f} MB" if total else "unknown size"
        resumed = f", resuming at {start / 1e6:.1f} MB" if start else ""
        print(f"Downloading {label} ({size}{resumed})", file=sys.stderr, flush=True)

    def update(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.tty and self.total and now - self.last > 0.1:
            self.last = now
            filled = int(30 * self.done / self.total)
            sys.stderr.write(f"\r  [{'#' * filled}{'.' * (30 - filled)}] "
                             f"{self.done / 1e6:.1f}/{self.total / 1e6:.1f} MB")
            sys.stderr.flush()

    def close(self) -> None:
        if self.tty and self.total:
            sys.stderr.write("\n")
        print(f"  done: {self.done / 1e6:.1f} MB", file=sys.stderr, flush=True)


def _fetch_once(url: str, part: Path, timeout: float) -> bool:
    """One HTTP(S) request appending to ``part``; True when the file is complete."""
    start = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "mobilenet_zoo"})
    if start:
        request.add_header("Range", f"bytes={start}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and start:  # nothing left to send: whole, or a stale part
            total = (err.headers.get("Content-Range") or "").rsplit("/", 1)[-1]
            if total.isdigit() and int(total) == start:
                return True
            part.unlink()  # longer than the file, or of unknown size: start again
            return _fetch_once(url, part, timeout)
        raise
    with response:
        status = getattr(response, "status", 200)
        if start and status != 206:  # the server ignored Range: start again
            start = 0
        length = response.headers.get("Content-Length")
        total = start + int(length) if length is not None else None
        progress = _Progress(url.rsplit("/", 1)[-1], total, start)
        with open(part, "ab" if start else "wb") as out:
            while True:
                chunk = response.read(CHUNK)
                if not chunk:
                    break
                out.write(chunk)
                progress.update(len(chunk))
            out.flush()
            os.fsync(out.fileno())
        progress.close()
    size = part.stat().st_size
    if total is not None and size < total:
        raise http.client.IncompleteRead(b"", total - size)
    return True


def download(url: str, dest: str | os.PathLike, sha256: str | None = None,
             hint: str = "") -> Path:
    """Fetches ``url`` (or its mirror) to ``dest``, checked against ``sha256``.

    Returns ``dest`` at once when it already holds the expected bytes. Raises
    ``DownloadError`` (offline, dead host, timeout: the message names the URL,
    the cache folder and ``hint``, e.g. the ``fetch --from`` command) or
    ``HashMismatchError`` (both hashes; nothing is left in the cache).
    """
    dest = Path(dest)
    url = resolve_url(url)
    with file_lock(dest.with_name(dest.name + ".lock")):
        if dest.exists() and (sha256 is None or sha256_of(dest) == sha256):
            return dest  # another process finished it while we waited
        if offline():
            raise DownloadError(
                f"${ENV_OFFLINE} is set, so {url} was not downloaded into {dest.parent}. {hint}")
        timeout = timeout_seconds()
        part = dest.with_name(dest.name + ".part")
        last_error: Exception | None = None
        for _ in range(ATTEMPTS):
            before = part.stat().st_size if part.exists() else 0
            try:
                _fetch_once(url, part, timeout)
                break
            except (http.client.IncompleteRead, ConnectionError, TimeoutError) as err:
                last_error = err  # a cut connection: resume while it makes progress
                if (part.stat().st_size if part.exists() else 0) <= before:
                    _fail(url, dest, err, hint)
            except (urllib.error.URLError, OSError, ValueError) as err:
                _fail(url, dest, err, hint)
        else:
            _fail(url, dest, last_error, hint)
        found = sha256_of(part)
        if sha256 is not None and found != sha256:
            part.unlink()
            raise HashMismatchError(
                f"{url}: the downloaded file has sha256 {found}, but {sha256} is expected. "
                f"Nothing was kept in {dest.parent}.")
        os.replace(part, dest)
    return dest


def _fail(url: str, dest: Path, error: Exception | None, hint: str) -> None:
    if isinstance(error, urllib.error.URLError) and not isinstance(error, urllib.error.HTTPError):
        error = error.reason  # e.g. [Errno 111] Connection refused
    kept = dest.with_name(dest.name + ".part")
    partial = f" The partial file {kept.name} is kept and resumed next time." if kept.exists() else ""
    raise DownloadError(f"Could not download {url} into {dest.parent}: {error}.{partial} {hint}")
