"""Small generated datasets for tests: PNG folders (Pillow) and MNIST-format IDX files.

Class k's images carry a bright block at a class-specific place on a noisy background, so a
tiny network learns them in an epoch or two.
"""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np


def images(n_per_class: int, n_classes: int = 3, size: int = 8, channels: int = 1, seed: int = 0):
    """(x uint8 (N, size, size[, channels]), y) with a class-dependent block."""
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for k in range(n_classes):
        for _ in range(n_per_class):
            img = rng.integers(0, 60, (size, size, channels))
            r = (k * size) // n_classes
            img[r:r + max(2, size // n_classes), :] += 180
            xs.append(img.clip(0, 255).astype(np.uint8))
            ys.append(k)
    x = np.stack(xs)
    return (x[..., 0] if channels == 1 else x), np.array(ys)


def write_pngs(root: Path, x: np.ndarray, y: np.ndarray, names: list[str]) -> None:
    from PIL import Image
    for i, (img, k) in enumerate(zip(x, y)):
        d = root / names[k]
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(d / f"img{i:04d}.png")


def imagefolder(root: Path, n_per_class: int = 12, channels: int = 1, split: bool = True, size: int = 8,
                names=("cat", "dog", "emu")) -> Path:
    """DIR/train/<class>, DIR/test/<class> (split) or DIR/<class> (no split)."""
    if split:
        x, y = images(n_per_class, len(names), size, channels, seed=0)
        write_pngs(root / "train", x, y, list(names))
        x, y = images(max(2, n_per_class // 3), len(names), size, channels, seed=1)
        write_pngs(root / "test", x, y, list(names))
    else:
        x, y = images(n_per_class, len(names), size, channels, seed=0)
        write_pngs(root, x, y, list(names))
    return root


def write_idx(path: Path, a: np.ndarray) -> None:
    """An IDX file of unsigned bytes (gzipped when the name ends in .gz)."""
    a = np.ascontiguousarray(a, dtype=np.uint8)
    header = bytes([0, 0, 8, a.ndim]) + np.array(a.shape, dtype=">u4").tobytes()
    (gzip.open if str(path).endswith(".gz") else open)(path, "wb").write(header + a.tobytes())


def idx_folder(root: Path, n_per_class: int = 20, gz: bool = True, size: int = 8) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    ext = ".gz" if gz else ""
    for part, n, seed in (("train", n_per_class, 0), ("t10k", max(2, n_per_class // 3), 1)):
        x, y = images(n, 3, size, 1, seed)
        write_idx(root / f"{part}-images-idx3-ubyte{ext}", x)
        write_idx(root / f"{part}-labels-idx1-ubyte{ext}", y)
    return root
