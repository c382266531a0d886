"""Map a signed-IF integer network onto Lava's standard CUBA LIF neuron (lossy).

Loihi 2 runs netx's ``CUBA`` neuron natively; this project's ``SIGNED_IF`` needs a
NeuroCore microcode model that only Intel's lava-loihi can supply. The CUBA LIF
(:mod:`fastsnn_lava.lif`) differs from the signed IF in three ways that no
parameter choice removes:

* it resets to **zero** after a spike instead of subtracting θ (the residue is lost);
* it fires only **+1** (no retracting −1 spikes, so no sequential-error correction);
* its membrane starts at **0** after each window's reset, not θ/2 (netx's ``LIFReset``
  zeroes u and v and has no initial-value key).

The mapping keeps the integers of :mod:`fastsnn_lava.ir` and sets, per hidden layer,
``iDecay = 4096`` (the current does not persist: u = a_in each step), ``vDecay = 0``
(no leak) and the same weights and bias. Since v then stays a multiple of 64,
``vThMant = ϑ − 1`` turns Lava's strict ``v > vThMant·64`` into ``Σ I ≥ ϑ``. Three
choices of ϑ stand in for the missing θ/2 (``--cuba-threshold``):

* ``theta``: ϑ = θ (fires as the IF would without the initial θ/2);
* ``half``: ϑ = θ/2 (the first spike comes exactly when the IF's would; later ones too early);
* ``bias``: ϑ = θ and ⌊θ/(2T)⌉ added to the bias, spreading θ/2 over the T steps.

The output layer becomes a CUBA layer that never fires (``vThMant = 2^17 − 1``, the
17-bit maximum): its membrane after T steps is ``64 · Σ_t I^L(t)``, the accumulator's
output in Lava's 6-bit units, read out by a probe on ``v``. That is exact while
``|Σ_t I^L(t)| < 2^17 − 1``, which :func:`to_cuba` checks.
"""
from __future__ import annotations

from .errors import FastSNNError
from .hardware import membrane_bounds
from .ir import Network
from .lif import NEVER_FIRES, LifLayer, LifNetwork
from .netx.schema import reset_interval

THRESHOLD_MODES = ("theta", "half", "bias")


def to_cuba(net: Network, threshold: str = "theta") -> LifNetwork:
    if threshold not in THRESHOLD_MODES:
        raise FastSNNError(f"--cuba-threshold must be one of {THRESHOLD_MODES}, got {threshold!r}")
    if net.has_skips:
        raise FastSNNError("--neuron cuba cannot express residual shortcuts (vanilla netx has no skip): "
                           "export a residual network with the signed IF neuron")
    T = net.timesteps
    bound = membrane_bounds(net)[-1]
    if bound >= NEVER_FIRES:
        raise FastSNNError(f"layer {len(net.layers)} (output): its sum could reach {bound}, beyond the "
                           f"{NEVER_FIRES} a never-firing CUBA output layer can hold: use fewer bits or a "
                           "narrower output layer, or export with the signed-IF neuron")
    layers = []
    for layer in net.layers:
        geo = dict(stride=layer.stride, padding=layer.padding, dilation=layer.dilation, groups=layer.groups)
        if layer.neuron == "accumulate":
            vth, bias = NEVER_FIRES, layer.bias
        else:
            theta = layer.threshold // 2 if threshold == "half" else layer.threshold
            bias = layer.bias + (round(layer.threshold / (2 * T)) if threshold == "bias" else 0)
            vth = theta - 1
        layers.append(LifLayer(layer.kind, layer.weight, bias, vth, 4096, 0, layer.in_shape, layer.out_shape, **geo))
    meta = dict(net.meta, neuron="cuba", cuba_threshold=threshold)
    return LifNetwork(net.input_shape, layers, T, reset_interval(T), net.input_max, net.bits, meta)
