"""Value bounds of the integer simulation, and the narrowest float dtype that holds them exactly.

Per layer ``l``, ``C^l = max_o (Σ_i |W^l_oi|·a + |b^l_o|) + Σ_skips max_o Σ_i |S_oi|`` is the largest
|current| one step can bring (``a`` = max|x| for the first layer, 1 for spikes ±1); over T steps
every partial sum, current and membrane ``|v| ≤ θ + T·C^l`` stays below ``M = max_l (θ^l + T·C^l)``
(θ = 0 for the accumulating classifier). A float format holds every integer up to ``2^p`` exactly
(p = 24 for float32, 53 for float64), and additions of integers below that bound are exact in any
order: the simulation is exact in the narrowest float with ``M < 2^p`` (see :mod:`fastsnn_lava.kernel`).

While tuning, the codes of a layer move: :func:`tuning_bound` bounds what *any* codes within
the limits passed in (``|q| ≤ weight_max``, ``|c| ≤ bias_max``) can reach, so one dtype serves
the whole run. This module does not know the limits itself (they belong to the trainer).
"""
from __future__ import annotations

import numpy as np
import torch

from .errors import FastSNNError
from .ir import Layer, Network

EXACT_BITS = {torch.float32: 24, torch.float64: 53}


def row_abs_max(weight: np.ndarray) -> int:
    """``max_o Σ_i |W_oi|``: the largest |current| of a synapse under inputs of magnitude ≤ 1."""
    return int(np.abs(weight).reshape(weight.shape[0], -1).sum(1).max())


def skip_bound(layer: Layer) -> int:
    """``Σ_skips max_o Σ_i |S_oi|``: the largest |current| a layer's skips bring in one step."""
    return sum(row_abs_max(sk.weight) for sk in layer.skips)


def current_bound(layer: Layer, in_abs: int) -> int:
    """C = max over outputs of Σ|W|·in_abs + |b|: the largest |current| a step can bring."""
    w = np.abs(layer.weight).reshape(layer.weight.shape[0], -1).sum(1)
    return int((w * int(in_abs) + np.abs(layer.bias)).max())


def value_bound(net: Network, timesteps: int, input_abs: int) -> int:
    """M: a bound on |every integer| the simulation computes (see the module docstring);
    a layer's skip synapses add ``Σ_i |S_oi|`` (spikes are ±1) to its ``C``."""
    m = 0
    for i, layer in enumerate(net.layers):
        c = current_bound(layer, input_abs if i == 0 else 1) + skip_bound(layer)
        m = max(m, (layer.threshold or 0) + timesteps * c)
    return m


def dtype_for(bound: int) -> torch.dtype:
    """The narrowest float dtype holding every integer up to ``bound`` exactly."""
    for dtype, p in EXACT_BITS.items():
        if bound < 2 ** p:
            return dtype
    raise FastSNNError(f"values up to {bound} exceed 2^53: the network's weights or inputs are too large to simulate")


def exact_dtype(net: Network, timesteps: int, input_abs: int) -> torch.dtype:
    """The narrowest float dtype that holds every value exactly."""
    return dtype_for(value_bound(net, timesteps, input_abs))


def tuning_bound(layer: Layer, steps: int, weight_max: int, bias_max: int) -> int:
    """``θ + T·(fan_in·weight_max + bias_max + Σ_skips max_o Σ_i |S_oi|)``: a bound on every value of a
    step of ``layer`` whatever codes ``|q| ≤ weight_max``, ``|c| ≤ bias_max`` it takes (inputs are
    spikes ±1 or counts ≤ T; the skips stay frozen)."""
    fan_in = int(np.prod(layer.weight.shape[1:]))
    return (layer.threshold or 0) + steps * (fan_in * weight_max + bias_max + skip_bound(layer))


def tuning_dtype(layer: Layer, steps: int, weight_max: int, bias_max: int) -> torch.dtype:
    """float32 when :func:`tuning_bound` is below 2^24, else float64."""
    return torch.float32 if tuning_bound(layer, steps, weight_max, bias_max) < 2 ** 24 else torch.float64
