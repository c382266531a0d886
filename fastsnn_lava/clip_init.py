"""The starting point of quantization-aware training: folded float weights and percentile clips α.

:func:`init_from_float` copies the BatchNorm-folded weights of the float ANN into a
:class:`~fastsnn_lava.models.QuantNet` (an :class:`~fastsnn_lava.normalize.InputNorm` in front is
folded into the first layer, exactly, see :mod:`fastsnn_lava.normalize`), then :func:`calibrate`
sets each hidden layer's clip, layer by layer in forward order::

    α^l = max(10^-3, percentile_p({z^l > 0}))

where ``z^l = W^l·y^{l-1} + b^l + Σ_j S^{l,j}·y^j`` is the float pre-activation given the current
weights and the outputs ``y`` of the already-quantized layers before (their grids follow from the
clips set so far, :mod:`fastsnn_lava.grid`), over at most 100,000 randomly drawn positive values
(``p = 99.7`` by default; α = 1 where no value is positive, before the 10^-3 floor). A layer
whose spec bounds its clip (``"alpha_max": m``, a ReLU6: m = 6) gets ``min(α^l, m)``.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .float_net import ResidualNet, fold_batchnorm
from .normalize import InputNorm, fold
from .spec import conv_args


@torch.no_grad()
def init_from_float(qann, float_net: nn.Module, calib_x: torch.Tensor, percentile: float = 99.7) -> None:
    """Copy BN-folded float weights into ``qann`` (a QuantNet), then :func:`calibrate` its clips."""
    if isinstance(float_net, ResidualNet):
        folded = float_net.folded()
    else:
        folded = [{"weight": w, "bias": b, "skips": []} for w, b in fold_batchnorm(float_net)]
        if isinstance(float_net[0], InputNorm):  # normalisation → first layer (exact, see normalize.py)
            w0, b0 = fold(folded[0]["weight"], folded[0]["bias"], float_net[0], qann.input_shape)
            folded[0] = {"weight": w0, "bias": b0, "skips": []}
    for layer, f in zip(qann.layers, folded):
        layer.weight.copy_(f["weight"].view_as(layer.weight))
        layer.bias.copy_(f["bias"])
        for w_s, sw in zip(layer.skip_weight if layer.skips else [], f["skips"]):
            if sw is not None:
                w_s.copy_(sw.view_as(w_s))
    calibrate(qann, calib_x, percentile)


@torch.no_grad()
def calibrate(qann, calib_x: torch.Tensor, percentile: float = 99.7) -> None:
    """Set each α of ``qann``, layer by layer, to a percentile of the layer's positive pre-activations
    given the current weights and the already-quantized layers before (see the module docstring)."""
    x = calib_x.reshape(-1, *qann.input_shape).float() / qann.input_max
    outs = []
    for k, layer in enumerate(qann.layers):
        u_in = qann.units_in()[k]
        if not layer.hidden:
            break
        s = layer.spec
        if s["kind"] == "conv":
            z = F.conv2d(x, layer.weight, layer.bias, *conv_args(s))
        else:
            z = F.linear(x.mean((2, 3)) if s.get("pool") else x.flatten(1), layer.weight, layer.bias)
        for sk, w_s in zip(layer.skips, layer.skip_weight if layer.skips else []):
            y, kind = outs[sk["from"] - 1], sk.get("kind", "identity")
            z = z + (y if kind == "identity" else F.conv2d(y, w_s, None, sk.get("stride", 1), sk.get(
                "padding", 0)) if kind == "conv" else F.linear(y.flatten(1), w_s))
        pos = z[z > 0]
        alpha = torch.quantile(pos[torch.randperm(len(pos))[:100000]], percentile / 100) if len(pos) else 1.0
        layer.alpha.fill_(min(max(float(alpha), 1e-3), s.get("alpha_max", float("inf"))))
        x = layer(x, u_in, qann.skip_inputs(k, outs))
        outs.append(x)
