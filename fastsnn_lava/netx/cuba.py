"""Vanilla netx files of CUBA LIF layers: write (``--neuron cuba``) and read (also slayer's).

The written file is what unmodified ``lava.lib.dl.netx.hdf5.Network`` loads: every
layer has ``neuron/{type='CUBA', iDecay, vDecay, vThMant, refDelay=1, gradedSpike=False}``
(lava-netx.md §3, §5), integer weights and ``bias`` (netx's ``bias_mant``, 6-bit
units), a ``flatten`` group before the first dense after a conv. The ``/fastsnn``
group (ignored by netx) records ``timesteps``, ``reset_interval``, ``input_max``,
``input_shape``, ``bits`` and ``meta`` with ``neuron = "cuba"``.

:func:`read_lif_network` reads such a file or one exported by lava-dl's slayer
(``CUBA`` or ``LOIHI`` neurons; float weights holding integers; an ``input`` layer
with a neuron becomes an identity layer, a dense layer without a neuron netx's
default non-leaky integrator). A slayer file has no ``/fastsnn``: pass ``timesteps``.
"""
from __future__ import annotations

import json
import os

import h5py
import numpy as np

from ..atomic import atomic_path
from ..errors import FastSNNError
from ..lif import LifLayer, LifNetwork
from .read import _int_array, _scalar, _str
from .schema import FORMAT_VERSION, META_GROUP
from .write import _type

LIF_TYPES = ("CUBA", "LOIHI")
# netx's neuron for a dense layer without a neuron group (hdf5.py create_dense): iDecay 0, vDecay 4096
DEFAULT_NEURON = {"vth": 1 << 18 - 1, "i_decay": 0, "v_decay": 4096}


def write_lif_network(net: LifNetwork, path) -> None:
    for i, layer in enumerate(net.layers, start=1):
        if layer.kind == "identity":
            raise FastSNNError(f"layer {i}: identity (input-neuron) layers are read, not written")
        if not np.any(layer.weight):
            raise FastSNNError(f"layer {i}: all weights are zero, which netx cannot load: retrain or drop the layer")
        if layer.kind == "dense" and (layer.weight.max() > 254 or layer.weight.min() < -256):
            raise FastSNNError(f"layer {i}: dense weights outside [-256, 254] are clipped by netx: quantize to 8 bits")
    first_dense = net.layers[0].kind == "dense"
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        layers = f.create_group("layer")
        g = layers.create_group("0")
        _type(g, "input")
        g.create_dataset("shape", data=np.array((int(np.prod(net.input_shape)),) if first_dense else net.input_shape,
                                                dtype=np.int64))
        k, prev = 1, None
        for layer in net.layers:
            if layer.kind == "dense" and prev == "conv":
                _type(layers.create_group(str(k)), "flatten")
                k += 1
            g = layers.create_group(str(k))
            k, prev = k + 1, layer.kind
            _type(g, layer.kind)
            g.create_dataset("shape", data=np.array(layer.out_shape, dtype=np.int64))
            g.create_dataset("weight", data=layer.weight.astype(np.int32))
            g.create_dataset("bias", data=layer.bias.astype(np.int32))
            if layer.kind == "conv":
                for key in ("stride", "padding", "dilation"):
                    g.create_dataset(key, data=np.array(getattr(layer, key), dtype=np.int64))
                g.create_dataset("groups", data=np.int64(layer.groups))
            n = g.create_group("neuron")
            n.create_dataset("type", data="CUBA", dtype=h5py.string_dtype("ascii"))
            for key, value in (("iDecay", layer.i_decay), ("vDecay", layer.v_decay), ("vThMant", layer.vth),
                               ("refDelay", 1)):
                n.create_dataset(key, data=np.int64(value))
            n.create_dataset("gradedSpike", data=False)
        m = f.create_group(META_GROUP)
        m.create_dataset("format_version", data=np.int64(FORMAT_VERSION))
        if net.bits is not None:
            m.create_dataset("bits", data=np.int64(net.bits))
        m.create_dataset("timesteps", data=np.int64(net.timesteps))
        m.create_dataset("reset_interval", data=np.int64(net.reset_interval))
        m.create_dataset("input_max", data=np.int64(net.input_max))
        m.create_dataset("input_shape", data=np.array(net.input_shape, dtype=np.int64))
        m.create_dataset("meta", data=json.dumps(net.meta), dtype=h5py.string_dtype("utf-8"))


def is_lif_file(path) -> bool:
    """Whether a netx file's layers use CUBA/LOIHI neurons (False for this project's IF files)."""
    try:
        with h5py.File(path, "r") as f:
            for g in f["layer"].values():
                if "neuron" in g and "type" in g["neuron"]:
                    return _str(g["neuron"]["type"]) in LIF_TYPES
                if _str(g["type"]) in ("dense", "conv"):
                    return False
    except Exception:
        return False
    return False


def _neuron(g, where) -> dict:
    if "neuron" not in g:
        return dict(DEFAULT_NEURON)
    n = g["neuron"]
    ntype = _str(n["type"]) if "type" in n else "?"
    if ntype not in LIF_TYPES:
        raise FastSNNError(f"{where}: neuron type '{ntype}' in a CUBA network: only CUBA/LOIHI layers can be mixed")
    return {"vth": _scalar(n, "vThMant", where + "/neuron"), "i_decay": _scalar(n, "iDecay", where + "/neuron"),
            "v_decay": _scalar(n, "vDecay", where + "/neuron")}


def read_lif_network(path, timesteps: int | None = None, input_max: int | None = None) -> LifNetwork:
    if not os.path.isfile(path):
        raise FastSNNError(f"{path}: no such file")
    try:
        with h5py.File(path, "r") as f:
            return _read(f, str(path), timesteps, input_max)
    except FastSNNError:
        raise
    except (OSError, KeyError, ValueError, TypeError, IndexError) as e:
        raise FastSNNError(f"{path} is not a readable CUBA netx network ({type(e).__name__}: {str(e)[:100]})") from None


def _read(f, path, timesteps, input_max) -> LifNetwork:
    meta_g = f[META_GROUP] if META_GROUP in f else None
    if timesteps is None:
        if meta_g is None:
            raise FastSNNError(f"{path} has no /{META_GROUP} group (a slayer export?): pass the time steps per "
                               "sample (--steps)")
        timesteps = _scalar(meta_g, "timesteps", f"/{META_GROUP}")
    R = _scalar(meta_g, "reset_interval", f"/{META_GROUP}") if meta_g is not None and "reset_interval" in meta_g \
        else int(2 ** np.ceil(np.log2(timesteps + 1)))
    meta = json.loads(_str(meta_g["meta"])) if meta_g is not None and "meta" in meta_g else {}
    if input_max is None:
        input_max = _scalar(meta_g, "input_max", f"/{META_GROUP}") if meta_g is not None and "input_max" in meta_g \
            else 255
    bits = _scalar(meta_g, "bits", f"/{META_GROUP}") if meta_g is not None and "bits" in meta_g else None
    groups = [f["layer"][str(i)] for i in range(len(f["layer"]))]
    if _str(groups[0]["type"]) != "input":
        raise FastSNNError(f"{path}: /layer/0 must be the input layer")
    shape0 = tuple(int(a) for a in _int_array(groups[0], "shape", "/layer/0"))
    input_shape = tuple(int(a) for a in _int_array(meta_g, "input_shape", f"/{META_GROUP}")) \
        if meta_g is not None and "input_shape" in meta_g else shape0
    layers, prev = [], input_shape
    if "neuron" in groups[0]:
        p = _neuron(groups[0], "/layer/0")
        layers.append(LifLayer("identity", None, np.zeros(int(np.prod(shape0)), np.int64), in_shape=prev,
                               out_shape=shape0, **p))
        prev = shape0
    for i, g in enumerate(groups[1:], start=1):
        where, kind = f"/layer/{i}", _str(g["type"])
        if kind == "flatten":
            continue
        if kind not in ("dense", "conv"):
            raise FastSNNError(f"{where}: layer type '{kind}' is not supported: use dense, conv or flatten")
        out_shape = tuple(int(a) for a in _int_array(g, "shape", where))
        w = _int_array(g, "weight", where)
        geo = {}
        if kind == "conv":
            w = w.reshape(w.shape[:4])  # slayer's trailing time axis of size 1
            geo = {k: tuple(int(a) for a in np.broadcast_to(_int_array(g, k, where), (2,)))
                   for k in ("stride", "padding", "dilation")}
            geo["groups"] = _scalar(g, "groups", where)
        else:
            w = w.reshape(int(np.prod(out_shape)), -1)
        bias = _int_array(g, "bias", where) if "bias" in g else np.zeros(1, np.int64)
        if bias.size == 1:
            bias = np.full(out_shape[0] if kind == "conv" else int(np.prod(out_shape)), int(bias.ravel()[0]))
        try:
            layers.append(LifLayer(kind, w, bias, in_shape=prev, out_shape=out_shape, **geo, **_neuron(g, where)))
        except FastSNNError as e:
            raise FastSNNError(f"{where}: {e}") from None
        prev = out_shape
    return LifNetwork(input_shape, layers, int(timesteps), int(R), int(input_max), bits, meta)
