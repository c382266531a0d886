"""Read a netx HDF5 file written by :mod:`.write` back into an integer Network.

Every problem is a :class:`~fastsnn_lava.errors.FastSNNError` naming the layer
and key, raised before any Lava process is built.
"""
from __future__ import annotations

import json

import h5py
import numpy as np

from ..errors import FastSNNError
from ..inputs import dataset, open_hdf5
from ..ir import Layer, Network, Skip
from .schema import FORMAT_VERSION, IR_NEURONS, META_GROUP, SKIP_GROUP, reset_interval

INT_KINDS = "iu"


def _str(ds) -> str:
    v = ds[()]
    if isinstance(v, np.ndarray):
        if v.size != 1:
            raise ValueError("expected one string")
        v = v.ravel()[0]
    return v.decode("ascii") if isinstance(v, bytes) else str(v)


def _int_array(g: h5py.Group, key: str, where: str) -> np.ndarray:
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


def _scalar(g: h5py.Group, key: str, where: str) -> int:
    a = _int_array(g, key, where)
    if a.size != 1:
        raise FastSNNError(f"{where}: key '{key}' must be one integer, found shape {a.shape}")
    return int(a.ravel()[0])


def _geometry(g: h5py.Group, where: str) -> dict:
    geometry = {k: tuple(int(a) for a in np.broadcast_to(_int_array(g, k, where), (2,)))
                for k in ("stride", "padding", "dilation")}
    geometry["groups"] = _scalar(g, "groups", where)
    return geometry


def _read_skips(g: h5py.Group, where: str, index: int, layers: list, ir_of: dict) -> list:
    """The shortcuts of IR layer ``index`` (1-based); ``ir_of`` maps /layer numbers to IR indices."""
    if SKIP_GROUP not in g:
        return []
    sg = g[SKIP_GROUP]
    names = list(sg.keys())
    if sorted(names, key=lambda s: (len(s), s)) != [str(i) for i in range(len(names))]:
        raise FastSNNError(f"{where}/{SKIP_GROUP}: skips must be numbered 0..{len(names) - 1}, found {names}")
    skips = []
    for m in range(len(names)):
        h, w = sg[str(m)], f"{where}/{SKIP_GROUP}/{m}"
        src = _scalar(h, "source", w)
        if src not in ir_of:
            raise FastSNNError(f"{w}: key 'source' = {src} is not an earlier conv or dense layer")
        source = ir_of[src]
        if _scalar(h, "delay", w) != index - source - 1:
            raise FastSNNError(f"{w}: key 'delay' must be {index - source - 1} (layers between source and target)")
        kind = _str(h["type"]) if "type" in h else None
        if kind not in ("dense", "conv"):
            raise FastSNNError(f"{w}: key 'type' must be dense or conv, found {kind!r}")
        geometry = _geometry(h, w) if kind == "conv" else {}
        try:
            skips.append(Skip(source=source, kind=kind, weight=_int_array(h, "weight", w),
                              in_shape=layers[source - 1].out_shape, **geometry))
        except FastSNNError as e:
            raise FastSNNError(f"{w}: {e}") from None
    return skips


def read_network(path) -> Network:
    f = open_hdf5(path)  # a regular file, no soft or external links (inputs.py)
    try:
        with f:
            return _read(f, str(path))
    except FastSNNError:
        raise
    except (KeyError, ValueError, TypeError, OSError, UnicodeDecodeError, IndexError, OverflowError,
            RuntimeError, RecursionError) as e:
        raise FastSNNError(f"{path} is a damaged netx network ({type(e).__name__}: {str(e)[:100]})") from None


META_CHARS = 1_000_000  # the longest /fastsnn/meta JSON accepted


def _meta(meta_g: h5py.Group, path: str) -> dict:
    """The /fastsnn/meta JSON object (the training record): a JSON object, or an empty one if absent."""
    if "meta" not in meta_g:
        return {}
    ds = meta_g["meta"]
    if not isinstance(ds, h5py.Dataset) or ds.size != 1 or ds.dtype.kind not in "OSU":
        raise FastSNNError(f"{path}: /{META_GROUP}/meta must be one JSON string")
    text = _str(ds)
    if len(text) > META_CHARS:
        raise FastSNNError(f"{path}: /{META_GROUP}/meta is {len(text):,} characters long (at most {META_CHARS:,})")
    try:
        meta = json.loads(text)
    except (ValueError, RecursionError):
        raise FastSNNError(f"{path}: /{META_GROUP}/meta is not valid JSON (or nested too deep)") from None
    if not isinstance(meta, dict):
        raise FastSNNError(f"{path}: /{META_GROUP}/meta must be a JSON object, found a {type(meta).__name__}")
    return meta


def _read(f: h5py.File, path: str) -> Network:
    if "layer" not in f or not isinstance(f["layer"], h5py.Group):
        raise FastSNNError(f"{path} is not a netx network (no /layer group)")
    if META_GROUP not in f:
        raise FastSNNError(f"{path} is a netx network without the /{META_GROUP} group: "
                           "only networks written by fastsnn-export can be run")
    meta_g = f[META_GROUP]
    version = _scalar(meta_g, "format_version", f"/{META_GROUP}")
    if not 1 <= version <= FORMAT_VERSION:
        raise FastSNNError(f"{path} has format version {version}; this tool reads 1..{FORMAT_VERSION}: upgrade it")
    bits = _scalar(meta_g, "bits", f"/{META_GROUP}")
    if not 1 <= bits <= 8 or _scalar(meta_g, "timesteps", f"/{META_GROUP}") != 2 ** bits - 1:
        raise FastSNNError(f"/{META_GROUP}: timesteps must equal 2^bits - 1 for bits in 1..8")
    if _scalar(meta_g, "reset_interval", f"/{META_GROUP}") != reset_interval(2 ** bits - 1):
        raise FastSNNError(f"/{META_GROUP}: reset_interval must be {reset_interval(2 ** bits - 1)} for {bits} bits")
    input_max = _scalar(meta_g, "input_max", f"/{META_GROUP}")
    shape = _int_array(meta_g, "input_shape", f"/{META_GROUP}")
    if shape.ndim != 1 or not 1 <= shape.size <= 3 or (shape < 1).any():
        raise FastSNNError(f"/{META_GROUP}: key 'input_shape' must be 1 to 3 positive integers, found {shape.tolist()}")
    input_shape = tuple(int(a) for a in shape)
    meta = _meta(meta_g, path)
    names = list(f["layer"].keys())
    if sorted(names, key=lambda s: (len(s), s)) != [str(i) for i in range(len(names))]:
        raise FastSNNError(f"{path}: layers must be numbered 0..{len(names) - 1} without gaps, found {names}")
    groups = [f["layer"][str(i)] for i in range(len(names))]
    if not groups or "type" not in groups[0] or _str(groups[0]["type"]) != "input":
        raise FastSNNError(f"{path}: /layer/0 must be the input layer")
    if int(np.prod(_int_array(groups[0], "shape", "/layer/0"))) != int(np.prod(input_shape)):
        raise FastSNNError(f"/layer/0: key 'shape' does not match /{META_GROUP}/input_shape {input_shape}")
    prev = input_shape
    layers, ir_of = [], {}
    for i, g in enumerate(groups[1:], start=1):
        where = f"/layer/{i}"
        if "type" not in g:
            raise FastSNNError(f"{where}: missing key 'type'")
        kind = _str(g["type"])
        if kind == "flatten":
            continue
        if kind not in ("dense", "conv"):
            raise FastSNNError(f"{where}: layer type '{kind}' is not supported: use dense, conv or flatten")
        if "neuron" not in g or "type" not in g["neuron"]:
            raise FastSNNError(f"{where}: missing key 'neuron/type'")
        ntype = _str(g["neuron"]["type"])
        if ntype not in IR_NEURONS:
            raise FastSNNError(f"{where}: neuron type '{ntype}' is not supported: use one of {sorted(IR_NEURONS)}")
        neuron = IR_NEURONS[ntype]
        theta = _scalar(g["neuron"], "theta", where + "/neuron") if neuron != "accumulate" else None
        out_shape = tuple(int(a) for a in _int_array(g, "shape", where))
        geometry = _geometry(g, where) if kind == "conv" else {}
        skips = _read_skips(g, where, len(layers) + 1, layers, ir_of)
        try:
            layer = Layer(kind=kind, weight=_int_array(g, "weight", where), bias=_int_array(g, "bias", where),
                          neuron=neuron, threshold=theta, in_shape=prev, out_shape=out_shape, skips=skips,
                          **geometry)
        except FastSNNError as e:
            raise FastSNNError(f"{where}: {e}") from None
        layers.append(layer)
        ir_of[i] = len(layers)
        prev = out_shape
    try:
        return Network(input_shape=input_shape, layers=layers, bits=bits, input_max=input_max, meta=meta)
    except FastSNNError as e:
        raise FastSNNError(f"{path}: {e}") from None
