"""Datasets as raw integer arrays.

Every dataset is returned as integers (pixels), so that the deployed network
takes raw inputs and the first layer's current ``W·x + b`` is an exact integer.

* ``digits``: scikit-learn's bundled 8×8 digits (values 0..16), a fixed,
  seeded, stratified 80/20 split. Instant and offline: the embedded default.
* ``fashion-mnist``: the full official set (60k/10k, 28×28, 0..255) read from the
  IDX files of Debian's ``dataset-fashion-mnist`` package
  (``/usr/share/datasets/fashion-mnist``, or the folder in ``$FASTSNN_FASHION_MNIST``).
"""
from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import FastSNNError

FASHION_DIRS = ("/usr/share/datasets/fashion-mnist",)
DATASETS = ("digits", "fashion-mnist")


@dataclass
class Dataset:
    name: str
    x_train: np.ndarray  # integer inputs (N, *input_shape)
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    input_max: int
    classes: list

    @property
    def input_shape(self) -> tuple:
        return tuple(self.x_train.shape[1:])

    @property
    def n_classes(self) -> int:
        return len(self.classes)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (optionally gzipped): big-endian header, then uint8 data in C order."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise FastSNNError(f"{path} is not an IDX file of unsigned bytes")
    ndim = raw[3]
    dims = np.frombuffer(raw, dtype=">u4", count=ndim, offset=4).astype(int)
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise FastSNNError(f"{path} is truncated: expected {int(np.prod(dims))} values, found {data.size}")
    return data.reshape(tuple(dims))


def _digits() -> Dataset:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    d = load_digits()
    x = d.images.astype(np.int64)[:, None]  # (N, 1, 8, 8), values 0..16
    xtr, xte, ytr, yte = train_test_split(x, d.target, test_size=0.2, stratify=d.target, random_state=0)
    return Dataset("digits", xtr, ytr.astype(np.int64), xte, yte.astype(np.int64), 16, [str(i) for i in range(10)])


def fashion_dir() -> Path | None:
    for cand in ([os.environ["FASTSNN_FASHION_MNIST"]] if os.environ.get("FASTSNN_FASHION_MNIST") else []) \
            + list(FASHION_DIRS):
        if Path(cand, "t10k-images-idx3-ubyte.gz").exists() or Path(cand, "t10k-images-idx3-ubyte").exists():
            return Path(cand)
    return None


def _fashion() -> Dataset:
    root = fashion_dir()
    if root is None:
        raise FastSNNError("Fashion-MNIST not found: run 'apt-get install dataset-fashion-mnist' "
                           "or set FASTSNN_FASHION_MNIST to a folder with its IDX files")

    def load(stem):
        p = root / f"{stem}.gz"
        return read_idx(p if p.exists() else root / stem)
    xtr, ytr = load("train-images-idx3-ubyte"), load("train-labels-idx1-ubyte")
    xte, yte = load("t10k-images-idx3-ubyte"), load("t10k-labels-idx1-ubyte")
    classes = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
               "Ankle boot"]
    return Dataset("fashion-mnist", xtr[:, None].astype(np.int64), ytr.astype(np.int64),
                   xte[:, None].astype(np.int64), yte.astype(np.int64), 255, classes)


def load_dataset(name: str) -> Dataset:
    if name == "digits":
        return _digits()
    if name == "fashion-mnist":
        return _fashion()
    raise FastSNNError(f"unknown dataset {name!r}: use one of {', '.join(DATASETS)}")
