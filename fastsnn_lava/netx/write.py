"""Write an integer :class:`~fastsnn_lava.ir.Network` as a lava-dl netx HDF5 file.

Layout (every key is documented in ``export/FORMAT.md``)::

    /layer/0                 type 'input', shape = the input (C,H,W), or (N,) when a dense layer comes first
    /layer/k                 type 'conv' | 'dense', shape, weight, bias, conv geometry, neuron/{type, theta}
    /layer/k                 type 'flatten' between the last conv and the first dense
    /layer/k/skip/m          shortcut synapses into layer k (project extension, netx ignores it):
                             source (the /layer number of the sending layer), type, weight,
                             conv geometry, delay (steps the loader adds to line it up)
    /fastsnn                 format_version, bits, timesteps, reset_interval, input_max, input_shape, meta

Weights and biases are written as exact integers (netx reads them with
``astype(int)``, which would truncate floats). The file is written to a
temporary path and renamed, so a failed export leaves nothing behind.
"""
from __future__ import annotations

import json

import h5py
import numpy as np

from ..atomic import atomic_path
from ..errors import FastSNNError
from ..ir import Network
from .lava_weights import synapse_verdict
from .schema import META_GROUP, NEURON_TYPES, SKIP_GROUP, format_version, reset_interval


def _type(group: h5py.Group, name: str) -> None:
    group.create_dataset("type", data=np.array([name.encode("ascii")], dtype="S10"))


def synapse_domain(net: Network, index: int, skip: bool = False) -> tuple[int, int]:
    """The box ``[lo, hi]`` each input of a synapse lies in: the raw input ``[0, input_max]`` for the
    first layer's own synapse, spikes ``[−1, 1]`` for every other synapse and every shortcut."""
    return (0, net.input_max) if index == 1 and not skip else (-1, 1)


def check_netx_weights(net: Network) -> None:
    """Refuse weights that netx + Lava's fixed-point synapses would not carry exactly (lava-netx.md §7).

    Every synapse must give Lava's output ``W·s`` for every input in :func:`synapse_domain`, as
    :mod:`fastsnn_lava.netx.lava_weights` models it: a ``/layer`` dense synapse through netx's
    ``optimize_weight_bits`` (which, e.g., corrupts a layer with no positive code and a minimum −2^j),
    a dense shortcut through the loader's mixed-sign encoding, a conv through its 24-bit output.
    """
    for i, layer in enumerate(net.layers, start=1):
        synapses = [("", layer.kind, layer.weight, "netx", False)] + [
            (f"skip from layer {s.source}: ", s.kind, s.weight, "mixed", True) for s in layer.skips]
        for what, kind, w, encoding, skip in synapses:
            if not np.any(w):
                raise FastSNNError(f"layer {i}: {what}all weights are zero, which netx cannot load: "
                                   "retrain or drop the layer")
            if kind == "dense" and (w.max() > 254 or w.min() < -256):
                raise FastSNNError(f"layer {i}: {what}dense weights outside [-256, 254] are clipped by netx: "
                                   "quantize weights to 8 bits")
            lo, hi = synapse_domain(net, i, skip)
            verdict = synapse_verdict(kind, w, lo, hi, encoding)
            if not verdict.exact:
                raise FastSNNError(f"layer {i}: {what}{verdict.reason}")


def _geometry(g: h5py.Group, syn) -> None:
    for key in ("stride", "padding", "dilation"):
        g.create_dataset(key, data=np.array(getattr(syn, key), dtype=np.int64))
    g.create_dataset("groups", data=np.int64(syn.groups))


def write_skips(g: h5py.Group, layer, index: int, group_of: dict) -> None:
    """``/layer/<k>/skip/<m>`` for each shortcut of IR layer ``index`` (1-based).

    ``group_of`` maps IR layer indices to their ``/layer`` numbers. ``delay`` is the
    number of steps the shortcut must wait so that its spikes meet the main path's
    of the same time step: the main path passes ``index − source`` synapses of one
    step each, the shortcut one synapse, so ``delay = index − source − 1``.
    """
    if not layer.skips:
        return
    sg = g.create_group(SKIP_GROUP)
    for m, skip in enumerate(layer.skips):
        h = sg.create_group(str(m))
        h.create_dataset("source", data=np.int64(group_of[skip.source]))
        _type(h, skip.kind)
        h.create_dataset("weight", data=skip.weight.astype(np.int32))
        h.create_dataset("delay", data=np.int64(index - skip.source - 1))
        if skip.kind == "conv":
            _geometry(h, skip)


def write_network(net: Network, path) -> None:
    check_netx_weights(net)
    first_dense = net.layers[0].kind == "dense"
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        layers = f.create_group("layer")
        g = layers.create_group("0")
        _type(g, "input")
        in_shape = (int(np.prod(net.input_shape)),) if first_dense else net.input_shape
        g.create_dataset("shape", data=np.array(in_shape, dtype=np.int64))
        k, prev_kind, group_of = 1, None, {}
        for index, layer in enumerate(net.layers, start=1):
            if layer.kind == "dense" and prev_kind == "conv":
                _type(layers.create_group(str(k)), "flatten")
                k += 1
            g = layers.create_group(str(k))
            group_of[index] = k
            k += 1
            prev_kind = layer.kind
            _type(g, layer.kind)
            g.create_dataset("shape", data=np.array(layer.out_shape, dtype=np.int64))
            g.create_dataset("weight", data=layer.weight.astype(np.int32))
            g.create_dataset("bias", data=layer.bias.astype(np.int32))
            if layer.kind == "conv":
                _geometry(g, layer)
            write_skips(g, layer, index, group_of)
            n = g.create_group("neuron")
            n.create_dataset("type", data=NEURON_TYPES[layer.neuron], dtype=h5py.string_dtype("ascii"))
            if layer.threshold is not None:
                n.create_dataset("theta", data=np.int64(layer.threshold))
        m = f.create_group(META_GROUP)
        m.create_dataset("format_version", data=np.int64(format_version(net.has_skips)))
        m.create_dataset("bits", data=np.int64(net.bits))
        m.create_dataset("timesteps", data=np.int64(net.timesteps))
        m.create_dataset("reset_interval", data=np.int64(reset_interval(net.timesteps)))
        m.create_dataset("input_max", data=np.int64(net.input_max))
        m.create_dataset("input_shape", data=np.array(net.input_shape, dtype=np.int64))
        m.create_dataset("meta", data=json.dumps(net.meta), dtype=h5py.string_dtype("utf-8"))
