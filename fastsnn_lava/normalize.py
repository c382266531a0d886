"""Input normalisation, trained in float and folded into the quantized ANN's first layer.

The float ANN sees ``x̃ = (x/M − μ_c)/σ_c`` (M = ``input_max``, μ_c, σ_c per input channel c).
Its first layer computes ``z = Σ W·x̃ + b``; written in ``x/M`` (what the quantized ANN sees)::

    z = Σ (W/σ_c)·(x/M) + (b − Σ W·μ_c/σ_c)
    W' = W/σ_c,   b' = b − Σ_{c,k} W[o,c,k]·μ_c/σ_c

so the deployed network takes raw pixels x with weights W'/M per raw unit (the grid of
:class:`~fastsnn_lava.models.QuantLayer` already uses u_in = 1/M).

**Padding.** A convolution that zero-pads the *normalised* input pads with x/M = μ_c, but the
folded layer zero-pads *raw* pixels (x = 0, i.e. x̃ = −μ_c/σ_c), so the two would differ on
the border. To make the fold exact, :class:`InputNorm` pads the raw input itself (with 0)
before normalising, and the float ANN's first convolution then uses no padding: both
networks see exactly the same border, and ``fold`` is exact up to float rounding.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class InputNorm(nn.Module):
    """``x/M ↦ (pad₀(x/M) − μ)/σ`` per channel (``pad`` pixels of raw zeros on every side)."""

    def __init__(self, mean, std, pad: int = 0):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32))
        self.pad = int(pad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad:
            x = F.pad(x, (self.pad,) * 4)
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return (x - self.mean.view(shape)) / self.std.view(shape)


def fold(w: torch.Tensor, b: torch.Tensor, norm: InputNorm, in_shape: tuple) -> tuple[torch.Tensor, torch.Tensor]:
    """(W', b') of the first layer (conv (O, C/g, k, k), g groups, or dense (O, C·H·W)) with ``norm`` folded in."""
    mean, std = norm.mean.to(w.dtype), norm.std.to(w.dtype)
    if w.dim() == 4:  # (O, C/g, k, k): weight (o, j) reads input channel (o // (O/g))·(C/g) + j
        n_out, per_group = w.shape[:2]
        groups = len(std) // per_group
        o, j = torch.arange(n_out, device=w.device), torch.arange(per_group, device=w.device)
        channel = (o // (n_out // groups))[:, None] * per_group + j
        w2 = w / std[channel][..., None, None]
        b2 = b - (w2 * mean[channel][..., None, None]).sum((1, 2, 3))
    else:  # dense on the flattened (C, H, W) input: channel of feature i is i // (H·W)
        per = int(torch.tensor(in_shape[1:]).prod()) if len(in_shape) > 1 else 1
        std_f, mean_f = std.repeat_interleave(per), mean.repeat_interleave(per)
        w2 = w / std_f.view(1, -1)
        b2 = b - (w2 * mean_f.view(1, -1)).sum(1)
    return w2, b2
