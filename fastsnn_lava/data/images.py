"""``imagefolder:DIR``: image files, one sub-folder per class.

Two layouts, tried in this order:

* ``DIR/train/<class>/*`` and ``DIR/test/<class>/*``: the split is yours; both must hold
  the same class folders.
* ``DIR/<class>/*``: split per class, deterministically, 80 % train / 20 % test (files sorted
  by name, then a seeded stratified split: the same folder always gives the same split).

Classes are the sub-folder names in sorted order (label k = k-th name). Files with an image
extension (``.png .jpg .jpeg .bmp .gif .tif .tiff .webp .ppm .pgm``) are read with Pillow;
other files and hidden files are ignored. All images must have one size. Images load as
8-bit pixels, (C, H, W) with ``input_max`` = 255: C = 1 when every image is greyscale
(Pillow modes ``1``, ``L``), else C = 3 (RGB; palette images are converted and an alpha
channel is dropped). Modes with more than 8 bits per channel are refused.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import FastSNNError

EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
GREY, COLOUR = {"1", "L"}, {"P", "RGB", "RGBA", "LA", "CMYK", "YCbCr"}
TEST_SHARE = 0.2


MAX_PIXELS = 4096 * 4096  # the largest image accepted (PIL's own bomb limit is ~89 million pixels)


def _class_files(root: Path, what: str) -> dict[str, list[Path]]:
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        raise FastSNNError(f"{what}: {root} has {len(classes)} class sub-folder(s): put each class's images "
                           "in its own sub-folder (at least two)")
    out = {}
    for c in classes:
        files = sorted(f for f in c.iterdir() if f.is_file() and not f.name.startswith(".")
                       and f.suffix.lower() in EXTENSIONS)
        if not files:
            raise FastSNNError(f"{what}: class folder {c} holds no images ({', '.join(sorted(EXTENSIONS))})")
        out[c.name] = files
    return out


def _read(files: list[Path]) -> tuple[list[np.ndarray], list[str]]:
    from PIL import Image, UnidentifiedImageError
    arrays, modes = [], []
    for f in files:
        try:
            with Image.open(f) as im:  # reads the header only
                if im.width * im.height > MAX_PIXELS:  # checked before decoding: a small file can declare a huge image
                    raise FastSNNError(f"{f} declares {im.width}×{im.height} pixels, more than the {MAX_PIXELS:,} "
                                       "read here: resize the images (SNN inputs are small)")
                im.load()
                if im.mode not in GREY | COLOUR:
                    raise FastSNNError(f"{f} has image mode {im.mode}: use 8-bit greyscale or RGB images")
                modes.append(im.mode)
                arrays.append(im.copy())
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
            raise FastSNNError(f"{f} is not a readable image ({type(e).__name__}: {str(e)[:80]})") from None
    return arrays, modes


def load_imagefolder(root: str, what: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """(x_train, y_train, x_test, y_test, classes) of an image folder; uint8, (N, C, H, W)."""
    root = Path(root)
    if not root.is_dir():
        raise FastSNNError(f"{what}: {root} is not a folder: give a folder with one sub-folder of images per class")
    if (root / "train").is_dir() and (root / "test").is_dir():
        train, test = _class_files(root / "train", what), _class_files(root / "test", what)
        if sorted(train) != sorted(test):
            raise FastSNNError(f"{what}: train/ has classes {sorted(train)} but test/ has {sorted(test)}: "
                               "both must hold the same class folders")
        classes = sorted(train)
        split = {"train": [(f, k) for k, c in enumerate(classes) for f in train[c]],
                 "test": [(f, k) for k, c in enumerate(classes) for f in test[c]]}
    else:
        per_class = _class_files(root, what)
        classes = sorted(per_class)
        split = {"train": [], "test": []}
        rng = np.random.default_rng(0)
        for k, c in enumerate(classes):
            files = per_class[c]
            if len(files) < 2:
                raise FastSNNError(f"{what}: class folder {root / c} holds {len(files)} image: a train/test split "
                                   "needs at least two per class (or use DIR/train and DIR/test)")
            n_test = min(len(files) - 1, max(1, round(TEST_SHARE * len(files))))
            test_idx = set(rng.permutation(len(files))[:n_test].tolist())
            for i, f in enumerate(files):
                split["test" if i in test_idx else "train"].append((f, k))
    images, modes = {}, []
    for part, items in split.items():
        images[part], m = _read([f for f, _ in items])
        modes += m
    colour = any(m not in GREY for m in modes)
    sizes = {}
    for part, items in split.items():
        for (f, _), im in zip(items, images[part]):
            sizes.setdefault(im.size, f)
    if len(sizes) > 1:
        (s1, f1), (s2, f2) = list(sizes.items())[:2]
        raise FastSNNError(f"{what}: images differ in size ({f1} is {s1[0]}x{s1[1]}, {f2} is {s2[0]}x{s2[1]}): "
                           "resize them to one size first")

    def stack(part):
        ims = [np.asarray(im.convert("RGB" if colour else "L"), dtype=np.uint8) for im in images[part]]
        x = np.stack(ims)
        x = x.transpose(0, 3, 1, 2) if colour else x[:, None]
        return np.ascontiguousarray(x), np.array([k for _, k in split[part]], dtype=np.int64)
    xtr, ytr = stack("train")
    xte, yte = stack("test")
    return xtr, ytr, xte, yte, classes
