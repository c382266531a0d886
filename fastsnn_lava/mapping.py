"""Partition each layer's neurons and synapses onto neuromorphic cores.

A layer with N neurons is split into ``cores = ⌈N / n_c⌉`` cores of at most
``n_c`` neurons, the largest ``n_c`` that meets every per-core limit of the target
(``hardware_configs/*.yaml``):

* neurons:            ``n_c ≤ neurons_per_core``
* synaptic memory:    ``n_c · f · bits_per_synapse ≤ synaptic_memory_bits_per_core``
  (f: the largest fan-in of one neuron; a dense encoding, zeros included)
* fan-in (axons in):  the distinct inputs of the core's neurons ``≤ fan_in_per_core``.
  Dense: every input, ``N_in``. Conv: a core holds a band of whole output rows,
  ``r = ⌈n_c / (C_out·W_out)⌉`` of them, which reads
  ``min(H_in, (r−1)·stride + dilation·(kH−1) + 1)`` input rows of ``C_in·W_in``.
* fan-out (axons out): each neuron sends one axon per core of the next layer that
  needs it: all of them after a dense layer, the cores its receptive field spans
  after a conv layer (``min(cores', 1 + ⌈(dilation·(kH−1)+1) / (stride·r')⌉)``);
  the output layer sends one per neuron. ``n_c · dest ≤ fan_out_per_core``.

Layers are mapped from the last to the first, since the fan-out of a layer depends
on how the next one is split. ``chips = ⌈Σ cores / cores_per_chip⌉``. A limit that
no ``n_c ≥ 1`` can meet (a fan-in beyond the axon limit, one neuron's synapses beyond
a core's memory) is a :class:`~fastsnn_lava.errors.FastSNNError` naming the layer, the
limit and what to change. This is an estimate of the compiler's partitioning, not Intel's
compiler: the real one also packs several small layers into one core.
"""
from __future__ import annotations

import math

import numpy as np

from .errors import FastSNNError

MAPPING_LIMITS = ("neurons_per_core", "synaptic_memory_bits_per_core", "bits_per_synapse", "fan_in_per_core",
                  "fan_out_per_core", "cores_per_chip")


def synapse_count(layer) -> tuple[int, int]:
    """(synapses, largest fan-in of one neuron) of a dense or conv layer (zero weights included)."""
    if layer.kind == "identity":  # a slayer input neuron: one input each
        return layer.num_neurons, 1
    if layer.kind == "dense":
        n_in = int(np.prod(layer.in_shape))
        return layer.num_neurons * n_in, n_in
    import torch
    import torch.nn.functional as F
    c_out, c_in_g, kh, kw = layer.weight.shape
    ones = torch.ones(1, *layer.in_shape, dtype=torch.float64)
    fan = F.conv2d(ones, torch.ones(c_out, c_in_g, kh, kw, dtype=torch.float64), None, layer.stride,
                   layer.padding, layer.dilation, layer.groups)
    return int(fan.sum().item()), int(fan.max().item())


def _core_inputs(layer, n_c: int) -> int:
    n_in = int(np.prod(layer.in_shape))
    if layer.kind == "identity":
        return n_c
    if layer.kind == "dense":
        return n_in
    c_in, h_in, w_in = layer.in_shape
    c_out, _, w_out = layer.out_shape[0], layer.out_shape[1], layer.out_shape[2]
    rows = math.ceil(n_c / (c_out * w_out))
    kh = layer.weight.shape[2]
    rows_in = min(h_in, (rows - 1) * layer.stride[0] + layer.dilation[0] * (kh - 1) + 1)
    return min(n_in, rows_in * w_in * c_in)


def _destinations(next_layer, next_map) -> int:
    """Cores of the next layer that one neuron of this layer sends to."""
    if next_layer is None:
        return 1
    if next_layer.kind == "dense":
        return next_map["cores"]
    c_out, _, w_out = next_layer.out_shape
    rows = max(1, next_map["neurons_per_core"] // (c_out * w_out))
    span = next_layer.dilation[0] * (next_layer.weight.shape[2] - 1) + 1
    return min(next_map["cores"], 1 + math.ceil(span / (next_layer.stride[0] * rows)))


def map_layer(i: int, layer, lim: dict, name: str, dest: int) -> dict:
    n = layer.num_neurons
    synapses, fan_in = synapse_count(layer)
    where = f"layer {i} ({layer.kind}, {n} neurons)"
    caps = {"neurons_per_core": lim["neurons_per_core"]}
    mem_per_neuron = fan_in * lim["bits_per_synapse"]
    if mem_per_neuron > lim["synaptic_memory_bits_per_core"]:
        raise FastSNNError(f"{where}: one neuron's {fan_in} synapses need {mem_per_neuron} bits, beyond {name}'s "
                           f"synaptic_memory_bits_per_core = {lim['synaptic_memory_bits_per_core']}: reduce the fan-in "
                           "(fewer input channels, a smaller kernel or a narrower previous layer)")
    caps["synaptic_memory_bits_per_core"] = lim["synaptic_memory_bits_per_core"] // mem_per_neuron
    if dest > lim["fan_out_per_core"]:
        raise FastSNNError(f"{where}: one neuron sends to {dest} cores, beyond {name}'s fan_out_per_core = "
                           f"{lim['fan_out_per_core']}: make the next layer smaller")
    caps["fan_out_per_core"] = lim["fan_out_per_core"] // dest
    if _core_inputs(layer, 1) > lim["fan_in_per_core"]:
        fix = ("use a narrower previous layer" if layer.kind == "dense"
               else "use fewer input channels or a narrower input")
        raise FastSNNError(f"{where}: a core needs {_core_inputs(layer, 1)} distinct inputs, beyond {name}'s "
                           f"fan_in_per_core = {lim['fan_in_per_core']} axons: {fix} "
                           f"(at most {lim['fan_in_per_core']} inputs per core)")
    lo, hi = 1, n  # largest neuron count whose inputs fit the axon limit (inputs grow with it)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if _core_inputs(layer, mid) <= lim["fan_in_per_core"] else (lo, mid - 1)
    caps["fan_in_per_core"] = lo
    n_c = max(1, min(n, *caps.values()))
    limiting = "none (whole layer in one core)" if n_c == n else min(caps, key=caps.get)
    return {"layer": i, "kind": layer.kind, "neurons": n, "synapses": synapses, "fan_in": fan_in,
            "core_inputs": _core_inputs(layer, n_c), "core_outputs": n_c * dest, "neurons_per_core": n_c,
            "cores": math.ceil(n / n_c), "limited_by": limiting}


def map_network(net, target: dict) -> dict:
    """Per-layer partition and totals: ``{"layers": [...], "cores": C, "chips": K, "target": name}``."""
    lim, name = target["limits"], target["name"]
    missing = [k for k in MAPPING_LIMITS if k not in lim]
    if missing:
        raise FastSNNError(f"hardware target {name!r} has no limits {missing}: add them (see hardware_configs/loihi2.yaml)")
    layers = list(net.layers)
    maps: list = [None] * len(layers)
    for i in range(len(layers) - 1, -1, -1):
        nxt = layers[i + 1] if i + 1 < len(layers) else None
        dest = _destinations(nxt, maps[i + 1] if nxt is not None else None)
        maps[i] = map_layer(i + 1, layers[i], lim, name, dest)
    cores = sum(m["cores"] for m in maps)
    return {"target": name, "layers": maps, "cores": cores, "chips": math.ceil(cores / lim["cores_per_chip"])}
