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
losslessly like any fine-tuned network; :mod:`fastsnn_lava.tandem` can start from it.
"""
from __future__ import annotations

import dataclasses
import time

import numpy as np
import torch

from .errors import FastSNNError
from .finetune import _exact_dtype, _if_layer, _t, qann_levels, tuned_start
from .ir import Network
from .models import BIAS_MAX
from .reference import skip_sum
from .reference import synapse as _syn


@dataclasses.dataclass
class CalibrationReport:
    samples: int
    shifts: list        # per hidden layer 2..L−1: (mean δ, min δ, max δ) in bias codes
    mismatch_before: list  # per hidden layer 2..L−1: mean over channels of |mean N_c − mean K_c| (spikes)
    #                        before the layer's own shift (its input already calibrated)
    mismatch_after: list   # the same after the layer's shift
    seconds: float


def _channel_mean(a: torch.Tensor) -> torch.Tensor:
    """Mean (in float64) over images and positions per channel of a (B, C, …) or (B, N) tensor."""
    a = a.double()
    return a.mean(0) if a.dim() == 2 else a.transpose(0, 1).reshape(a.shape[1], -1).mean(1)


def calibrate(net: Network, x: np.ndarray, ref: Network | None = None) -> tuple[Network, CalibrationReport]:
    """Bias-calibrated copy of ``net`` (see the module) on raw inputs ``x`` (a few hundred to
    a few thousand training images; memory grows with len(x) × the largest layer × T).

    The targets ``K^l`` are the integer QANN of ``ref`` (default ``net``): pass the conversion
    as ``ref`` to calibrate a network that was already tuned away from it."""
    if len(x) < 1:
        raise FastSNNError("bias calibration needs at least one image")
    if len(net.layers) < 3:
        raise FastSNNError("the network has no hidden layer after the first: nothing to calibrate")
    if any(layer.neuron == "unsigned_if" for layer in net.layers):
        raise FastSNNError("calibration runs on the signed IF network: convert with --neuron signed")
    ref = tuned_start(net, ref)  # the conversion that net was tuned from (net itself by default)
    t0 = time.time()
    T = net.timesteps
    # exact for any shift |δ| ≤ θ: the bound of a network whose biases are |b| + θ
    dt = _exact_dtype(dataclasses.replace(net, layers=[dataclasses.replace(
        layer, bias=np.abs(layer.bias) + (layer.threshold or 0)) for layer in net.layers]))
    xt = torch.as_tensor(np.asarray(x)).to(dt).reshape(-1, *net.input_shape)
    layers = list(net.layers)
    last_use = {j: j for j in range(1, len(layers))}  # hidden layer j (1-based) → last layer (0-based) reading it
    for i, layer in enumerate(layers):
        for sk in layer.skips:
            last_use[sk.source] = max(last_use[sk.source], i)
    with torch.no_grad():
        target = [_channel_mean(k) for k in qann_levels(ref, xt, len(layers) - 1, dt)]
        outs = [None] * (len(layers) - 1)  # spike trains of hidden layer j at j−1, while a later layer reads them
        shifts, before, after = [], [], []
        for i, layer in enumerate(layers[:-1]):
            w, b = _t(layer.weight, dt), _t(layer.bias, dt)
            shape = (-1, 1, 1) if layer.kind == "conv" else (-1,)
            if i == 0:
                cur = (_syn(layer, xt, w) + b.view(shape)).unsqueeze(0).expand(T, len(xt), *layer.out_shape)
            else:
                prev = outs[i - 1]
                cur = _syn(layer, prev.reshape(-1, *prev.shape[2:]), w)
                cur = cur.view(T, len(xt), *cur.shape[1:]) + b.view(shape)
                if layer.skips:
                    cur = cur + skip_sum(layer, outs, T, dt)
                for j in range(1, i + 1):  # read for the last time: free
                    if last_use[j] <= i:
                        outs[j - 1] = None
                delta = _bisect(cur, layer, target[i], shape)
                mean0 = _channel_mean(_if_layer(cur, layer).sum(0))
                before.append(float((mean0 - target[i]).abs().mean()))
                lo, hi = -BIAS_MAX - 1 - layer.bias, BIAS_MAX - layer.bias
                delta = torch.as_tensor(np.clip(delta.long().numpy(), lo, hi), dtype=dt)
                cur = cur + delta.view(1, 1, *shape)
                layers[i] = dataclasses.replace(layer, bias=layer.bias + delta.long().numpy())
                shifts.append([float(delta.mean()), int(delta.min()), int(delta.max())])
            s = _if_layer(cur.contiguous() if i == 0 else cur, layer)
            if i:
                after.append(float((_channel_mean(s.sum(0)) - target[i]).abs().mean()))
            outs[i] = s
    report = CalibrationReport(len(xt), shifts, before, after, round(time.time() - t0, 1))
    return dataclasses.replace(net, layers=layers), report


def _bisect(cur: torch.Tensor, layer, target: torch.Tensor, shape: tuple) -> torch.Tensor:
    """Per channel, the integer shift δ ∈ [−θ, θ] whose mean count is closest to ``target``."""
    theta = layer.threshold
    view = (1, 1, *shape)

    def mean_count(d):
        return _channel_mean(_if_layer(cur + d.view(view), layer).sum(0))

    lo, hi = torch.full_like(target, -theta, dtype=cur.dtype), torch.full_like(target, theta, dtype=cur.dtype)
    while bool((lo < hi).any()):  # lo: the smallest δ whose mean reaches the target (or θ)
        mid = torch.div(lo + hi, 2, rounding_mode="floor")
        below, active = mean_count(mid) < target, lo < hi  # converged channels stay put
        lo, hi = torch.where(active & below, mid + 1, lo), torch.where(active & ~below, mid, hi)
    m_hi, m_lo = mean_count(lo), mean_count(lo - 1)
    return torch.where((m_hi - target).abs() <= (m_lo - target).abs(), lo, lo - 1)
