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
  ``min(H_in, (r−1)·stride + dilation·(kH−1) + 1)`` input rows of ``C_in·W_in``;
  a core of less than one row (``n_c < C_out·W_out``, channels fastest) holds
  ``c = ⌈n_c / C_out⌉`` output columns of one row and reads
  ``min(W_in, (c−1)·stride + dilation·(kW−1) + 1)`` input columns of those rows.
* fan-out (axons out): each neuron sends one axon per core of the next layer that
  needs it: all of them after a dense layer, the cores its receptive field spans
  after a conv layer (``min(cores', 1 + ⌈(dilation·(kH−1)+1) / (stride·r')⌉)``);
  the output layer sends one per neuron. ``n_c · dest ≤ fan_out_per_core``.

Residual shortcuts (:class:`~fastsnn_lava.ir.Skip`) are synapses of the layer they feed:
its cores hold them next to the main ones. For layer l with skips ``S^{l,j}``:

* synapses:  ``synapses_l = synapses(W^l) + Σ_j synapses(S^{l,j})`` (``skip_synapses`` the second term);
* fan-in:    per neuron n, ``f_n = f_n(W^l) + Σ_j f_n(S^{l,j})`` and ``f = max_n f_n``;
* axons in:  ``inputs(n_c) = inputs_W(n_c) + Σ_j inputs_{S^{l,j}}(n_c)``, each term by the
  dense/conv rule above on that synapse's own input (a source also feeding the main path is
  counted twice: an upper bound);
* axons out: a skip source j sends, besides its axons to layer j+1, ``dest(S^{l,j})`` more per
  neuron to layer l's cores (the conv/dense rule above with the skip's geometry).

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
from .violations import Violation

MAPPING_LIMITS = ("neurons_per_core", "synaptic_memory_bits_per_core", "bits_per_synapse", "fan_in_per_core",
                  "fan_out_per_core", "cores_per_chip")


def _fan_in(syn, out_shape: tuple) -> np.ndarray:
    """Synapses into each neuron of ``out_shape`` from one synapse (a layer's or a skip's), zero weights included."""
    if syn.kind == "identity":  # a slayer input neuron: one input each
        return np.ones(out_shape)
    if syn.kind == "dense":
        return np.full(out_shape, float(np.prod(syn.in_shape)))
    import torch
    import torch.nn.functional as F
    ones = torch.ones(1, *syn.in_shape, dtype=torch.float64)
    fan = F.conv2d(ones, torch.ones(syn.weight.shape, dtype=torch.float64), None, syn.stride, syn.padding,
                   syn.dilation, syn.groups)
    return fan[0].numpy()


def synapse_count(layer) -> tuple[int, int, int]:
    """(synapses, largest fan-in of one neuron, skip synapses) of a layer, its shortcuts included."""
    main = _fan_in(layer, layer.out_shape)
    skips = [_fan_in(skip, layer.out_shape) for skip in layer.skips]
    total = main + sum(skips) if skips else main
    return int(total.sum()), int(total.max()), int(sum(f.sum() for f in skips))


def _syn_inputs(syn, out_shape: tuple, n_c: int) -> int:
    """Distinct inputs of one synapse into a core of ``n_c`` neurons of ``out_shape``."""
    n_in = int(np.prod(syn.in_shape))
    if syn.kind == "identity":
        return n_c
    if syn.kind == "dense":
        return n_in
    c_in, h_in, w_in = syn.in_shape
    c_out, w_out = out_shape[0], out_shape[2]
    rows = math.ceil(n_c / (c_out * w_out))
    kh, kw = syn.weight.shape[2:4]
    rows_in = min(h_in, (rows - 1) * syn.stride[0] + syn.dilation[0] * (kh - 1) + 1)
    cols_in = w_in
    if n_c < c_out * w_out:  # part of one output row: only the columns its receptive fields span
        cols_in = min(w_in, (math.ceil(n_c / c_out) - 1) * syn.stride[1] + syn.dilation[1] * (kw - 1) + 1)
    return min(n_in, rows_in * cols_in * c_in)


def _core_inputs(layer, n_c: int) -> int:
    return _syn_inputs(layer, layer.out_shape, n_c) + sum(
        _syn_inputs(skip, layer.out_shape, n_c) for skip in layer.skips)


def _destinations(syn, out_shape: tuple, dest_map) -> int:
    """Cores of a receiving layer (``out_shape``, partition ``dest_map``) that one neuron sends to through ``syn``."""
    if syn.kind == "dense":
        return dest_map["cores"]
    c_out, _, w_out = out_shape
    rows = max(1, dest_map["neurons_per_core"] // (c_out * w_out))
    span = syn.dilation[0] * (syn.weight.shape[2] - 1) + 1
    return min(dest_map["cores"], 1 + math.ceil(span / (syn.stride[0] * rows)))


def _fan_out(i: int, layers: list, maps: list) -> int:
    """Cores that one neuron of layer ``i`` (0-based) sends to: the next layer's, and those of every skip it feeds."""
    if i + 1 == len(layers):
        return 1
    dest = _destinations(layers[i + 1], layers[i + 1].out_shape, maps[i + 1])
    for k in range(i + 1, len(layers)):
        dest += sum(_destinations(skip, layers[k].out_shape, maps[k])
                    for skip in layers[k].skips if skip.source == i + 1)
    return dest


def _broken(found, v: Violation) -> None:
    """Raise ``v`` (``found`` None) or add it to ``found`` (the layer is then mapped one neuron per core there)."""
    if found is None:
        raise FastSNNError(v.message)
    found.append(v)


def map_layer(i: int, layer, lim: dict, name: str, dest: int, found: list | None = None) -> dict:
    """Partition of layer ``i``; a limit no core can meet is raised, or with ``found`` (a list) added to it."""
    n = layer.num_neurons
    synapses, fan_in, skip_synapses = synapse_count(layer)
    where = f"layer {i} ({layer.kind}, {n} neurons)"
    caps = {"neurons_per_core": lim["neurons_per_core"]}
    mem_per_neuron = fan_in * lim["bits_per_synapse"]
    if mem_per_neuron > lim["synaptic_memory_bits_per_core"]:
        _broken(found, Violation(i, "synapse bits per neuron", mem_per_neuron, lim["synaptic_memory_bits_per_core"],
                f"{where}: one neuron's {fan_in} synapses need {mem_per_neuron} bits, beyond {name}'s "
                f"synaptic_memory_bits_per_core = {lim['synaptic_memory_bits_per_core']}: reduce the fan-in "
                "(fewer input channels, a smaller kernel or a narrower previous layer"
                + (", or fewer shortcuts)" if skip_synapses else ")"), "per core"))
    caps["synaptic_memory_bits_per_core"] = max(1, lim["synaptic_memory_bits_per_core"] // mem_per_neuron)
    if dest > lim["fan_out_per_core"]:
        _broken(found, Violation(i, "fan-out", dest, lim["fan_out_per_core"],
                f"{where}: one neuron sends to {dest} cores, beyond {name}'s fan_out_per_core = "
                f"{lim['fan_out_per_core']}: make the next layer smaller", "cores per neuron"))
    caps["fan_out_per_core"] = max(1, lim["fan_out_per_core"] // dest)
    if _core_inputs(layer, 1) > lim["fan_in_per_core"]:
        fix = ("use a narrower previous layer" if layer.kind == "dense"
               else "use fewer input channels or a narrower input")
        _broken(found, Violation(i, "fan-in", _core_inputs(layer, 1), lim["fan_in_per_core"],
                f"{where}: a core needs {_core_inputs(layer, 1)} distinct inputs, beyond {name}'s "
                f"fan_in_per_core = {lim['fan_in_per_core']} axons: {fix} "
                f"(at most {lim['fan_in_per_core']} inputs per core)", "inputs per core"))
    lo, hi = 1, n  # largest neuron count whose inputs fit the axon limit (inputs grow with it)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if _core_inputs(layer, mid) <= lim["fan_in_per_core"] else (lo, mid - 1)
    caps["fan_in_per_core"] = lo
    n_c = max(1, min(n, *caps.values()))
    limiting = "none (whole layer in one core)" if n_c == n else min(caps, key=caps.get)
    return {"layer": i, "kind": layer.kind, "neurons": n, "synapses": synapses, "skip_synapses": skip_synapses,
            "fan_in": fan_in,
            "core_inputs": _core_inputs(layer, n_c), "core_outputs": n_c * dest, "neurons_per_core": n_c,
            "cores": math.ceil(n / n_c), "limited_by": limiting}


def map_network(net, target: dict, found: list | None = None) -> dict:
    """Per-layer partition and totals: ``{"layers": [...], "cores": C, "chips": K, "target": name}``;
    ``found``: a list that collects every broken limit (:class:`~fastsnn_lava.violations.Violation`)
    instead of raising the first."""
    lim, name = target["limits"], target["name"]
    missing = [k for k in MAPPING_LIMITS if k not in lim]
    if missing:
        raise FastSNNError(f"hardware target {name!r} has no limits {missing}: add them (see hardware_configs/loihi2.yaml)")
    layers = list(net.layers)
    maps: list = [None] * len(layers)
    for i in range(len(layers) - 1, -1, -1):
        maps[i] = map_layer(i + 1, layers[i], lim, name, _fan_out(i, layers, maps), found)
    cores = sum(m["cores"] for m in maps)
    return {"target": name, "layers": maps, "cores": cores, "chips": math.ceil(cores / lim["cores_per_chip"])}
