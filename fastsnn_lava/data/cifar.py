"""CIFAR-10 without a download: the JPEG archive, an unpacked folder, or torchvision's cache.

``--dataset cifar10`` looks, in this order, for

1. ``$FASTSNN_CIFAR10``: a ``cifar10-jpeg.tar.gz`` archive (``cifar10/{train,test}/<class>/NNNN.jpg``,
   the 32×32 JPEG re-encodings of the public CIFAR-10-images repository), the folder it unpacks to
   (``.../cifar10`` with ``train/`` and ``test/``), or a folder holding torchvision's
   ``cifar-10-batches-py/``;
2. the decoded arrays cached from such an archive, ``<cache>/cifar10-jpeg-<key>.npz`` (the key names
   the source's path, size and modification time, so another archive is decoded anew);
3. torchvision's ``<cache>/cifar-10-batches-py/`` (the original release), downloading it if allowed
   (:mod:`fastsnn_lava.data.download`).

An archive is read in memory, member by member (nothing is extracted, so no member name can
write outside the cache), each image decoded with Pillow and checked to be 32×32 RGB; the
decoded uint8 arrays are then cached, so the ~20 s decode happens once. **JPEG pixels differ
slightly from the original release**: accuracies on them are close to, not equal to, published ones.

**Order.** The archive lists each split class by class. The test images are served interleaved, one
of each class in turn (:func:`interleave`), so that the first N test images, which ``fastsnn-run
--samples N`` and the tables' Lava columns read, hold every class equally (the first 100: ten of
each), as a prefix of the original release's mixed test batch would; the training images keep the
archive's order (training draws its batches at random).
"""
from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import numpy as np

from ..errors import FastSNNError

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
SPLITS = {"train": 50_000, "test": 10_000}  # the most images per split accepted (CIFAR-10's sizes)
MAX_MEMBER = 1 << 16  # bytes: a 32×32 JPEG is about 1 KB
CACHE_GLOB = "cifar10-jpeg-*.npz"


def _decode(data: bytes, where: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.size != (32, 32):
                raise FastSNNError(f"{where} is {im.size[0]}×{im.size[1]}: CIFAR-10 images are 32×32")
            return np.asarray(im.convert("RGB"), dtype=np.uint8).transpose(2, 0, 1)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise FastSNNError(f"{where} is not a readable JPEG ({type(e).__name__})") from None


def _member_split(name: str) -> tuple[str, int] | None:
    """("train" | "test", class index) of ``…/{train,test}/<class>/<file>.jpg``, else None."""
    parts = name.split("/")
    if len(parts) < 3 or not parts[-1].lower().endswith((".jpg", ".jpeg", ".png")):
        return None
    split, cls = parts[-3], parts[-2]
    if split not in SPLITS or cls not in CLASSES:
        return None
    return split, CLASSES.index(cls)


def _collect(items, what: str) -> tuple:
    """(x_train, y_train, x_test, y_test) from (name, bytes) pairs in a stable (sorted) order."""
    found = {"train": [], "test": []}
    for name, read in items:
        key = _member_split(name)
        if key is None:
            continue
        split, label = key
        if len(found[split]) >= SPLITS[split]:
            raise FastSNNError(f"{what} holds more than {SPLITS[split]} {split} images: not CIFAR-10")
        found[split].append((name, label, read()))
    out = []
    for split in ("train", "test"):
        if not found[split]:
            raise FastSNNError(f"{what} holds no {split}/<class>/*.jpg images: give the cifar10-jpeg archive "
                               "or the folder it unpacks to")
        found[split].sort(key=lambda t: t[0])
        out += [np.stack([_decode(d, f"{what}:{n}") for n, _, d in found[split]]),
                np.array([label for _, label, _ in found[split]], dtype=np.int64)]
    return tuple(out)


def read_archive(path) -> tuple:
    """The four arrays of a ``cifar10-jpeg.tar.gz`` archive (see the module)."""
    from ..inputs import regular_file
    regular_file(path, "CIFAR-10 archive")

    def members(tf):
        for m in tf:
            if m.isfile() and _member_split(m.name) is not None:
                if m.size > MAX_MEMBER:
                    raise FastSNNError(f"{path}:{m.name} is {m.size} bytes, too large for a 32×32 JPEG")
                yield m.name, (lambda m=m: tf.extractfile(m).read())
    try:
        with tarfile.open(path, "r:*") as tf:
            return _collect(members(tf), str(path))
    except (tarfile.TarError, OSError, EOFError) as e:
        raise FastSNNError(f"{path} is not a readable tar archive ({type(e).__name__}: {str(e)[:80]})") from None


def read_folder(root: Path) -> tuple:
    """The four arrays of an unpacked ``cifar10/{train,test}/<class>/*.jpg`` folder."""
    files = sorted(p for split in SPLITS for p in (root / split).glob("*/*") if p.is_file())
    return _collect(((p.relative_to(root.parent).as_posix(), p.read_bytes) for p in files), str(root))


def _key(source: Path) -> str:
    import hashlib
    st = source.stat()
    return hashlib.sha256(f"{source.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]


def _read_cache(path: Path) -> tuple | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = tuple(z[k] for k in ("x_train", "y_train", "x_test", "y_test"))
    except Exception:  # a damaged cache is rebuilt, not trusted
        return None
    if arrays[0].ndim != 4 or arrays[0].shape[1:] != (3, 32, 32) or len(arrays[0]) != len(arrays[1]):
        return None
    return arrays


def save_cache(path: Path, arrays: tuple) -> None:
    from ..atomic import atomic_path
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **dict(zip(("x_train", "y_train", "x_test", "y_test"), arrays)))


def interleave(y: np.ndarray) -> np.ndarray:
    """The order that takes one image of each class in turn: the k-th image of class c goes before the
    (k+1)-th of any class and after the k-th of classes < c (a stable reordering of ``y``)."""
    rank = np.zeros(len(y), dtype=np.int64)
    for c in np.unique(y):
        where = np.flatnonzero(y == c)
        rank[where] = np.arange(len(where))
    return np.lexsort((y, rank))


def load_local(cache: Path) -> tuple | None:
    """CIFAR-10 from ``$FASTSNN_CIFAR10`` or a decoded cache (see the module), its test split interleaved by
    class (:func:`interleave`); None if neither has it."""
    arrays = _load_local(cache)
    if arrays is None:
        return None
    x_train, y_train, x_test, y_test = arrays
    order = interleave(y_test)
    return x_train, y_train, x_test[order], y_test[order]


def _load_local(cache: Path) -> tuple | None:
    """The decoded arrays in the archive's order, from ``$FASTSNN_CIFAR10`` or a decoded cache."""
    given = os.environ.get("FASTSNN_CIFAR10")
    if not given:
        for path in sorted(cache.glob(CACHE_GLOB)):
            arrays = _read_cache(path)
            if arrays is not None:
                return arrays
        return None
    p = Path(given)
    if not p.exists():
        raise FastSNNError(f"FASTSNN_CIFAR10={given}: no such file or folder (give the cifar10-jpeg.tar.gz "
                           "archive or the folder it unpacks to)")
    if (p / "cifar-10-batches-py").is_dir():
        return None  # torchvision's layout: the caller reads it from there
    path = cache / CACHE_GLOB.replace("*", _key(p))
    arrays = _read_cache(path) if path.is_file() else None
    if arrays is None:
        if p.is_dir():
            arrays = read_folder(p if (p / "train").is_dir() else p / "cifar10")
        else:
            arrays = read_archive(p)
        save_cache(path, arrays)
    return arrays
