"""MNIST-format IDX files: the ``fashion-mnist`` package files and ``idx:DIR``.

A folder in MNIST format holds four files, each optionally gzipped (``.gz``)::

    train-images-idx3-ubyte   (N, H, W) unsigned bytes, big-endian header
    train-labels-idx1-ubyte   (N,)      class indices 0..K-1
    t10k-images-idx3-ubyte
    t10k-labels-idx1-ubyte

Images are single-channel (MNIST format has no channel axis; colour data go through
``imagefolder:DIR``); they load as (N, 1, H, W) with ``input_max`` = 255.
"""
from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path

import numpy as np

from ..errors import FastSNNError

STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


MAX_BYTES = 2 ** 30  # the most image or label bytes one IDX file may declare (Fashion-MNIST's train set: 47 MB)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (optionally gzipped): big-endian header, then uint8 data in C order.

    The header is read first and the size it declares checked (at most MAX_BYTES), so that neither a
    hostile header nor a gzip bomb makes this allocate more than the data the file says it holds.
    """
    opener = gzip.open if str(path).endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            head = f.read(4)
            if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] != 0x08:
                raise FastSNNError(f"{path} is not an IDX file of unsigned bytes")
            ndim = head[3]
            raw_dims = f.read(4 * ndim)
            if len(raw_dims) < 4 * ndim:
                raise FastSNNError(f"{path} is truncated: its header names {ndim} dimensions")
            dims = [int(d) for d in np.frombuffer(raw_dims, dtype=">u4")]
            size = math.prod(dims)
            if size > MAX_BYTES:
                raise FastSNNError(f"{path} declares {size:,} values (shape {tuple(dims)}), more than the "
                                   f"{MAX_BYTES:,} read here: not an image set this tool trains on")
            raw = f.read(size + 1)
    except (OSError, EOFError, zlib.error) as e:
        raise FastSNNError(f"{path} could not be read ({type(e).__name__}: {str(e)[:80]})") from None
    if len(raw) != size:
        found = "more" if len(raw) > size else len(raw)
        raise FastSNNError(f"{path} is truncated or damaged: its header declares {size} values, found {found}")
    return np.frombuffer(raw, dtype=np.uint8).reshape(tuple(dims))


def find_idx(root: Path, stem: str) -> Path | None:
    for name in (stem, f"{stem}.gz"):
        if (root / name).is_file():
            return root / name
    return None


def load_idx_dir(root: str | os.PathLike, what: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_test, y_test) from an MNIST-format folder; ``what`` names it in errors."""
    root = Path(root)
    if not root.is_dir():
        raise FastSNNError(f"{what}: {root} is not a folder: give a folder holding {STEMS[0]}[.gz] and the other "
                           "three MNIST-format files")
    paths = [find_idx(root, s) for s in STEMS]
    missing = [s for s, p in zip(STEMS, paths) if p is None]
    if missing:
        raise FastSNNError(f"{what}: {root} lacks {', '.join(missing)} (.gz or not): an MNIST-format folder "
                           "holds train-/t10k- images-idx3-ubyte and labels-idx1-ubyte")
    xtr, ytr, xte, yte = (read_idx(p) for p in paths)
    for x, y, px, py in ((xtr, ytr, paths[0], paths[1]), (xte, yte, paths[2], paths[3])):
        if x.ndim != 3:
            raise FastSNNError(f"{px} has shape {x.shape}: MNIST-format images are (N, H, W), one channel "
                               "(use imagefolder:DIR for colour images)")
        if y.ndim != 1 or len(y) != len(x):
            raise FastSNNError(f"{py} holds {y.shape} labels for {len(x)} images in {px.name}: they must match")
        if len(x) == 0:
            raise FastSNNError(f"{px} holds no images")
    if xtr.shape[1:] != xte.shape[1:]:
        raise FastSNNError(f"{what}: train images are {xtr.shape[1:]} but test images are {xte.shape[1:]}: "
                           "they must have one size")
    return xtr[:, None].astype(np.uint8), ytr.astype(np.int64), xte[:, None].astype(np.uint8), yte.astype(np.int64)
