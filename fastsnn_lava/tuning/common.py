"""What the tuners share: the held-out split, the frozen grid, codes on it, exact dtypes, and
the integer forward passes they learn from (both on :mod:`fastsnn_lava.kernel`).

Every tuner keeps the converted network's grid (θ, Δ, u as exported: the paper freezes the
threshold α^l) and moves only integer codes within the exporter's limits, ``|q| ≤ 127`` and a
13-bit bias ``c ∈ [−2^12, 2^12 − 1]``, so its result still exports losslessly. A real-valued
master ``w`` becomes its code by rounding half up, straight-through for the gradient::

    q = clip(w/Δ, ±q_max) + (⌊clip(w/Δ, ±q_max) + ½⌋ − clip(w/Δ, ±q_max)).detach()
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch

from ..bounds import exact_dtype, tuning_dtype as bound_dtype
from ..errors import FastSNNError
from ..ir import Layer, Network
from ..kernel import Kernel
from ..grid import BIAS_MAX, WEIGHT_QMAX
from ..models import QuantNet
from ..quant import round_half_up

HELDOUT = 0.1  # share of the training data held out for the acceptance checks (layer-wise and tandem)


def heldout_count(n: int, heldout: float = HELDOUT) -> int:
    """How many of ``n`` training samples the tuners hold out (at least one)."""
    return max(1, int(round(heldout * n)))


def split(n: int, heldout: float, gen: torch.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A seeded permutation of ``n`` samples cut into (held-out indices, the rest in permuted order)."""
    perm = torch.randperm(n, generator=gen).numpy()
    n_held = heldout_count(n, heldout)
    return perm[:n_held], perm[n_held:]


def require_signed(net: Network, what: str = "fine-tuning") -> None:
    """Refuse a network whose hidden neurons are not signed IF neurons."""
    if any(not layer.signed for layer in net.layers if not layer.accumulates):
        raise FastSNNError(f"{what} runs on the signed IF network: convert with --neuron signed")


def network_dtype(net: Network) -> torch.dtype:
    """float32 when every partial sum stays below 2^24 (then exact), else float64 (:func:`bounds.exact_dtype`;
    QANN levels ≤ T bound the same sums as T steps of ±1 spikes)."""
    return exact_dtype(net, net.timesteps, net.input_max)


def tuning_dtype(layer: Layer, steps: int) -> torch.dtype:
    """The dtype of a tuning step of ``layer``: exact for *any* codes it may take (|q| ≤ q_max on every
    synapse, a 13-bit bias), since the codes move during tuning (:func:`bounds.tuning_dtype`)."""
    return bound_dtype(layer, steps, WEIGHT_QMAX, BIAS_MAX + 1)


def frozen_grid(qann: QuantNet, net: Network, li: int, units: list) -> tuple[int, float, float]:
    """(θ, Δ, u) of hidden layer ``li`` (0-based) from the checkpoint; refuses a network whose threshold
    is not the checkpoint's (it was not converted from it)."""
    theta, delta, unit = qann.layers[li].grid(units[li], qann.skip_alphas(li))
    if theta != net.layers[li].threshold:
        raise FastSNNError(f"layer {li + 1}: the network's threshold {net.layers[li].threshold} is not the "
                           f"checkpoint's {theta}: fine-tune the network converted from this checkpoint")
    return theta, delta, unit


def tuned_start(ref: Network, start: Network | None) -> Network:
    """``start`` (default ``ref``) after checking that it is a tuned copy of the conversion ``ref``:
    the same layers, weight shapes and thresholds (only codes may differ)."""
    if start is None:
        return ref
    if len(start.layers) != len(ref.layers) or any(a.threshold != b.threshold or a.weight.shape != b.weight.shape
                                                   for a, b in zip(start.layers, ref.layers)):
        raise FastSNNError("the starting network is not a tuned copy of the conversion (layers or thresholds differ)")
    return start


def tensor(a, dtype: torch.dtype) -> torch.Tensor:
    """An integer array as a ``dtype`` tensor."""
    return torch.as_tensor(np.asarray(a), dtype=dtype)


def codes(w: torch.Tensor, delta: float, b: torch.Tensor, unit: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Straight-through integer codes (q, c) of real-valued weights and biases on the frozen grid (see the module)."""
    q = (w / delta).clamp(-WEIGHT_QMAX, WEIGHT_QMAX)
    q = q + (round_half_up(q) - q).detach()
    c = (b / unit).clamp(-BIAS_MAX - 1, BIAS_MAX)
    c = c + (round_half_up(c) - c).detach()
    return q, c


def prefix_spikes(net: Network, x: torch.Tensor, upto: int, dtype=torch.float64) -> list[torch.Tensor]:
    """Spike trains ``s^l(t)`` (T, B, *shape) of hidden layers ``0..upto-1`` (integers in ``dtype``)."""
    kernel = Kernel(net, dtype)
    return kernel.outputs(kernel.input(x), "snn", upto)


def qann_levels(net: Network, x: torch.Tensor, upto: int, dtype=torch.float64) -> list[torch.Tensor]:
    """QANN levels ``K^l`` of hidden layers ``0..upto-1`` (see :func:`reference.qann_forward`)."""
    kernel = Kernel(net, dtype)
    return kernel.outputs(kernel.input(x), "qann", upto)


def replace_codes(net: Network, tuned: dict) -> Network:
    """``net`` with the weight and bias codes of the layers in ``tuned`` ({0-based index: (q, c)}) rounded
    to integers (the grid, shapes and skips stay)."""
    layers = list(net.layers)
    for i, (q, c) in tuned.items():
        layers[i] = dataclasses.replace(layers[i], weight=q.detach().round().long().numpy(),
                                        bias=c.detach().round().long().numpy())
    return dataclasses.replace(net, layers=layers)
