"""The integer grid of a layer: how θ, Δ, u and the integer codes follow from α, the weights and the target's limits.

The quantized network takes raw integer inputs ``x`` and sees ``x / input_max``. Layer ``l``
has a float master weight ``W`` and bias ``b``; its input arrives in units of ``u_in``
(:func:`units_in`: ``1/input_max`` for the first layer, the previous layer's clip ``α^{l-1}``
for the others, since a spike carries θ^{l-1} = α^{l-1}). A hidden layer picks an even
integer threshold θ and derives its grid (:func:`hidden_grid`)::

    θ  = min(θ_max, 2·max(1, floor(α·q_max / (2·u_in·max|W|))))   (finest grid not clipping W)
    u  = α / θ          (the layer's current unit: θ·u = α)
    Δ  = u / u_in       (weight step)
    W ≈ Δ·q,  b ≈ u·c,  q, c integers, |q| ≤ q_max,  −c_max − 1 ≤ c ≤ c_max

so that the layer's integer current is ``Σ q·(input code) + c`` and its level is
``clip(floor((T·current + θ/2)/θ), 0, T)`` (``T = 2^b − 1``). The output layer (no activation,
:func:`output_grid`) takes ``Δ = max|W| / q_max`` and ``u = Δ·u_in``. Codes round half-up:
``q = clip(round(W/Δ), ±q_max)`` (:func:`fastsnn_lava.quant.weight_codes`) and
``c = clip(round(b/u), −c_max − 1, c_max)`` (:func:`bias_codes`).

**Global average pooling** folded into a dense layer: with ``P = H·W`` positions,
``z = W·mean_hw(a) + b = Σ_{c,h,w} (W[:,c]/P)·a[c,h,w] + b``, so the integer layer is a dense
layer over the flattened ``(C,H,W)`` input whose code ``q[o,c]`` is repeated at the P positions
of channel c, and the grid is the one above with ``u_in`` replaced by ``u_in / P``.

**Residual shortcuts.** A shortcut from hidden layer j brings that layer's output
``α^j·k^j/T``: its spikes carry ``α^j``. In the receiving layer's unit u its synapse has step
``Δ_s = u/α^j`` and codes ``q_s = round(S/Δ_s)`` (an identity has ``S = 1``: one code
``round(α^j/u)`` on the diagonal). Both tensors must fit ``|q| ≤ q_max``, so θ is the largest
even integer (at most θ_max) with::

    θ ≤ α·q_max / (u_in·max|W|)   and   θ ≤ α·q_max / (α^j·max|S|)  for every shortcut j

**Limits** (:class:`Limits`) come from the hardware target (``hardware_configs/<name>.yaml``,
read by :func:`fastsnn_lava.hardware.load_target`): with ``weight_bits``, ``threshold_bits``
and ``bias_bits`` of its signed weight mantissa, unsigned threshold mantissa and signed bias
mantissa, ``q_max = 2^(weight_bits−1) − 1``, ``θ_max = 2^threshold_bits − 2`` (the largest even
threshold, so that the initial membrane θ/2 is an integer) and ``c_max = 2^(bias_bits−1) − 1``.
Loihi 2 (8, 17 and 13 bits, as encoded in lava-nc v0.10.0 ``src/lava/proc/dense/process.py`` and
``src/lava/proc/lif/models.py``) gives ``q_max = 127``, ``θ_max = 2^17 − 2``, ``c_max = 2^12 − 1``:
:data:`LOIHI2`, the grid training uses.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from .errors import FastSNNError
from .hardware import load_target, need
from .quant import round_half_up


@dataclass(frozen=True)
class Limits:
    """The integer ranges a grid must respect (see the module docstring)."""

    weight_qmax: int  # |q| ≤ q_max (weights and shortcut weights)
    theta_max: int    # the largest (even) threshold
    bias_max: int     # −bias_max − 1 ≤ c ≤ bias_max

    @property
    def bias_min(self) -> int:
        return -self.bias_max - 1


def target_limits(target: str | dict = "loihi2") -> Limits:
    """The grid limits of a hardware target: a name (``loihi2``), a YAML path or a loaded target."""
    t = load_target(target) if isinstance(target, str) else target
    w, th, b = (need(t, "limits", k) for k in ("weight_bits", "threshold_bits", "bias_bits"))
    if min(w, th, b) < 2:
        raise FastSNNError(f"hardware target {t['name']!r}: weight_bits, threshold_bits and bias_bits must be ≥ 2 "
                           f"for a grid, got {w}, {th}, {b}")
    return Limits(weight_qmax=2 ** (w - 1) - 1, theta_max=2 ** th - 2, bias_max=2 ** (b - 1) - 1)


LOIHI2 = target_limits("loihi2")
WEIGHT_QMAX, THETA_MAX, BIAS_MAX = LOIHI2.weight_qmax, LOIHI2.theta_max, LOIHI2.bias_max


def units_in(input_max: int, alphas: list[float]) -> list[float]:
    """u_in per layer: ``1/input_max``, then the clip α of each hidden layer in order."""
    return [1.0 / input_max] + list(alphas)


def steps(alpha: float, theta: int, u_in: float) -> tuple[float, float]:
    """(Δ, u) of a hidden layer whose threshold θ is known: ``u = α/θ``, ``Δ = u/u_in``
    (``u_in`` already divided by P for a pooled layer). A frozen grid (fine-tuning) takes θ from the
    integer network and calls this; :func:`hidden_grid` computes the same two numbers."""
    unit = alpha / theta
    return unit / u_in, unit


def hidden_grid(alpha: float, u_in: float, w_max: float, skips: tuple = (),
                limits: Limits = LOIHI2) -> tuple[int, float, float]:
    """(θ, Δ, u) of a hidden layer: clip α, input unit ``u_in`` (divided by P if pooled),
    ``w_max = max|W|`` (> 0) and ``skips = ((α^j, max|S^j|), ...)``."""
    if not alpha > 0:
        raise FastSNNError("a clip value α became non-positive during training: lower the learning rate")
    bound = alpha * limits.weight_qmax / (u_in * w_max)
    for a_src, m in skips:
        bound = min(bound, alpha * limits.weight_qmax / (a_src * m))
    theta = min(limits.theta_max, 2 * max(1, math.floor(bound / 2)))
    return (theta, *steps(alpha, theta, u_in))


def output_grid(u_in: float, w_max: float, limits: Limits = LOIHI2) -> tuple[None, float, float]:
    """(None, Δ, u) of the classifier: ``Δ = max|W|/q_max``, ``u = Δ·u_in``."""
    delta = w_max / limits.weight_qmax
    return None, delta, delta * u_in


def bias_codes(b: torch.Tensor, unit: float, limits: Limits = LOIHI2) -> torch.Tensor:
    """Integer bias codes ``clip(round(b/u), −c_max − 1, c_max)`` (half-up, float32, no gradient)."""
    return round_half_up(b.detach().float() / unit).clamp(limits.bias_min, limits.bias_max)


@dataclass
class LayerCodes:
    """The integers of one layer of the integer network, as the grid gives them: int64 weight codes q
    (a pooled dense layer: one per channel, before the repetition over the P positions), bias codes c,
    the threshold θ (None for the classifier) and per shortcut its codes q_s (an identity: one code)."""

    weight: np.ndarray
    bias: np.ndarray
    threshold: int | None
    skips: list = field(default_factory=list)
