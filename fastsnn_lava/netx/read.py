"""Read a netx HDF5 file written by :mod:`.write` back into an integer Network.

Every problem is a :class:`~fastsnn_lava.errors.FastSNNError` naming the layer
and key, raised before any Lava process is built.
"""
from __future__ import annotations

import json

import h5py
import numpy as np

from ..errors import FastSNNError
from ..inputs import open_hdf5
from ..ir import Layer, Network, Skip
from ..neuron import Accumulator, if_neuron
from .h5 import int_array, read_geometry, scalar, text
from .schema import (BIAS_KEY, DELAY_KEY, FLATTEN_TYPE, FORMAT_VERSION, INPUT_TYPE, IR_NEURONS, LAYER_GROUP,
                     META_GROUP, NEURON_GROUP, SHAPE_KEY, SKIP_GROUP, SOURCE_KEY, THETA_KEY, TYPE_KEY, WEIGHT_KEY,
                     reset_interval)

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
        src = scalar(h, SOURCE_KEY, w)
        if src not in ir_of:
            raise FastSNNError(f"{w}: key 'source' = {src} is not an earlier conv or dense layer")
        source = ir_of[src]
        if scalar(h, DELAY_KEY, w) != index - source - 1:
            raise FastSNNError(f"{w}: key 'delay' must be {index - source - 1} (layers between source and target)")
        kind = text(h[TYPE_KEY]) if TYPE_KEY in h else None
        if kind not in ("dense", "conv"):
            raise FastSNNError(f"{w}: key 'type' must be dense or conv, found {kind!r}")
        geometry = read_geometry(h, w) if kind == "conv" else {}
        try:
            skips.append(Skip(source=source, kind=kind, weight=int_array(h, WEIGHT_KEY, w),
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
    raw = text(ds)
    if len(raw) > META_CHARS:
        raise FastSNNError(f"{path}: /{META_GROUP}/meta is {len(raw):,} characters long (at most {META_CHARS:,})")
    try:
        meta = json.loads(raw)
    except (ValueError, RecursionError):
        raise FastSNNError(f"{path}: /{META_GROUP}/meta is not valid JSON (or nested too deep)") from None
    if not isinstance(meta, dict):
        raise FastSNNError(f"{path}: /{META_GROUP}/meta must be a JSON object, found a {type(meta).__name__}")
    return meta


def _read(f: h5py.File, path: str) -> Network:
    if LAYER_GROUP not in f or not isinstance(f[LAYER_GROUP], h5py.Group):
        raise FastSNNError(f"{path} is not a netx network (no /layer group)")
    if META_GROUP not in f:
        raise FastSNNError(f"{path} is a netx network without the /{META_GROUP} group: "
                           "only networks written by fastsnn-export can be run")
    meta_g = f[META_GROUP]
    version = scalar(meta_g, "format_version", f"/{META_GROUP}")
    if not 1 <= version <= FORMAT_VERSION:
        raise FastSNNError(f"{path} has format version {version}; this tool reads 1..{FORMAT_VERSION}: upgrade it")
    bits = scalar(meta_g, "bits", f"/{META_GROUP}")
    if not 1 <= bits <= 8 or scalar(meta_g, "timesteps", f"/{META_GROUP}") != 2 ** bits - 1:
        raise FastSNNError(f"/{META_GROUP}: timesteps must equal 2^bits - 1 for bits in 1..8")
    if scalar(meta_g, "reset_interval", f"/{META_GROUP}") != reset_interval(2 ** bits - 1):
        raise FastSNNError(f"/{META_GROUP}: reset_interval must be {reset_interval(2 ** bits - 1)} for {bits} bits")
    input_max = scalar(meta_g, "input_max", f"/{META_GROUP}")
    shape = int_array(meta_g, "input_shape", f"/{META_GROUP}")
    if shape.ndim != 1 or not 1 <= shape.size <= 3 or (shape < 1).any():
        raise FastSNNError(f"/{META_GROUP}: key 'input_shape' must be 1 to 3 positive integers, found {shape.tolist()}")
    input_shape = tuple(int(a) for a in shape)
    meta = _meta(meta_g, path)
    names = list(f[LAYER_GROUP].keys())
    if sorted(names, key=lambda s: (len(s), s)) != [str(i) for i in range(len(names))]:
        raise FastSNNError(f"{path}: layers must be numbered 0..{len(names) - 1} without gaps, found {names}")
    groups = [f[LAYER_GROUP][str(i)] for i in range(len(names))]
    if not groups or TYPE_KEY not in groups[0] or text(groups[0][TYPE_KEY]) != INPUT_TYPE:
        raise FastSNNError(f"{path}: /layer/0 must be the input layer")
    if int(np.prod(int_array(groups[0], SHAPE_KEY, "/layer/0"))) != int(np.prod(input_shape)):
        raise FastSNNError(f"/layer/0: key 'shape' does not match /{META_GROUP}/input_shape {input_shape}")
    prev = input_shape
    layers, ir_of = [], {}
    for i, g in enumerate(groups[1:], start=1):
        where = f"/layer/{i}"
        if TYPE_KEY not in g:
            raise FastSNNError(f"{where}: missing key 'type'")
        kind = text(g[TYPE_KEY])
        if kind == FLATTEN_TYPE:
            continue
        if kind not in ("dense", "conv"):
            raise FastSNNError(f"{where}: layer type '{kind}' is not supported: use dense, conv or flatten")
        if NEURON_GROUP not in g or TYPE_KEY not in g[NEURON_GROUP]:
            raise FastSNNError(f"{where}: missing key 'neuron/type'")
        ntype = text(g[NEURON_GROUP][TYPE_KEY])
        if ntype not in IR_NEURONS:
            raise FastSNNError(f"{where}: neuron type '{ntype}' is not supported: use one of {sorted(IR_NEURONS)}")
        name = IR_NEURONS[ntype]
        theta = scalar(g[NEURON_GROUP], THETA_KEY, where + "/neuron") if name != "accumulate" else None
        out_shape = tuple(int(a) for a in int_array(g, SHAPE_KEY, where))
        geometry = read_geometry(g, where) if kind == "conv" else {}
        skips = _read_skips(g, where, len(layers) + 1, layers, ir_of)
        try:
            neuron = Accumulator() if theta is None else if_neuron(name, theta)
            layer = Layer(kind=kind, weight=int_array(g, WEIGHT_KEY, where), bias=int_array(g, BIAS_KEY, where),
                          neuron=neuron, in_shape=prev, out_shape=out_shape, skips=skips,
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
