"""``mnist`` and ``cifar10`` through torchvision, cached in one folder.

The cache is ``$FASTSNN_DATA`` if set, else ``~/.cache/fastsnn-lava``. A dataset found
there loads offline; otherwise torchvision downloads it (once). With ``FASTSNN_OFFLINE=1``
nothing is downloaded. Without network access and without a cached copy, the error says
where to put the files.

* ``mnist``: ``<cache>/MNIST/raw/`` holds the four IDX files (torchvision's layout), read
  with :func:`fastsnn_lava.data.idx.read_idx`.
* ``cifar10``: first ``$FASTSNN_CIFAR10`` or a decoded JPEG archive in the cache (:mod:`.cifar`),
  then ``<cache>/cifar-10-batches-py/`` (the official python version, as torchvision unpacks it),
  50k/10k RGB 32×32 images.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import FastSNNError
from .idx import find_idx, load_idx_dir

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
# The usual published statistics of x / 255 on the training sets.
MNIST_STATS = ((0.1307,), (0.3081,))
CIFAR10_STATS = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))


def cache_dir() -> Path:
    return Path(os.environ.get("FASTSNN_DATA") or Path.home() / ".cache" / "fastsnn-lava")


def _download(cls, name: str, how: str) -> None:
    root = cache_dir()
    if os.environ.get("FASTSNN_OFFLINE") == "1":
        raise FastSNNError(f"{name} is not in {root} and FASTSNN_OFFLINE=1 forbids downloading: {how}")
    import torchvision  # noqa: F401  (only needed to download)
    try:
        root.mkdir(parents=True, exist_ok=True)
        for train in (True, False):
            cls(str(root), train=train, download=True)
    except Exception as e:  # no network, a proxy, a full disk: one line
        raise FastSNNError(f"{name} could not be downloaded to {root} ({type(e).__name__}: {str(e)[:80]}): "
                           f"{how}") from None


def load_mnist() -> tuple:
    root = cache_dir() / "MNIST" / "raw"
    how = (f"run 'fastsnn-train --dataset mnist' once on a machine with internet access and copy its "
           f"cache folder MNIST/raw/ into {cache_dir()}, or set FASTSNN_DATA to a folder that holds MNIST/raw/")
    if find_idx(root, "t10k-labels-idx1-ubyte") is None:
        from torchvision.datasets import MNIST
        _download(MNIST, "MNIST", how)
    return load_idx_dir(root, "mnist")


def load_cifar10() -> tuple:
    """CIFAR-10 from ``$FASTSNN_CIFAR10`` or the cache (:mod:`.cifar`: the JPEG archive, no download),
    else torchvision's ``cifar-10-batches-py`` (downloaded once if allowed)."""
    from .cifar import load_local
    root = cache_dir()
    given = os.environ.get("FASTSNN_CIFAR10")
    local = load_local(root)
    if local is not None:
        return local
    if given and (Path(given) / "cifar-10-batches-py").is_dir():
        root = Path(given)
    how = (f"set FASTSNN_CIFAR10 to the cifar10-jpeg.tar.gz archive (or the folder it unpacks to), or set "
           f"FASTSNN_DATA to a folder holding torchvision's cifar-10-batches-py/ (now {root}), or run "
           "'fastsnn-train --dataset cifar10' once on a machine with internet access")
    from torchvision.datasets import CIFAR10
    parts = []
    for train in (True, False):
        try:
            ds = CIFAR10(str(root), train=train, download=False)
        except RuntimeError:  # torchvision: "Dataset not found or corrupted"
            _download(CIFAR10, "CIFAR-10", how)
            ds = CIFAR10(str(root), train=train, download=False)
        parts += [np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2)), np.asarray(ds.targets, dtype=np.int64)]
    return tuple(parts)
