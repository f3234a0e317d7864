"""Downloads that are verified, resumable, atomic, locked, mirrorable and that end.

One function, ``download``, fetches a published file into the user cache:

* ``$MOBILENET_ZOO_MIRROR`` (a base URL) replaces the canonical host; the file
  name is appended, as pip's ``--index-url`` moves the index;
* ``$MOBILENET_ZOO_OFFLINE=1`` refuses every download (as ``HF_HUB_OFFLINE``);
* the bytes go to ``FILE.part``; a cut connection or a killed process leaves
  that file, and the next attempt asks for the rest (HTTP ``Range``, with
  ``If-Range`` so that a file changed on the host is sent whole, RFC 9110
  section 13.1.5). ``FILE.part.json`` records what the part is of (URL, size,
  ``ETag`` / ``Last-Modified``, expected sha256): a part of another file, one
  longer than the file, or one whose resumed bytes give the wrong sha256 is
  discarded and the file fetched whole within the same call;
* the sha256 is checked before ``FILE.part`` is renamed onto ``FILE``
  (``os.replace``, atomic): a half-written or wrong file is never used;
* an exclusive lock (``FILE.lock``) makes a second process wait for the first
  instead of writing the same file;
* every socket operation times out after ``$MOBILENET_ZOO_TIMEOUT`` seconds
  (default 10), so a dead host fails in seconds, naming the URL;
* every download ends: it stops after ``$MOBILENET_ZOO_DOWNLOAD_DEADLINE``
  seconds in all (default 3600), and when fewer than ``$MOBILENET_ZOO_MIN_RATE``
  bytes/s (default 1024) arrive over ``$MOBILENET_ZOO_MIN_RATE_WINDOW`` seconds
  (default 30), as curl's ``--max-time`` and ``--speed-limit`` / ``--speed-time``.
  The ``.part`` is kept, so the next call resumes it;
* progress: a bar on a terminal; in a log file a plain line at every tenth of
  the file and at least every ``PROGRESS_EVERY_S`` seconds, with MB and rate.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import http.client
import json
import math
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mobilenet_zoo.files import atomic_write

ENV_MIRROR = "MOBILENET_ZOO_MIRROR"
ENV_OFFLINE = "MOBILENET_ZOO_OFFLINE"
ENV_TIMEOUT = "MOBILENET_ZOO_TIMEOUT"
ENV_DEADLINE = "MOBILENET_ZOO_DOWNLOAD_DEADLINE"
ENV_MIN_RATE = "MOBILENET_ZOO_MIN_RATE"
ENV_MIN_RATE_WINDOW = "MOBILENET_ZOO_MIN_RATE_WINDOW"
ENV_CACHE = "MOBILENET_ZOO_CACHE"  # hub.registry's cache root, named in error messages
ATTEMPTS = 3  # a cut connection is resumed up to twice within one call
CHUNK = 1 << 16
PROGRESS_EVERY_S = 30.0  # a log line at least this often, besides one per tenth of the file


class DownloadError(OSError):
    """A file could not be fetched; the message says from where and what to do."""


class DownloadTooSlowError(DownloadError):
    """The download passed ``$MOBILENET_ZOO_DOWNLOAD_DEADLINE`` or fell below
    ``$MOBILENET_ZOO_MIN_RATE``; its ``.part`` is kept for the next call."""


class HashMismatchError(ValueError):
    """The bytes are not the published ones; nothing was kept."""


class _Stalled(Exception):
    """Raised inside a transfer when a limit trips; ``download`` adds the context."""


class _Restart(Exception):
    """The ``.part`` turned out not to be resumable; fetch the file whole."""


def sha256_of(path: str | os.PathLike) -> str:
    """The hex sha256 of a file, read in 1 MiB blocks."""
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


def _env_number(name: str, default: float, what: str, high: float, zero_ok: bool = False) -> float:
    """A number from environment variable ``name``; a ValueError naming it when it is not
    a finite number in ``(0, high]`` (``[0, high]`` with ``zero_ok``)."""
    raw = os.environ.get(name, "").strip() or repr(default)
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero_ok) or value > high:
        kind = "a non-negative" if zero_ok else "a positive"
        raise ValueError(f"${name} must be {kind} number of {what} (at most {high:g}), got {raw!r}.")
    return value


def timeout_seconds() -> float:
    """``$MOBILENET_ZOO_TIMEOUT``: seconds per socket operation (default 10)."""
    return _env_number(ENV_TIMEOUT, 10, "seconds", 86400)


def deadline_seconds() -> float:
    """``$MOBILENET_ZOO_DOWNLOAD_DEADLINE``: seconds one ``download`` call may take in
    all, resumed attempts included (default 3600; at most a week)."""
    return _env_number(ENV_DEADLINE, 3600, "seconds", 7 * 86400)


def min_rate() -> float:
    """``$MOBILENET_ZOO_MIN_RATE``: the slowest transfer, in bytes/s averaged over
    ``min_rate_window()`` seconds, that is let run (default 1024; 0 turns the check off)."""
    return _env_number(ENV_MIN_RATE, 1024, "bytes per second", 1e12, zero_ok=True)


def min_rate_window() -> float:
    """``$MOBILENET_ZOO_MIN_RATE_WINDOW``: seconds over which the rate is averaged
    (default 30, as curl's ``--speed-time``)."""
    return _env_number(ENV_MIN_RATE_WINDOW, 30, "seconds", 86400)


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


def _rate_text(rate: float) -> str:
    if rate >= 1e6:
        return f"{rate / 1e6:.1f} MB/s"
    if rate >= 1e3:
        return f"{rate / 1e3:.1f} kB/s"
    return f"{rate:.0f} B/s"


class _Progress:
    """A bar on a terminal; in a log file the first line, a line at each tenth of the
    file (or every ``PROGRESS_EVERY_S`` seconds), and the last."""

    def __init__(self, label: str, total: int | None, start: int) -> None:
        self.label, self.total, self.done, self.start = label, total, start, start
        self.tty = sys.stderr.isatty()
        self.began = self.last = self.logged = time.monotonic()
        self.tenth = self._tenth()
        size = f"{total / 1e6:.1f} MB" if total else "unknown size"
        resumed = f", resuming at {start / 1e6:.1f} MB" if start else ""
        print(f"Downloading {label} ({size}{resumed})", file=sys.stderr, flush=True)

    def _tenth(self) -> int:
        return int(10 * self.done / self.total) if self.total else 0

    def rate(self) -> float:
        return (self.done - self.start) / max(time.monotonic() - self.began, 1e-9)

    def update(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.tty:
            if self.total and now - self.last > 0.1:
                self.last = now
                filled = int(30 * self.done / self.total)
                sys.stderr.write(f"\r  [{'#' * filled}{'.' * (30 - filled)}] "
                                 f"{self.done / 1e6:.1f}/{self.total / 1e6:.1f} MB, "
                                 f"{_rate_text(self.rate())}  ")
                sys.stderr.flush()
            return
        tenth = self._tenth()
        if (tenth > self.tenth and self.done != self.total) or now - self.logged >= PROGRESS_EVERY_S:
            self.tenth, self.logged = tenth, now
            share = f"{100 * self.done // self.total:3d}% " if self.total else ""
            of = f"/{self.total / 1e6:.1f}" if self.total else ""
            print(f"  {share}{self.done / 1e6:.1f}{of} MB, {_rate_text(self.rate())}",
                  file=sys.stderr, flush=True)

    def end_line(self) -> None:
        """Ends the terminal's bar line (the transfer stopped before the end)."""
        if self.tty and self.total:
            sys.stderr.write("\n")
            sys.stderr.flush()

    def close(self) -> None:
        self.end_line()
        print(f"  done: {self.done / 1e6:.1f} MB in {time.monotonic() - self.began:.1f} s "
              f"({_rate_text(self.rate())})", file=sys.stderr, flush=True)


class _Limits:
    """The overall deadline and the minimum rate of one ``download`` call."""

    def __init__(self) -> None:
        self.deadline, self.min_rate, self.window = deadline_seconds(), min_rate(), min_rate_window()
        self.began = self.window_began = time.monotonic()
        self.received = self.window_bytes = 0
        self.appended = False  # bytes were appended to a part (resumed) in this pass

    def check(self, n: int = 0) -> None:
        """Counts ``n`` new bytes; raises ``_Stalled`` when a limit is passed."""
        now = time.monotonic()
        self.received += n
        self.window_bytes += n
        elapsed = now - self.began
        if elapsed > self.deadline:
            raise _Stalled(
                f"it did not finish within ${ENV_DEADLINE}={self.deadline:g} s: "
                f"{self.received} bytes received in {elapsed:.0f} s "
                f"({_rate_text(self.received / elapsed)} on average). On a slow link raise "
                f"${ENV_DEADLINE} (seconds)")
        spent = now - self.window_began
        if self.min_rate and spent >= self.window:
            rate = self.window_bytes / spent
            if rate < self.min_rate:
                raise _Stalled(
                    f"it is too slow: {_rate_text(rate)} ({rate:.0f} bytes/s) over the last "
                    f"{spent:.0f} s, below ${ENV_MIN_RATE}={self.min_rate:g} bytes/s "
                    f"({self.received} bytes received in {elapsed:.0f} s). Try again later or "
                    f"another host (${ENV_MIRROR}), or lower ${ENV_MIN_RATE} (0 turns the check "
                    f"off) or lengthen ${ENV_MIN_RATE_WINDOW} (seconds, now {self.window:g})")
            self.window_began, self.window_bytes = now, 0


def _info_path(part: Path) -> Path:
    return part.with_name(part.name + ".json")


def _read_info(part: Path) -> dict[str, Any]:
    """What ``FILE.part`` is a part of ({} when unknown: a part written before this record)."""
    try:
        info = json.loads(_info_path(part).read_text())
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def _write_info(part: Path, info: dict[str, Any]) -> None:
    payload = json.dumps(info, sort_keys=True)
    atomic_write(_info_path(part), lambda tmp: Path(tmp).write_text(payload))


def _discard(part: Path) -> None:
    part.unlink(missing_ok=True)
    _info_path(part).unlink(missing_ok=True)


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """``bytes 100-999/1000`` -> (100, 1000); None where absent or ``*``."""
    try:
        _unit, spec = (value or "").split(" ", 1)
        first, total = spec.split("/", 1)
        begin = int(first.split("-", 1)[0]) if first != "*" else None
        return begin, int(total) if total.strip().isdigit() else None
    except ValueError:
        return None, None


def _fetch_once(url: str, part: Path, timeout: float, limits: _Limits,
                sha256: str | None = None) -> bool:
    """One HTTP(S) request appending to ``part``; True when the file is complete.

    Raises ``_Restart`` (after discarding ``part``) when the part cannot be resumed."""
    start = part.stat().st_size if part.exists() else 0
    info = _read_info(part) if start else {}
    request = urllib.request.Request(url, headers={"User-Agent": "mobilenet_zoo"})
    if start:
        request.add_header("Range", f"bytes={start}-")
        validator = info.get("etag") if not str(info.get("etag", "")).startswith("W/") else None
        if validator or info.get("last_modified"):  # a changed file comes whole (200)
            request.add_header("If-Range", validator or info["last_modified"])
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and start:  # nothing left to send: whole, or a stale part
            _, total = _content_range(err.headers.get("Content-Range"))
            if total == start:
                return True
            _discard(part)  # longer than the file, or of unknown size: start again
            raise _Restart(f"{part.name} ({start} bytes) is longer than the file") from None
        raise
    with response:
        status = getattr(response, "status", None) or 200
        length = response.headers.get("Content-Length")
        begin, whole = _content_range(response.headers.get("Content-Range"))
        if start and status == 206 and (begin != start or (info.get("total") and whole is not None
                                                           and whole != info["total"])):
            _discard(part)  # another range, or the file changed size on the host
            raise _Restart(f"the host's file is not the one {part.name} was part of")
        if start and status != 206:  # the server ignored Range, or If-Range: the file changed
            start = 0
        limits.appended = limits.appended or bool(start)
        total = whole if status == 206 and whole is not None else (
            start + int(length) if length is not None else None)
        if not start:
            _write_info(part, {"url": url, "total": total, "sha256": sha256,
                               "etag": response.headers.get("ETag"),
                               "last_modified": response.headers.get("Last-Modified")})
        progress = _Progress(url.rsplit("/", 1)[-1], total, start)
        read = getattr(response, "read1", None) or response.read  # returns what has arrived
        with open(part, "ab" if start else "wb") as out:
            try:
                while True:
                    chunk = read(CHUNK)
                    if not chunk:
                        break
                    out.write(chunk)
                    progress.update(len(chunk))
                    limits.check(len(chunk))
            except BaseException:
                progress.end_line()  # a cut, a timeout or a limit: the caller says which
                raise
            out.flush()
            os.fsync(out.fileno())
        size = part.stat().st_size
        if total is not None and size < total:  # the host closed early: not done
            progress.end_line()
            raise http.client.IncompleteRead(b"", total - size)
        progress.close()
    return True


def _writable_folder(folder: Path, url: str, hint: str) -> None:
    """Creates ``folder``; a DownloadError naming it (and ``$MOBILENET_ZOO_CACHE``) when
    it cannot be created or written."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        problem = None if os.access(folder, os.W_OK | os.X_OK) else "it is not writable"
    except OSError as err:
        problem = err.strerror or str(err)
    if problem:
        root = Path(os.environ.get(ENV_CACHE) or Path.home() / ".cache" / "mobilenet_zoo")
        fix = (f"It lies under the package's cache ${ENV_CACHE}={root}; set ${ENV_CACHE} to a "
               "writable folder." if folder.absolute().is_relative_to(root.absolute())
               else "Give a writable folder.")
        raise DownloadError(f"Cannot download {url} into {folder}: {problem}. {fix} {hint}".rstrip())


def download(url: str, dest: str | os.PathLike, sha256: str | None = None,
             hint: str = "") -> Path:
    """Fetches ``url`` (or its mirror) to ``dest``, checked against ``sha256``.

    Returns ``dest`` at once when it already holds the expected bytes. Raises
    ``DownloadError`` (offline, dead host, timeout: the message names the URL,
    the cache folder and ``hint``, e.g. the ``fetch --from`` command),
    ``DownloadTooSlowError`` (past ``$MOBILENET_ZOO_DOWNLOAD_DEADLINE`` or below
    ``$MOBILENET_ZOO_MIN_RATE``: the URL, the bytes received, the rate and the
    variable to change; the ``.part`` is kept) or ``HashMismatchError`` (both
    hashes; nothing is left in the cache).
    """
    dest = Path(dest)
    url = resolve_url(url)
    _writable_folder(dest.parent, url, hint)
    with file_lock(dest.with_name(dest.name + ".lock")):
        if dest.exists() and (sha256 is None or sha256_of(dest) == sha256):
            return dest  # another process finished it while we waited
        if offline():
            raise DownloadError(
                f"${ENV_OFFLINE} is set, so {url} was not downloaded into {dest.parent}. {hint}")
        timeout = timeout_seconds()
        limits = _Limits()
        part = dest.with_name(dest.name + ".part")
        info = _read_info(part) if part.exists() else {}
        if part.exists() and ((sha256 and info.get("sha256") and info["sha256"] != sha256)
                              or (info.get("total") and part.stat().st_size > info["total"])):
            _discard(part)  # a part of another file, or longer than it: never resumed
        elif part.exists() and sha256 is None and not (info.get("etag") or info.get("last_modified")):
            # Without a published hash and without the host's validator (If-Range) nothing
            # could tell a corrupt or foreign part from a good one: start whole.
            _discard(part)
        for whole_again in (False, True):
            limits.appended = False
            _fetch_attempts(url, dest, part, timeout, limits, sha256, hint)
            found = sha256_of(part)
            if sha256 is None or found == sha256:
                break
            _discard(part)
            if limits.appended and not whole_again:  # the earlier part was bad: fetch it whole, once
                print(f"  the resumed partial file gave sha256 {found}, not {sha256}; "
                      f"downloading {url.rsplit('/', 1)[-1]} whole", file=sys.stderr, flush=True)
                continue
            raise HashMismatchError(
                f"{url}: the downloaded file has sha256 {found}, but {sha256} is expected. "
                f"Nothing was kept in {dest.parent}.")
        os.replace(part, dest)
        _info_path(part).unlink(missing_ok=True)
    return dest


def _fetch_attempts(url: str, dest: Path, part: Path, timeout: float, limits: _Limits,
                    sha256: str | None, hint: str) -> None:
    """Up to ``ATTEMPTS`` requests, resuming a cut connection while it makes progress."""
    last_error: Exception | None = None
    attempt = cuts = 0
    while attempt < ATTEMPTS:
        attempt += 1
        before = part.stat().st_size if part.exists() else 0
        try:
            limits.check()
            _fetch_once(url, part, timeout, limits, sha256)
            return
        except _Restart as why:
            print(f"  {why}: downloading it whole", file=sys.stderr, flush=True)
            attempt -= 1  # a discarded part does not use an attempt (raised only once: no part)
        except _Stalled as why:
            size = part.stat().st_size if part.exists() else 0
            raise DownloadTooSlowError(
                f"Stopped downloading {url} into {dest.parent}: {why}. The partial file "
                f"{part.name} ({size} bytes) is kept and resumed next time. {hint}".rstrip()) from None
        except (http.client.IncompleteRead, ConnectionError, TimeoutError) as err:
            last_error = err  # a cut connection: resume while it makes progress
            cuts += 1
            size = part.stat().st_size if part.exists() else 0
            if size <= before or attempt >= ATTEMPTS:
                _fail(url, dest, err, hint, cuts)
            print(f"  {_stop_text(err)} at {_of_total(part, size)}, resuming", file=sys.stderr,
                  flush=True)
        except (urllib.error.URLError, OSError, ValueError) as err:
            _fail(url, dest, err, hint)
    _fail(url, dest, last_error, hint, cuts)


def _timed_out(error: BaseException | None) -> bool:
    return isinstance(error, TimeoutError) or str(error) == "timed out"


def _stop_text(error: BaseException) -> str:
    """How a transfer stopped, for the line before it is resumed."""
    if _timed_out(error):
        return f"no data for ${ENV_TIMEOUT}={timeout_seconds():g} s"
    return "connection cut"


def _of_total(part: Path, size: int) -> str:
    """``2.1 MB of 5.2 MB`` (the size the host announced, from ``FILE.part.json``)."""
    total = _read_info(part).get("total")
    return f"{size / 1e6:.1f} MB" + (f" of {total / 1e6:.1f} MB" if total else "")


def _fail(url: str, dest: Path, error: Exception | None, hint: str, cuts: int = 0) -> None:
    """Raises the DownloadError of a failed download: the URL, what happened in words (a
    timeout names ``$MOBILENET_ZOO_TIMEOUT``; a cut connection, how often and how much
    arrived), whether the ``.part`` is kept, and ``hint``."""
    if isinstance(error, urllib.error.URLError) and not isinstance(error, urllib.error.HTTPError):
        error = error.reason  # e.g. [Errno 111] Connection refused
    kept = dest.with_name(dest.name + ".part")
    size = kept.stat().st_size if kept.exists() else 0
    total = _read_info(kept).get("total") if kept.exists() else None
    received = f"{size} of {total} bytes received" if total else f"{size} bytes received"
    times = f"{cuts} time{'s' if cuts != 1 else ''}"
    if _timed_out(error):
        what = (f"no data arrived for ${ENV_TIMEOUT}={timeout_seconds():g} s (timed out"
                f"{f' {times}, {received}' if size else ''}). On a slow link raise "
                f"${ENV_TIMEOUT} (seconds per socket operation)")
    elif cuts and isinstance(error, (http.client.IncompleteRead, ConnectionError)):
        what = f"the connection was cut {times} before the end of the file, {received}"
    else:
        what = str(error)
    partial = f" The partial file {kept.name} is kept and resumed next time." if kept.exists() else ""
    raise DownloadError(f"Could not download {url} into {dest.parent}: {what}.{partial} {hint}".rstrip())
