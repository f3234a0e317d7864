"""``mobilenet-zoo presets [--json]`` lists every preset;
``mobilenet-zoo presets fetch NAME [--from FILE] [--source KIND]`` installs one.

Exit codes: 0 done, 2 usage error (unknown preset, bad ``--from`` file), 3 the download,
the published file or the conversion failed (the message says what to do).
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import sys
import urllib.parse

from mobilenet_zoo.cli import start_backend


def _origin(row: dict) -> str:
    """The listing's source line: the URL, or the file a ``fetch --from`` install came from
    (its path and sha256, as the cache manifest records them)."""
    url = row["url"] or "-"
    if url.startswith("file://"):
        from mobilenet_zoo.hub.presets import get_preset

        digest = get_preset(row["name"]).get("source_sha256")
        return (f"from file: {urllib.parse.unquote(urllib.parse.urlsplit(url).path)} "
                f"(`fetch --from`, sha256 {digest})")
    return f"url: {url}"


def _list(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="mobilenet-zoo presets",
        description="List the presets: shipped in the package, installed in the user cache, or "
                    "remote (downloaded, verified and converted on first use). "
                    "`mobilenet-zoo presets fetch NAME [--from FILE]` installs one.")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    from mobilenet_zoo.hub.presets import describe

    rows = describe()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        size = f", {r['size_bytes'] / 1e6:.1f} MB" if r["size_bytes"] else ""
        names = f" {r['class_names']}" if r["class_names"] else ""
        print(f"{r['name']}  [{r['location']}{size}]\n"
              f"  task: {r['task']}, alpha {r['alpha']}, input {r['input_size']}, "
              f"classes: {r['classes']}{names}\n"
              f"  metric: {r['metric'] or 'none published'}\n  licence: {r['license']}\n"
              f"  source: {r['source']}\n  {_origin(r)}\n"
              f"  sha256: {r['sha256'] or 'none published (recorded at first download)'}")
    return 0


def _unknown_name(name: str) -> str | None:
    """One line for a name that is no preset (with the closest names), else None.

    Reads only the presets' data (``hub``), so it answers before Keras is imported."""
    from mobilenet_zoo.hub.registry import all_presets

    names = all_presets()
    if name in names:
        return None
    close = difflib.get_close_matches(name, list(names), n=3)
    guess = f"; did you mean {', '.join(close)}?" if close else "."
    return f"unknown preset {name!r}{guess} Run `mobilenet-zoo presets` to list them."


def _fetch(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="mobilenet-zoo presets fetch",
        description="Install a published preset into the user cache: download it (or take "
                    "--from FILE), check its sha256, convert it, check the conversion, register it.")
    parser.add_argument("name", help="a remote preset (see `mobilenet-zoo presets`)")
    parser.add_argument("--from", dest="from_file", metavar="FILE",
                        help="a published file carried in by hand (.h5, .tgz or .tar.gz)")
    parser.add_argument("--source", help="source kind to download instead of the first "
                                         "(keras_h5, tf_slim_tgz, od_api_tar)")
    parser.add_argument("--force", action="store_true",
                        help="install again even when the cache holds a good copy")
    args = parser.parse_args(argv)
    unknown = _unknown_name(args.name)  # before Keras: a typo answers at once
    if unknown:
        print(f"error: {unknown}", file=sys.stderr)
        return 2
    start_backend()  # after parsing: --help and usage errors answer before Keras loads
    from mobilenet_zoo.hub.download import DownloadError, HashMismatchError
    from mobilenet_zoo.hub.presets import get_preset
    from mobilenet_zoo.presets.install import (
        ConversionCheckError,
        PublishedFileError,
        _install,
        _installed,
    )
    from mobilenet_zoo.tensorflow_support import TensorFlowRequiredError

    try:
        meta = get_preset(args.name)
        if meta["location"] == "package":
            print(f"{args.name} is shipped in the package; nothing to fetch.")
            return 0
        if (meta["location"] == "cache" and not (args.from_file or args.force)
                and _installed(args.name) is not None):
            print(f"{args.name} is already installed ({_installed(args.name)}); --force installs "
                  "it again.")
            return 0
        path, ours = _install(args.name, from_file=args.from_file, source=args.source,
                              force=args.force or meta["location"] == "cache")
    except HashMismatchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2 if args.from_file else 3
    except (DownloadError, ConversionCheckError, PublishedFileError, OSError,
            TensorFlowRequiredError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 3
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    meta = get_preset(args.name)
    mirror = (f" (a mirror of {meta['source_published_url']})"
              if meta.get("source_published_url") and not meta.get("source_file") else "")
    if not ours:  # it waited on the install lock while another process installed it
        print(f"{args.name} was installed meanwhile by another process: {path} "
              f"(sha256 {meta['sha256']}; from {meta.get('source_file') or meta['source_url']}{mirror})")
        return 0
    print(f"installed {args.name}: {path} (sha256 {meta['sha256']}; from "
          f"{meta.get('source_file') or meta['source_url']}{mirror}, sha256 {meta['source_sha256']}"
          f"{'' if meta.get('source_sha256_published') else ', no published hash: recorded now'})")
    if meta.get("frozen_graph_check"):
        print(f"checked against the archive's frozen graph: {meta['frozen_graph_check']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        if argv and argv[0] == "fetch":
            return _fetch(argv[1:])
        return _list(argv)
    except BrokenPipeError:  # `... | head`: the reader left; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (ValueError, OSError) as err:  # an unreadable cache manifest, an unwritable cache
        print(f"error: {err}", file=sys.stderr)
        return 3
