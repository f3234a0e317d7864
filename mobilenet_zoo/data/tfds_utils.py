"""TFDS helpers that never reach the network.

A real ``tfds.load`` with no data on disk tries to download and can hang for
minutes offline, so recipes check the data directory first and fail (or fall
back) with a message that says where the data should be.
"""

from __future__ import annotations

import os
from pathlib import Path


def default_data_dir() -> str:
    return os.environ.get("TFDS_DATA_DIR", str(Path.home() / "tensorflow_datasets"))


def tfds_prepared(name: str, data_dir: str | None = None) -> bool:
    """True when ``name`` (e.g. ``coco/2017``) has prepared files under ``data_dir``.

    Looks at the directory only (``<data_dir>/<name>/<version>/dataset_info.json``),
    without importing a builder that could go online.
    """
    base = Path(data_dir or default_data_dir())
    dataset, _, config = name.partition("/")
    root = base / dataset / config if config else base / dataset
    if not root.is_dir():
        return False
    return any(root.glob("*/dataset_info.json")) or any(root.glob("*/*/dataset_info.json"))


def require_tfds_data(name: str, data_dir: str | None = None) -> str:
    """Returns the data dir holding ``name``, or raises with where to put it."""
    data_dir = data_dir or default_data_dir()
    if not tfds_prepared(name, data_dir):
        raise FileNotFoundError(
            f"TFDS dataset {name!r} is not prepared under {data_dir}. Prepare it on a "
            f"machine with network access (`tfds build {name} --data_dir {data_dir}`, or "
            "manual download as the TFDS catalog page of the dataset describes) and pass "
            "--data-dir. Nothing is downloaded at run time."
        )
    return data_dir


def load_split(
    name: str, split: str, data_dir: str | None = None, check: bool = True, **kwargs
):
    """``tfds.load`` with ``download=False`` after checking the files are there.

    ``check=False`` skips the directory check (inside ``tfds.testing.mock_data``).
    """
    import tensorflow_datasets as tfds

    if check:
        data_dir = require_tfds_data(name, data_dir)
    return tfds.load(name, split=split, data_dir=data_dir, download=False, **kwargs)
