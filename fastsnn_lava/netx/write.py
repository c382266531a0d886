"""The IF netx file (``SIGNED_IF``/``UNSIGNED_IF``/``ACCUMULATE`` layers): what it can hold, and writing it.

The tree is :mod:`.layout`'s (export/FORMAT.md); this module refuses, before anything is
written, a network whose synapses netx + Lava would not carry exactly.
"""
from __future__ import annotations

import numpy as np

from ..errors import FastSNNError
from ..ir import Network
from .lava_weights import synapse_verdict
from .layout import write_layout


def synapse_domain(net: Network, index: int, skip: bool = False) -> tuple[int, int]:
    """The box ``[lo, hi]`` each input of a synapse lies in: the raw input ``[0, input_max]`` for the
    first layer's own synapse, spikes ``[−1, 1]`` for every other synapse and every shortcut."""
    return (0, net.input_max) if index == 1 and not skip else (-1, 1)


def check_netx_weights(net: Network) -> None:
    """Refuse weights that netx + Lava's fixed-point synapses would not carry exactly (netx's
    ``optimize_weight_bits``, lava-dl v0.6.0 ``src/lava/lib/dl/netx/utils.py``).

    Every synapse must give Lava's output ``W·s`` for every input in :func:`synapse_domain`, as
    :mod:`fastsnn_lava.netx.lava_weights` models it: a ``/layer`` dense synapse through netx's
    ``optimize_weight_bits`` (which, e.g., corrupts a layer with no positive code and a minimum −2^j),
    a dense shortcut through the loader's mixed-sign encoding, a conv through its 24-bit output.
    """
    net.require("if", "the netx IF file (SIGNED_IF/UNSIGNED_IF)")
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


def write_network(net: Network, path) -> None:
    """Write an IF network as this project's netx file (refusing what netx + Lava would not carry exactly)."""
    check_netx_weights(net)
    write_layout(net, path)
