"""Fashion-MNIST (Xiao et al. 2017, MIT licence) from local files, never downloaded.

Two sources, tried in order:

1. the original idx files (``train-images-idx3-ubyte[.gz]`` ...) in a folder: the
   ``--data-dir`` given, or Debian's ``dataset-fashion-mnist`` package
   (``apt install dataset-fashion-mnist`` puts them in ``/usr/share/datasets/fashion-mnist``);
2. TFDS ``fashion_mnist`` prepared under the data dir (``tfds build fashion_mnist``).

The idx format (LeCun et al., http://yann.lecun.com/exdb/mnist/): a big-endian
magic ``0x0000 <dtype 0x08=uint8> <ndim>``, then ``ndim`` big-endian uint32 sizes,
then the values in C order.

Example:

```python
from mobilenet_zoo.data import fashion_mnist

source = fashion_mnist.find()                     # None when nothing is installed
images, labels = fashion_mnist.load("train", source)  # (60000, 28, 28) uint8, (60000,) int64
```
"""

from __future__ import annotations

import gzip
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mobilenet_zoo.data.tfds_utils import load_split, tfds_prepared

# Debian's dataset-fashion-mnist package (`dpkg -L dataset-fashion-mnist`).
DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"
TFDS_NAME = "fashion_mnist"
# Zalando's label order (fashion-mnist README).
CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
SPLIT_SIZES = {"train": 60_000, "test": 10_000}
_PREFIX = {"train": "train", "test": "t10k"}
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
               0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}

HOW_TO_GET = (
    "Fashion-MNIST was not found. Install it offline-friendly with Debian's package "
    f"(`sudo apt install dataset-fashion-mnist`, files in {DEBIAN_DIR}), or put the four idx "
    "files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
    "t10k-labels-idx1-ubyte.gz) in a folder and pass it as --data-dir, or prepare TFDS "
    "`fashion_mnist` there (`tfds build fashion_mnist --data_dir DIR` on a machine with network)."
)


class IdxError(ValueError):
    """An idx file that is truncated, has a bad header or the wrong shape."""


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Reads one idx file (plain or gzip) into a numpy array; raises ``IdxError`` on bad files."""
    path = Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError
        raise IdxError(f"{path}: cannot read idx file ({e}).") from e
    if len(data) < 4:
        raise IdxError(f"{path}: {len(data)} bytes, too short for an idx header (4 bytes + sizes).")
    zero, code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or code not in _IDX_DTYPES or ndim == 0:
        raise IdxError(f"{path}: not an idx file (magic bytes {data[:4].hex()}; expected 0000 "
                       f"<dtype in {sorted(hex(c) for c in _IDX_DTYPES)}> <ndim >= 1>).")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IdxError(f"{path}: truncated header ({len(data)} bytes, {header} needed for {ndim} dims).")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(_IDX_DTYPES[code])
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(data) != expected:
        raise IdxError(f"{path}: {len(data)} bytes but the header declares shape {shape} of "
                       f"{dtype} ({expected} bytes); the file is truncated or corrupt.")
    return np.frombuffer(data, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


@dataclass(frozen=True)
class Source:
    """Where Fashion-MNIST was found: ``kind`` is ``"idx"`` or ``"tfds"``."""

    kind: str
    path: str

    def describe(self) -> str:
        return (f"Fashion-MNIST idx files in {self.path}" if self.kind == "idx"
                else f"TFDS {TFDS_NAME} under {self.path}")


def _idx_file(folder: Path, split: str, what: str) -> Path | None:
    stem = f"{_PREFIX[split]}-{what}-idx{3 if what == 'images' else 1}-ubyte"
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def _has_idx(folder: Path) -> bool:
    return all(_idx_file(folder, s, w) for s in SPLIT_SIZES for w in ("images", "labels"))


def find(data_dir: str | None = None, fallback: bool = True) -> Source | None:
    """The first source present: idx files in ``data_dir`` (or its ``fashion-mnist``
    subfolder), TFDS ``fashion_mnist`` under ``data_dir``, then (unless ``fallback``
    is False) Debian's package."""

    if data_dir:
        for folder in (Path(data_dir), Path(data_dir) / "fashion-mnist"):
            if _has_idx(folder):
                return Source("idx", str(folder))
        if tfds_prepared(TFDS_NAME, data_dir):
            return Source("tfds", str(data_dir))
    if fallback and _has_idx(Path(DEBIAN_DIR)):
        return Source("idx", DEBIAN_DIR)
    return None


def require(data_dir: str | None = None) -> Source:
    """``find`` or a ``FileNotFoundError`` that says how to install the data."""
    source = find(data_dir)
    if source is None:
        where = f" (looked in {data_dir} and {DEBIAN_DIR})" if data_dir else f" (looked in {DEBIAN_DIR})"
        raise FileNotFoundError(HOW_TO_GET + where)
    return source


def load(split: str, source: Source) -> tuple[np.ndarray, np.ndarray]:
    """``(images uint8 (N, 28, 28), labels int64 (N,))`` of ``split`` ("train" or "test")."""
    if split not in SPLIT_SIZES:
        raise ValueError(f"`split` must be one of {sorted(SPLIT_SIZES)}, got {split!r}.")
    if source.kind == "tfds":

        ds = load_split(TFDS_NAME, split, source.path, as_supervised=True, batch_size=-1)
        images, labels = (np.asarray(t) for t in ds)
        return images[..., 0], labels.astype(np.int64)
    folder = Path(source.path)
    images = read_idx(_idx_file(folder, split, "images"))
    labels = read_idx(_idx_file(folder, split, "labels"))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise IdxError(f"{folder} ({split}): images {images.shape} and labels {labels.shape} do not "
                       "pair up; expected (N, H, W) images and (N,) labels.")
    if labels.size and (labels.min() < 0 or labels.max() >= len(CLASS_NAMES)):
        raise IdxError(f"{folder} ({split}): labels must be in [0, {len(CLASS_NAMES) - 1}], "
                       f"found [{labels.min()}, {labels.max()}].")
    return images, labels.astype(np.int64)
