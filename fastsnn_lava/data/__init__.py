"""Datasets as raw integer pixels, shape (N, C, H, W), with labels and training hints.

Every dataset is returned as unsigned integers (pixels), so that the deployed network
takes raw inputs and the first layer's current ``W·x + b`` is an exact integer.

=====================  ==========================================================  ==========  =======
name                   source                                                      mean/std    augment
=====================  ==========================================================  ==========  =======
``digits``             scikit-learn's bundled 8×8 digits (0..16), fixed seeded     no          no
                       stratified 80/20 split; offline, the embedded default
``fashion-mnist``      Debian's ``dataset-fashion-mnist`` (``/usr/share/datasets/  no          no
                       fashion-mnist`` or ``$FASTSNN_FASHION_MNIST``), 60k/10k
``mnist``              torchvision download, cached (:mod:`.download`)             published   no
``cifar10``            torchvision download, cached (:mod:`.download`)             published   yes
``idx:DIR``            MNIST-format IDX files in DIR (:mod:`.idx`)                 from train  no
``imagefolder:DIR``    one sub-folder of images per class (:mod:`.images`)         from train  no
=====================  ==========================================================  ==========  =======

*mean/std*: per-channel statistics of ``x / input_max`` (the published values, or computed
on the training split); the float ANN trains on normalised inputs and the quantized ANN
folds the normalisation into its first layer. *augment*: random crop (4-pixel padding) and
horizontal flip during training (:mod:`.augment`).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import FastSNNError
from .base import Dataset, balanced_subset, channel_stats
from .idx import find_idx, load_idx_dir, read_idx

__all__ = ["Dataset", "DATASETS", "DATASET_HELP", "load_dataset", "read_idx", "fashion_dir", "channel_stats"]

FASHION_DIRS = ("/usr/share/datasets/fashion-mnist",)
DATASETS = ("digits", "fashion-mnist", "mnist", "cifar10", "idx:DIR", "imagefolder:DIR")
DATASET_HELP = ("digits (default), fashion-mnist, mnist, cifar10, idx:DIR (MNIST-format IDX files in DIR) or "
                "imagefolder:DIR (DIR/<class>/* or DIR/train/<class>/* and DIR/test/<class>/*)")
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot"]


def _digits() -> Dataset:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    d = load_digits()
    x = d.images.astype(np.uint8)[:, None]  # (N, 1, 8, 8), values 0..16
    xtr, xte, ytr, yte = train_test_split(x, d.target, test_size=0.2, stratify=d.target, random_state=0)
    return Dataset("digits", xtr, ytr.astype(np.int64), xte, yte.astype(np.int64), 16, [str(i) for i in range(10)])


def fashion_dir() -> Path | None:
    for cand in ([os.environ["FASTSNN_FASHION_MNIST"]] if os.environ.get("FASTSNN_FASHION_MNIST") else []) \
            + list(FASHION_DIRS):
        if find_idx(Path(cand), "t10k-images-idx3-ubyte") is not None:
            return Path(cand)
    return None


def _fashion() -> Dataset:
    root = fashion_dir()
    if root is None:
        raise FastSNNError("Fashion-MNIST not found: run 'apt-get install dataset-fashion-mnist' "
                           "or set FASTSNN_FASHION_MNIST to a folder with its IDX files")
    return Dataset("fashion-mnist", *load_idx_dir(root, "fashion-mnist"), 255, FASHION_CLASSES)


def _with_stats(ds: Dataset) -> Dataset:
    ds.mean, ds.std = channel_stats(ds.x_train, ds.input_max)
    return ds


def _labelled(name: str, xtr, ytr, xte, yte) -> Dataset:
    """An MNIST-format dataset whose classes are 0..K-1 (K = largest label + 1)."""
    k = int(max(ytr.max(), yte.max())) + 1
    if k < 2:
        raise FastSNNError(f"{name}: the labels name a single class: a classifier needs at least two")
    return _with_stats(Dataset(name, xtr, ytr, xte, yte, 255, [str(i) for i in range(k)]))


def load_dataset(name: str) -> Dataset:
    """The dataset called ``name`` (see the module docstring); FastSNNError for anything else."""
    if name == "digits":
        return _digits()
    if name == "fashion-mnist":
        return _fashion()
    if name == "mnist":
        from .download import MNIST_STATS, load_mnist
        return Dataset("mnist", *load_mnist(), 255, [str(i) for i in range(10)], *MNIST_STATS)
    if name == "cifar10":
        from .download import CIFAR10_CLASSES, CIFAR10_STATS, load_cifar10
        return Dataset("cifar10", *load_cifar10(), 255, CIFAR10_CLASSES, *CIFAR10_STATS, augment=True)
    kind, sep, path = name.partition(":")
    if sep and kind in ("idx", "imagefolder"):
        if not path:
            raise FastSNNError(f"dataset {name!r} names no folder: write {kind}:DIR")
        if kind == "idx":
            return _labelled(name, *load_idx_dir(path, name))
        from .images import load_imagefolder
        xtr, ytr, xte, yte, classes = load_imagefolder(path, name)
        return _with_stats(Dataset(name, xtr, ytr, xte, yte, 255, classes))
    raise FastSNNError(f"unknown dataset {name!r}: use {DATASET_HELP}")
