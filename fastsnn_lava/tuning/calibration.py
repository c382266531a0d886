"""Bias calibration: integer per-channel bias shifts that undo the SNN's mean sequential error.

In deep layers the current ``I^l(t)`` varies over the T steps, and charge that
arrives late is still in the membrane at the end: the SNN fires on average *fewer*
spikes than its QANN has levels (on ResNet-20 at b = 2, 10–30 % fewer in the
deepest layers). A signed neuron cannot fix this; it only retracts spikes.
Calibration shifts each hidden channel's bias code so that its mean count
matches its QANN, one layer at a time in forward order, on the spike trains of
the layers already calibrated (gradient-free, like the bias correction of
Li et al., "A free lunch from ANN: towards efficient, accurate spiking neural
networks calibration", ICML 2021)::

    δ_c = argmin_δ | mean N^l_c(b + δ) − mean K^l_c |,        b_c ← b_c + δ_c

``K^l`` is the QANN's level on the same calibration images, ``N^l_c(b + δ)`` the
spike count of channel ``c`` when its bias code is ``b_c + δ`` (the current gains δ
every step), means over images and positions. The count of an IF neuron with
reset by subtraction never falls when every step's current rises (signed too: a
neuron one spike ahead cannot retract while the other fires), so the mean is
non-decreasing in δ and a bisection over ``δ ∈ [−θ, θ]`` finds it in
``⌈log₂ 2θ⌉ + 2`` simulations of the one layer. The first layer (constant
current, no sequential error) and the accumulating classifier are left alone.

Only bias codes change, within the 13-bit bias range, so the result exports
losslessly like any fine-tuned network; :mod:`fastsnn_lava.tuning.distillation` can start from it.
"""
from __future__ import annotations

import dataclasses
import time

import numpy as np
import torch

from ..errors import FastSNNError
from ..ir import Layer, Network
from ..kernel import Kernel, if_run
from ..grid import BIAS_MAX
from .common import network_dtype, require_signed, tuned_start


@dataclasses.dataclass
class CalibrationReport:
    samples: int
    shifts: list        # per hidden layer 2..L−1: (mean δ, min δ, max δ) in bias codes
    mismatch_before: list  # per hidden layer 2..L−1: mean over channels of |mean N_c − mean K_c| (spikes)
    #                        before the layer's own shift (its input already calibrated)
    mismatch_after: list   # the same after the layer's shift
    seconds: float


def channel_mean(a: torch.Tensor) -> torch.Tensor:
    """Mean (in float64) over images and positions per channel of a (B, C, …) or (B, N) tensor."""
    a = a.double()
    return a.mean(0) if a.dim() == 2 else a.transpose(0, 1).reshape(a.shape[1], -1).mean(1)


def mean_count(cur: torch.Tensor, layer: Layer) -> torch.Tensor:
    """Per channel, the mean spike count of ``layer``'s IF neurons under the currents ``cur`` (T, B, …)."""
    return channel_mean(if_run(cur, layer.threshold, layer.signed, False, len(cur)).sum(0))


def bisect_shift(cur: torch.Tensor, layer: Layer, target: torch.Tensor) -> torch.Tensor:
    """Per channel, the integer shift δ ∈ [−θ, θ] whose mean count is closest to ``target``."""
    theta = layer.threshold
    view = (1, 1, -1, *[1] * (cur.dim() - 3))

    def count(d):
        return mean_count(cur + d.view(view), layer)

    lo, hi = torch.full_like(target, -theta, dtype=cur.dtype), torch.full_like(target, theta, dtype=cur.dtype)
    while bool((lo < hi).any()):  # lo: the smallest δ whose mean reaches the target (or θ)
        mid = torch.div(lo + hi, 2, rounding_mode="floor")
        below, active = count(mid) < target, lo < hi  # converged channels stay put
        lo, hi = torch.where(active & below, mid + 1, lo), torch.where(active & ~below, mid, hi)
    m_hi, m_lo = count(lo), count(lo - 1)
    return torch.where((m_hi - target).abs() <= (m_lo - target).abs(), lo, lo - 1)


def calibrate(net: Network, x: np.ndarray, ref: Network | None = None) -> tuple[Network, CalibrationReport]:
    """Bias-calibrated copy of ``net`` (see the module) on raw inputs ``x`` (a few hundred to
    a few thousand training images; memory grows with len(x) × the largest layer × T).

    The targets ``K^l`` are the integer QANN of ``ref`` (default ``net``): pass the conversion
    as ``ref`` to calibrate a network that was already tuned away from it."""
    if len(x) < 1:
        raise FastSNNError("bias calibration needs at least one image")
    if len(net.layers) < 3:
        raise FastSNNError("the network has no hidden layer after the first: nothing to calibrate")
    require_signed(net, "calibration")
    ref = tuned_start(net, ref)  # the conversion that net was tuned from (net itself by default)
    t0 = time.time()
    # exact for any shift |δ| ≤ θ: the bound of a network whose biases are |b| + θ
    dt = network_dtype(dataclasses.replace(net, layers=[dataclasses.replace(
        layer, bias=np.abs(layer.bias) + (layer.threshold or 0)) for layer in net.layers]))
    layers = list(net.layers)
    shifts, before, after = [], [], []

    def shift(i: int, cur: torch.Tensor) -> torch.Tensor:
        """The layer's calibrated bias shift δ, on the currents of its already calibrated inputs."""
        layer = layers[i]
        delta = bisect_shift(cur, layer, target[i])
        before.append(float((mean_count(cur, layer) - target[i]).abs().mean()))
        lo, hi = -BIAS_MAX - 1 - layer.bias, BIAS_MAX - layer.bias
        delta = torch.as_tensor(np.clip(delta.long().numpy(), lo, hi), dtype=dt)
        layers[i] = dataclasses.replace(layer, bias=layer.bias + delta.long().numpy())
        shifts.append([float(delta.mean()), int(delta.min()), int(delta.max())])
        return delta

    with torch.no_grad():
        kernel = Kernel(net, dt)
        xt = kernel.input(x)
        target = [channel_mean(k) for k in Kernel(ref, dt).outputs(xt, "qann", len(layers) - 1)]
        for i, _, s in kernel.walk(xt, upto=len(layers) - 1, shift=shift):
            if i:
                after.append(float((channel_mean(s.sum(0)) - target[i]).abs().mean()))
    report = CalibrationReport(len(xt), shifts, before, after, round(time.time() - t0, 1))
    return dataclasses.replace(net, layers=layers), report
