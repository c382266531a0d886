"""The peer method: standard rate-coded ANN→SNN conversion of the same float network.

SpikingJelly's ann2snn is not used (its dependencies pull another torch); this is the
standard max-normalised IF conversion (Diehl et al. 2015; Rueckauer et al. 2017):

* BatchNorm (and an input normalisation, :mod:`fastsnn_lava.normalize`) folded into the weights, inputs
  scaled to ``x / input_max ∈ [0, 1]`` (λ_0 = 1);
* λ_l = the largest ReLU activation of layer l on training samples (``percentile`` = 100), or a
  robust percentile of it; weights ``W̃_l = W_l·λ_{l-1}/λ_l``, biases ``b̃_l = b_l/λ_l``;
* IF neurons with threshold 1, v(0) = 0, reset by subtraction; the first layer is driven by the
  analog current ``W̃_1·x + b̃_1`` every step; the classifier accumulates its input current
  and the prediction after t steps is the argmax of that sum.

One simulation of ``T_max`` steps gives the accuracy at every t ≤ T_max (the network is causal).
"""
from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from fastsnn_lava.models import fold_batchnorm
from fastsnn_lava.normalize import InputNorm, fold


def _layers(float_net: nn.Sequential):
    return [m for m in float_net if isinstance(m, (nn.Conv2d, nn.Linear))]


def apply_layer(mod, w, b, x):
    if isinstance(mod, nn.Conv2d):
        return F.conv2d(x, w, b, mod.stride, mod.padding, mod.dilation, mod.groups)
    return F.linear(x.flatten(1), w, b)


@torch.no_grad()
def normalise(float_net: nn.Sequential, x_train: torch.Tensor, input_max: int, percentile: float = 100.0):
    """[(module, W̃, b̃)] per layer with the data-based normalisation."""
    mods, folded = _layers(float_net), fold_batchnorm(float_net)
    if isinstance(float_net[0], InputNorm):  # a normalised dataset: fold it into the first layer (exact)
        norm = float_net[0]
        folded[0] = fold(*folded[0], norm, tuple(x_train.shape[1:]))
        if norm.pad:  # InputNorm pads the raw input and the conv pads nothing: a conv padded by norm.pad
            mods[0] = copy.copy(mods[0])
            mods[0].padding = (norm.pad, norm.pad)
    a, lam_prev, out = x_train.float() / input_max, 1.0, []
    for i, (mod, (w, b)) in enumerate(zip(mods, folded)):
        z = apply_layer(mod, w, b, a)
        if i == len(mods) - 1:
            out.append((mod, w * lam_prev, b))
            break
        a = z.clamp(min=0)
        flat = a.flatten()
        lam = float(flat.max()) if percentile >= 100 else float(np.percentile(flat.numpy(), percentile))
        lam = max(lam, 1e-6)
        out.append((mod, w * lam_prev / lam, b / lam))
        lam_prev = lam
    return out


@torch.no_grad()
def accuracy_vs_t(layers, x: np.ndarray, y: np.ndarray, input_max: int, input_shape, grid: list[int],
                  batch: int = 250) -> dict:
    """{t: accuracy} of the rate-coded SNN for every t in ``grid`` (one run of max(grid) steps)."""
    t_max, correct = max(grid), {t: 0 for t in grid}
    for s in range(0, len(x), batch):
        xb = torch.as_tensor(x[s:s + batch], dtype=torch.float32).reshape(-1, *input_shape) / input_max
        yb = torch.as_tensor(y[s:s + batch])
        mod0, w0, b0 = layers[0]
        first = apply_layer(mod0, w0, b0, xb)
        if len(layers) == 1:
            for t in grid:
                correct[t] += int((first.argmax(1) == yb).sum())
            continue
        v = [torch.zeros_like(first)]
        acc = None
        for t in range(1, t_max + 1):
            v[0] += first
            s0 = (v[0] >= 1).float()
            v[0] -= s0
            a = s0
            for k, (mod, w, b) in enumerate(layers[1:], start=1):
                cur = apply_layer(mod, w, b, a)
                if k == len(layers) - 1:
                    acc = cur if acc is None else acc + cur
                    break
                if len(v) <= k:
                    v.append(torch.zeros_like(cur))
                v[k] += cur
                a = (v[k] >= 1).float()
                v[k] -= a
            if t in correct:
                correct[t] += int((acc.argmax(1) == yb).sum())
    return {t: c / len(x) for t, c in correct.items()}
