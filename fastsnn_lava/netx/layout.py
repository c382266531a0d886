"""Write a :class:`~fastsnn_lava.ir.Network` as a lava-dl netx HDF5 tree: the one layout writer of both netx formats.

Layout (every key is documented in ``export/FORMAT.md``, every name is in :mod:`.schema`)::

    /layer/0                 type 'input', shape = the input (C,H,W), or (N,) when a dense layer comes first
    /layer/k                 type 'conv' | 'dense', shape, weight, bias, conv geometry, skip/<m>, neuron/...
    /layer/k                 type 'flatten' between the last conv and the first dense
    /layer/k/skip/m          shortcut synapses into layer k (project extension, netx ignores it):
                             source (the /layer number of the sending layer), type, weight,
                             conv geometry, delay (steps the loader adds to line it up)
    /fastsnn                 format_version, bits, timesteps, reset_interval, input_max, input_shape, meta

The neuron group is the only part that depends on the family: ``{type, theta}`` for this project's
IF neurons (``theta`` absent for the accumulator), ``{type='CUBA', iDecay, vDecay, vThMant,
refDelay=1, gradedSpike=False}`` for netx's CUBA LIF (read by ``get_neuron_params``, lava-dl v0.6.0
``src/lava/lib/dl/netx/hdf5.py``). Weights and biases are
written as exact integers (netx reads them with ``astype(int)``, which would truncate floats). The
file is written to a temporary path and renamed, so a failed export leaves nothing behind.
"""
from __future__ import annotations

import json

import h5py
import numpy as np

from ..atomic import atomic_path
from ..ir import Network
from ..neuron import CubaLIF
from .h5 import write_geometry, write_type
from .schema import (BIAS_KEY, CUBA_FIXED, CUBA_KEYS, CUBA_TYPE, DELAY_KEY, FLATTEN_TYPE, FORMAT_VERSION, GRADED_KEY,
                     INPUT_TYPE, LAYER_GROUP, META_GROUP, NEURON_GROUP, NEURON_TYPES, SHAPE_KEY, SKIP_GROUP,
                     SOURCE_KEY, THETA_KEY, TYPE_KEY, WEIGHT_KEY, format_version)


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
        h.create_dataset(SOURCE_KEY, data=np.int64(group_of[skip.source]))
        write_type(h, skip.kind)
        h.create_dataset(WEIGHT_KEY, data=skip.weight.astype(np.int32))
        h.create_dataset(DELAY_KEY, data=np.int64(index - skip.source - 1))
        if skip.kind == "conv":
            write_geometry(h, skip)


def write_neuron(g: h5py.Group, neuron) -> None:
    """``/layer/<k>/neuron``: the family's type string and parameters."""
    n = g.create_group(NEURON_GROUP)
    if isinstance(neuron, CubaLIF):
        n.create_dataset(TYPE_KEY, data=CUBA_TYPE, dtype=h5py.string_dtype("ascii"))
        for field, key in CUBA_KEYS.items():
            n.create_dataset(key, data=np.int64(getattr(neuron, field)))
        for key, value in CUBA_FIXED.items():
            n.create_dataset(key, data=np.int64(value))
        n.create_dataset(GRADED_KEY, data=False)
        return
    n.create_dataset(TYPE_KEY, data=NEURON_TYPES[neuron.name], dtype=h5py.string_dtype("ascii"))
    if neuron.threshold is not None:
        n.create_dataset(THETA_KEY, data=np.int64(neuron.threshold))


def layer_groups(net: Network) -> dict:
    """``{IR layer index (1-based): its /layer number}``: layers in order after ``/layer/0``, with a
    ``flatten`` group between a conv and the dense layer after it."""
    groups, k, prev_kind = {}, 1, None
    for index, layer in enumerate(net.layers, start=1):
        if layer.kind == "dense" and prev_kind == "conv":
            k += 1
        groups[index], k, prev_kind = k, k + 1, layer.kind
    return groups


def write_layout(net: Network, path) -> None:
    """Write ``net`` (checked by the caller for what its format can hold) to ``path``."""
    first_dense = net.layers[0].kind == "dense"
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        layers = f.create_group(LAYER_GROUP)
        g = layers.create_group("0")
        write_type(g, INPUT_TYPE)
        in_shape = (int(np.prod(net.input_shape)),) if first_dense else net.input_shape
        g.create_dataset(SHAPE_KEY, data=np.array(in_shape, dtype=np.int64))
        group_of = layer_groups(net)
        for index, layer in enumerate(net.layers, start=1):
            if group_of[index] - 1 not in (0, *group_of.values()):
                write_type(layers.create_group(str(group_of[index] - 1)), FLATTEN_TYPE)
            g = layers.create_group(str(group_of[index]))
            write_type(g, layer.kind)
            g.create_dataset(SHAPE_KEY, data=np.array(layer.out_shape, dtype=np.int64))
            g.create_dataset(WEIGHT_KEY, data=layer.weight.astype(np.int32))
            g.create_dataset(BIAS_KEY, data=layer.bias.astype(np.int32))
            if layer.kind == "conv":
                write_geometry(g, layer)
            write_skips(g, layer, index, group_of)
            write_neuron(g, layer.neuron)
        m = f.create_group(META_GROUP)
        version = format_version(net.has_skips) if net.family == "if" else FORMAT_VERSION
        m.create_dataset("format_version", data=np.int64(version))
        if net.bits is not None:
            m.create_dataset("bits", data=np.int64(net.bits))
        m.create_dataset("timesteps", data=np.int64(net.timesteps))
        m.create_dataset("reset_interval", data=np.int64(net.reset_interval))
        m.create_dataset("input_max", data=np.int64(net.input_max))
        m.create_dataset("input_shape", data=np.array(net.input_shape, dtype=np.int64))
        m.create_dataset("meta", data=json.dumps(net.meta), dtype=h5py.string_dtype("utf-8"))
