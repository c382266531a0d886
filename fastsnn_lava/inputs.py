"""Opening the files a user names, as an attacker might have written them.

Every reader of a user's file goes through here first, so that a hostile or careless input is a
one-line :class:`~fastsnn_lava.errors.FastSNNError` (exit 2), never a hang, a huge allocation or a
silently followed reference to another file:

* :func:`regular_file`: the path is a regular file (a FIFO would block the reader forever, a
  device or a folder is no network); a symbolic link to a regular file is fine.
* :func:`open_hdf5`: an HDF5 file whose every link is a plain (hard) link. netx files written by
  fastsnn-export or lava-dl hold only those; a soft link can loop ("too many links") and an
  external link silently reads another file, which may not be the one the user gave.
* :func:`dataset`: an HDF5 dataset read only after its declared size was checked against
  :data:`MAX_VALUES` (a header can declare 10^10 values in a few bytes).
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np

from .errors import FastSNNError

MAX_VALUES = 2 ** 26  # the most values one dataset (a weight tensor) may declare: 512 MiB of int64
MAX_LINKS = 100_000   # the most links an HDF5 file may hold (netx files hold a few per layer)


def regular_file(path, what: str = "file") -> Path:
    """``path`` as a Path if it names a regular file (following symbolic links); else a one-line error."""
    p = Path(path)
    try:
        mode = os.stat(p).st_mode
    except FileNotFoundError:
        raise FastSNNError(f"{path}: no such file") from None
    except OSError as e:  # a link loop, permissions, a name too long
        raise FastSNNError(f"{path}: cannot be read ({e.strerror or e})") from None
    if stat.S_ISDIR(mode):
        raise FastSNNError(f"{path} is a folder, not a {what}")
    if not stat.S_ISREG(mode):
        kind = "a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"
        raise FastSNNError(f"{path} is {kind}, not a regular file: give the {what} itself")
    if not os.access(p, os.R_OK):
        raise FastSNNError(f"{path}: permission denied")
    return p


def check_links(f, path) -> None:
    """Refuse an HDF5 file with a soft or external link anywhere, or more than MAX_LINKS links."""
    import h5py
    seen, stack, count = set(), [("", f)], 0
    while stack:
        name, group = stack.pop()
        addr = h5py.h5o.get_info(group.id).addr
        if addr in seen:  # a group hard-linked in twice (or into itself): walk it once
            continue
        seen.add(addr)
        for key in group.keys():
            count += 1
            if count > MAX_LINKS:
                raise FastSNNError(f"{path} holds more than {MAX_LINKS} HDF5 objects: not a network file")
            link = group.get(key, getlink=True)
            where = f"{name}/{key}"
            if isinstance(link, h5py.ExternalLink):
                raise FastSNNError(f"{path}: {where} is an external link to {link.filename}:{link.path}; a "
                                   "network file must hold its own data (refusing to read another file)")
            if isinstance(link, h5py.SoftLink):
                raise FastSNNError(f"{path}: {where} is a soft link to {link.path}; a network file holds only "
                                   "plain datasets and groups")
            obj = group.get(key)
            if isinstance(obj, h5py.Group):
                stack.append((where, obj))


def open_hdf5(path, what: str = "network file"):
    """An open, read-only ``h5py.File`` of a regular file without soft or external links."""
    import h5py
    p = regular_file(path, what)
    try:
        f = h5py.File(p, "r")
    except OSError:
        raise FastSNNError(f"{path} is not an HDF5 file: give a netx network (fastsnn-export writes one)") from None
    try:
        check_links(f, path)
    except BaseException:
        f.close()
        raise
    return f


def dataset(ds, where: str) -> np.ndarray:
    """The values of an HDF5 dataset, after checking the size it declares."""
    if ds.size is not None and ds.size > MAX_VALUES:
        raise FastSNNError(f"{where} declares {ds.size:,} values (shape {ds.shape}), more than the {MAX_VALUES:,} "
                           "this tool reads: not a network Loihi 2 or this simulator could hold")
    return np.asarray(ds[()])
