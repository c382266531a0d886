"""The dataset record every loader returns: raw integer pixels, labels and what training needs to know.

* ``x_train``/``x_test``: unsigned integer pixels, shape (N, C, H, W) (0..``input_max``);
  the deployed network takes exactly these.
* ``mean``/``std``: per-channel statistics of ``x / input_max`` (or None). When set, the
  float ANN trains on ``(x/input_max − μ)/σ`` and the quantized ANN folds that into its first
  layer (:mod:`fastsnn_lava.normalize`), so the deployed network still takes raw pixels.
* ``augment``: train with random 4-pixel-padded crops and horizontal flips
  (:mod:`fastsnn_lava.data.augment`), on integer pixels.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Dataset:
    name: str
    x_train: np.ndarray  # integer inputs (N, *input_shape)
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    input_max: int
    classes: list
    mean: tuple | None = None  # per channel, of x / input_max
    std: tuple | None = None
    augment: bool = False

    @property
    def input_shape(self) -> tuple:
        return tuple(self.x_train.shape[1:])

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def norm(self) -> dict | None:
        """{"mean": [...], "std": [...]} (JSON-able, stored in checkpoints) or None."""
        if self.mean is None:
            return None
        return {"mean": [float(m) for m in self.mean], "std": [float(s) for s in self.std]}


def channel_stats(x: np.ndarray, input_max: int) -> tuple[tuple, tuple]:
    """Per-channel mean and standard deviation of ``x / input_max`` over (N, H, W)."""
    axes = (0,) + tuple(range(2, x.ndim))
    mean = x.mean(axis=axes, dtype=np.float64) / input_max
    std = x.std(axis=axes, dtype=np.float64) / input_max
    return tuple(float(m) for m in mean), tuple(max(float(s), 1e-3) for s in std)


def balanced_subset(y: np.ndarray, n: int | None, seed: int = 0) -> np.ndarray:
    """Indices of ``n`` samples (all if None or ≥ len(y), in their order) that take the classes in
    turn: a seeded random order within each class, then the first of every class, the second of every
    class, … (classes in ascending label order; sorted indices returned). A split sorted by class (an
    image folder) would otherwise give ``--samples 8`` eight images of class 0."""
    y = np.asarray(y)
    if n is None or n >= len(y):
        return np.arange(len(y))
    rng = np.random.default_rng(seed)
    queues = [rng.permutation(np.flatnonzero(y == c)) for c in np.unique(y)]
    order = [q[k] for k in range(max(len(q) for q in queues)) for q in queues if k < len(q)]
    return np.sort(np.asarray(order[:int(n)], dtype=np.int64))
