"""Typed access to the datasets of a netx file (h5py), shared by both netx readers and writers.

Every problem is a :class:`~fastsnn_lava.errors.FastSNNError` naming the group and key.
"""
from __future__ import annotations

import h5py
import numpy as np

from ..errors import FastSNNError
from ..inputs import dataset
from .schema import GEOMETRY_KEYS, GROUPS_KEY, TYPE_KEY

INT_KINDS = "iu"


def text(ds) -> str:
    """A scalar (or one-element) string dataset as ``str``."""
    v = ds[()]
    if isinstance(v, np.ndarray):
        if v.size != 1:
            raise ValueError("expected one string")
        v = v.ravel()[0]
    return v.decode("ascii") if isinstance(v, bytes) else str(v)


def int_array(g: h5py.Group, key: str, where: str) -> np.ndarray:
    """``g[key]`` as int64: integer datasets, or floats that hold exact integers below 2^53."""
    if key not in g:
        raise FastSNNError(f"{where}: missing key '{key}'")
    ds = g[key]
    if not isinstance(ds, h5py.Dataset) or ds.dtype.kind not in INT_KINDS + "f":
        raise FastSNNError(f"{where}: key '{key}' is not a numeric array")
    a = dataset(ds, f"{where}/{key}")
    if a.dtype.kind == "f" and not np.all(np.isfinite(a) & (a == np.round(a)) & (np.abs(a) < 2.0 ** 53)):
        raise FastSNNError(f"{where}: key '{key}' holds non-integer values")
    if a.dtype.kind == "u" and a.size and a.max() > np.iinfo(np.int64).max:
        raise FastSNNError(f"{where}: key '{key}' holds values beyond 64-bit integers")
    return a.astype(np.int64)


def scalar(g: h5py.Group, key: str, where: str) -> int:
    a = int_array(g, key, where)
    if a.size != 1:
        raise FastSNNError(f"{where}: key '{key}' must be one integer, found shape {a.shape}")
    return int(a.ravel()[0])


def read_geometry(g: h5py.Group, where: str) -> dict:
    """A conv's ``stride``/``padding``/``dilation`` (one value or a pair each) and ``groups``."""
    geometry = {k: tuple(int(a) for a in np.broadcast_to(int_array(g, k, where), (2,))) for k in GEOMETRY_KEYS}
    geometry["groups"] = scalar(g, GROUPS_KEY, where)
    return geometry


def write_type(group: h5py.Group, name: str) -> None:
    """A layer's ``type`` as netx reads it (a one-element fixed-length byte string)."""
    group.create_dataset(TYPE_KEY, data=np.array([name.encode("ascii")], dtype="S10"))


def write_geometry(g: h5py.Group, syn) -> None:
    for key in GEOMETRY_KEYS:
        g.create_dataset(key, data=np.array(getattr(syn, key), dtype=np.int64))
    g.create_dataset(GROUPS_KEY, data=np.int64(syn.groups))
